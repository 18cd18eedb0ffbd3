"""``copur-ref``: the public CoPur purification, exactly as docs/ARCHITECTURE.md ("Purifiers")
states it, batched.

Step 1: L <- AE(h); up to K1 times: loss = sum_{i in O} rms(AE(L)_i - h_i); L <- L - lr1 * grad,
a sample stopping as soon as its gradient norm falls below ``stop_grad`` (per-sample
convergence). Step 2: L2 <- AE(L); K2 times: loss = tau * sum_i rms(AE(L2)_i - L2_i) + sum_{i in
O} rms(h_i - L2_i); L2 <- L2 - lr2 * grad. Output AE(L2). rms(v) = ||v||_2 / sqrt(len v)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from copur.science.purify.base import Purified, Purifier
from copur.science.purify.blocks import smooth_block_norms
from copur.science.purify.fastgrad import MLPCache, block_grad, reference_step1, small_batch_threads

__all__ = ["ReferenceConfig", "ReferencePurifier"]


@dataclass(frozen=True, kw_only=True)
class ReferenceConfig:
    """The published algorithm's constants: K1 steps at rate ``lr1`` stopping under gradient norm
    ``stop_grad``, then K2 steps at rate ``lr2`` with weight ``tau``."""

    k1: int = 100
    lr1: float = 0.1
    stop_grad: float = 0.1
    k2: int = 3
    lr2: float = 0.001
    tau: float = 1000.0
    # : False: take each step's gradient with autograd, as the public code does (slower; for
    # comparison)
    analytic_grad: bool = True


class ReferencePurifier(Purifier):
    """``copur-ref``: the public CoPur purification, for comparison (it is pulled toward a
    corrupted block)."""

    name = "copur-ref"

    def __init__(self, *, config: ReferenceConfig | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.config = config or ReferenceConfig()
        self._mlp = MLPCache()
        # : the work of the last ``purify`` call (rows through the AE forward / input-gradient
        # backward)
        self.last_cost: dict[str, int] = {}

    def _rms(self, v: torch.Tensor) -> torch.Tensor:
        return smooth_block_norms(v, self.num_parties) / self.emb_dim**0.5

    def _grad(self, loss: torch.Tensor, x: torch.Tensor, differentiable: bool) -> torch.Tensor:
        return torch.autograd.grad(loss.sum(), x, create_graph=differentiable)[0]

    def purify(
        self, h: torch.Tensor, observed: torch.Tensor, *, differentiable: bool = False
    ) -> Purified:
        """Steps 1 and 2 of the published algorithm on every sample of the batch at once; scores
        are the normalised block residuals of the output."""
        if differentiable:
            out = self._purify_autograd(h, observed, differentiable=True)
        elif not self.config.analytic_grad:
            with small_batch_threads(len(h), h.device):
                out = self._purify_autograd(h.detach(), observed, differentiable=False)
        else:
            with torch.no_grad(), small_batch_threads(len(h), h.device):
                out = self._purify_fast(h.detach(), observed)
        scores = self.scores(out, h, observed).detach()
        return Purified(h=out, scores=scores, flagged=self.flags(scores, observed))

    def _purify_autograd(
        self, h: torch.Tensor, observed: torch.Tensor, *, differentiable: bool
    ) -> torch.Tensor:
        """Both steps with torch.autograd (unrolled into the graph when ``differentiable``)."""
        cfg, obs = self.config, observed.to(h.dtype)
        b = len(h)
        cost = {
            "ae_fwd_rows": 0,
            "ae_bwd_rows": 0,
            "step1_iterations": 0,
            "step1_row_iterations": 0,
        }
        with torch.enable_grad():
            # Step 1: gradient descent on the observed blocks' rms residuals, per-sample early stop.
            big_l = self.ae(self.masked_input(h, observed))
            active = torch.ones(len(h), dtype=torch.bool, device=h.device)
            for _ in range(cfg.k1):
                idx = active.nonzero().squeeze(1)
                if len(idx) == 0:
                    break
                cost["step1_iterations"] += 1
                cost["step1_row_iterations"] += len(idx)
                cur = big_l[idx] if differentiable else big_l[idx].detach().requires_grad_(True)
                loss = (self._rms(self.ae(cur) - h[idx]) * obs[idx]).sum(dim=1)
                grad = self._grad(loss, cur, differentiable)
                moving = grad.norm(dim=1) >= cfg.stop_grad
                step = cur - cfg.lr1 * grad * moving.unsqueeze(1).to(h.dtype)
                big_l = (
                    big_l.index_copy(0, idx, step)
                    if differentiable
                    else big_l.detach().index_copy(0, idx, step.detach())
                )
                active[idx[~moving]] = False
            # Step 2: K2 small steps balancing manifold consistency (tau) against the observations.
            l2 = self.ae(big_l)
            for _ in range(cfg.k2):
                cur = l2 if differentiable else l2.detach().requires_grad_(True)
                loss = cfg.tau * self._rms(self.ae(cur) - cur).sum(dim=1) + (
                    self._rms(h - cur) * obs
                ).sum(dim=1)
                l2 = cur - cfg.lr2 * self._grad(loss, cur, differentiable)
            out = self.ae(l2) if differentiable else self.ae(l2.detach()).detach()
        self._record(cost, b)
        return out

    def _record(self, cost: dict[str, int], b: int) -> None:
        rows = cost["step1_row_iterations"] + self.config.k2 * b
        cost["ae_fwd_rows"] = rows + 3 * b
        cost["ae_bwd_rows"] = rows
        self.last_cost = cost

    def _purify_fast(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Both steps with the AE's analytic input gradient (no autograd); the autograd path's
        iterates."""
        cfg, mlp = self.config, self._mlp.get(self.ae.encoder, self.ae.decoder)
        b, m, e = len(h), self.num_parties, self.emb_dim
        cost = {
            "ae_fwd_rows": 0,
            "ae_bwd_rows": 0,
            "step1_iterations": 0,
            "step1_row_iterations": 0,
        }
        coef = observed.to(h.dtype) / e**0.5  # d rms(v) / dv = v / (sqrt(e) * ||v||)
        big_l = self.ae(self.masked_input(h, observed))
        # Step 1 in the first layer's pre-activation a1 = W1 L + b1: L - lr W1^T d <=> a1 - lr d W1
        # W1^T,
        # which saves a matmul per step; L = L0 - lr W1^T (sum of the d) is rebuilt once at the end.
        # Only the active rows are carried, compacted whenever some of them stop.
        a1, acc = (
            mlp.first(big_l),
            torch.zeros(b, mlp.gram.shape[0], dtype=h.dtype, device=h.device),
        )
        acc_all, idx, target, weight = acc, None, h, coef
        for _ in range(cfg.k1):
            cost["step1_iterations"] += 1
            cost["step1_row_iterations"] += len(a1)
            a1_next, acc_next, grad_norm = reference_step1(mlp, a1, acc, target, weight, cfg.lr1)
            moving = grad_norm >= cfg.stop_grad
            if bool(moving.all()):
                a1, acc = a1_next, acc_next
                continue
            rows = idx if idx is not None else torch.arange(b, device=h.device)
            if idx is None:
                acc_all = acc.clone()
            acc_all[rows[~moving]] = acc[~moving]  # a row that stops keeps its iterate: no step
            keep = moving.nonzero().squeeze(1)
            a1, acc = a1_next[keep], acc_next[keep]
            idx, target, weight = rows[keep], target[keep], weight[keep]
            if len(keep) == 0:
                break
        if idx is None:
            acc_all = acc
        elif len(idx):
            acc_all[idx] = acc
        big_l = big_l - cfg.lr1 * (acc_all @ mlp.weights[0])
        # Step 2: grad = J^T g_r - g_r - g_h with r = AE(L2) - L2 (all blocks, weight tau), g_h on h
        # - L2.
        l2 = self.ae(big_l)
        tau_coef = torch.full((1, m), cfg.tau / e**0.5, dtype=h.dtype, device=h.device)
        for _ in range(cfg.k2):
            out, pre = mlp.forward(l2)
            g_r = block_grad(out - l2, tau_coef, m, e)
            grad = mlp.backward(g_r, pre) - g_r - block_grad(h - l2, coef, m, e)
            l2 = l2 - cfg.lr2 * grad
        self._record(cost, b)
        return self.ae(l2)
