"""``copur`` (the default): code-space l2,1 decoding from several subset starts, then detect and impute.

1. Starts: z_S = E(h with the blocks in S hidden) for S = {} and every subset of the observed parties of
   size <= ``max_hidden`` (the number of liars tolerated); unobserved blocks are always hidden.
2. Refine every start with ``steps`` Adam steps on the block-normalised l2,1 residual
   sum_{i in O} ||D(z)_i - h_i|| / s_i (s_i: party i's typical clean block norm), all samples and starts
   in one tensor; keep the start with the lowest residual.
3. Detect: flag observed blocks whose normalised residual exceeds the calibrated threshold (never all).
4. Impute: solve once more with the flagged blocks treated as missing (starts: E(h without them) and the
   best z), refined on the kept blocks only. Output D(z*) and the residuals as anomaly scores.

Guarantee (empirical, not certified): a block that is far off the manifold costs linearly, so the
consistent majority of blocks decides z*; a flagged block has no influence on the output.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from copur.purify.base import Purified, Purifier
from copur.purify.blocks import smooth_block_norms
from copur.purify.fastgrad import MLPCache, block_grad, small_batch_threads

__all__ = ["RobustConfig", "RobustPurifier", "adam_descent"]

LossFn = Callable[[torch.Tensor], torch.Tensor]
GradFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class RobustConfig:
    max_hidden: int = 2
    start_hidden: int = 1
    steps: int = 20
    impute_steps: int = 20
    lr: float = 0.05
    detect: bool = True
    #: False: take each Adam step's gradient with autograd (slower; for comparison)
    analytic_grad: bool = True


def adam_descent(
    z: torch.Tensor,
    loss_fn: LossFn,
    *,
    steps: int,
    lr: float,
    differentiable: bool,
    grad_fn: GradFn | None = None,
) -> torch.Tensor:
    """Minimise ``loss_fn`` (one loss per row) from ``z`` with Adam, every row independently.

    Adam is coordinate-wise, so a batch of rows is the same as running each row alone. Gradients are
    taken with respect to ``z`` only; with ``differentiable`` the steps stay in the graph (unrolled).
    Without it, ``grad_fn`` (the analytic gradient of ``loss_fn(z).sum()``), when given, replaces
    autograd and the moments are updated in place.
    """
    b1, b2, eps = 0.9, 0.999, 1e-8
    if grad_fn is not None and not differentiable:
        with torch.no_grad():
            z = z.detach().clone()
            m = torch.zeros_like(z)
            v = torch.zeros_like(z)
            denom = torch.empty_like(z)
            for t in range(1, steps + 1):
                grad = grad_fn(z)
                m.mul_(b1).add_(grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                torch.div(v, 1 - b2**t, out=denom).sqrt_().add_(eps)
                z.addcdiv_(m, denom, value=-lr / (1 - b1**t))
        return z
    m = torch.zeros_like(z)
    v = torch.zeros_like(z)
    with torch.enable_grad():
        for t in range(1, steps + 1):
            cur = z if differentiable else z.detach().requires_grad_(True)
            grad = torch.autograd.grad(loss_fn(cur).sum(), cur, create_graph=differentiable)[0]
            m = b1 * m + (1 - b1) * grad
            v = b2 * v + (1 - b2) * grad * grad
            z = cur - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
    return z if differentiable else z.detach()


class RobustPurifier(Purifier):
    name = "copur"

    def __init__(self, *, config: RobustConfig | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.config = config or RobustConfig()
        self._mlp = MLPCache()
        #: the work of the last ``purify`` call (rows through the encoder, decoder forward and backward)
        self.last_cost: dict[str, int] = {}
        m, k = self.num_parties, min(self.config.start_hidden, self.num_parties - 1)
        subsets = [s for r in range(k + 1) for s in itertools.combinations(range(m), r)]
        hide = torch.zeros(len(subsets), m, dtype=torch.bool)
        for row, s in enumerate(subsets):
            hide[row, list(s)] = True
        self.start_hide = hide.to(self.device)  # (S, M)

    def _l21(self, z: torch.Tensor, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Per-row sum over kept blocks of ||D(z)_i - h_i|| / s_i."""
        return (smooth_block_norms(self.ae.decode(z) - h, self.num_parties) / self.block_scale * weight).sum(dim=1)

    def _solve(
        self,
        h: torch.Tensor,
        keeps: torch.Tensor,
        weight: torch.Tensor,
        steps: int,
        differentiable: bool,
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Refine starts E(h with only ``keeps`` (B, S, M) visible) (+ ``extra`` (B, D_z)) on ``weight`` blocks."""
        b, s, _ = keeps.shape
        z0 = self.ae.encode(self.masked_input(h.unsqueeze(1), keeps)).reshape(b * s, -1)
        starts = s
        if extra is not None:
            z0 = torch.cat([z0.view(b, s, -1), extra.unsqueeze(1)], dim=1).reshape(b * (s + 1), -1)
            starts = s + 1
        n = b * starts
        self.last_cost["enc_fwd_rows"] = self.last_cost.get("enc_fwd_rows", 0) + b * s
        self.last_cost["dec_fwd_rows"] = self.last_cost.get("dec_fwd_rows", 0) + n * (steps + 1)
        self.last_cost["dec_bwd_rows"] = self.last_cost.get("dec_bwd_rows", 0) + n * steps
        hr = h.repeat_interleave(starts, dim=0)
        wr = weight.repeat_interleave(starts, dim=0)
        grad_fn = None
        if not differentiable and self.config.analytic_grad:
            decoder = self._mlp.get(self.ae.decoder)
            coef = wr / self.block_scale
            m, e = self.num_parties, self.emb_dim

            def grad_fn(zz: torch.Tensor) -> torch.Tensor:
                out, pre = decoder.forward(zz)
                return decoder.backward(block_grad(out - hr, coef, m, e), pre)

        z = adam_descent(
            z0,
            lambda zz: self._l21(zz, hr, wr),
            steps=steps,
            lr=self.config.lr,
            differentiable=differentiable,
            grad_fn=grad_fn,
        )
        loss = self._l21(z, hr, wr).view(b, starts)
        best = loss.detach().argmin(dim=1)
        return z.view(b, starts, -1)[torch.arange(b, device=h.device), best]

    def purify(self, h: torch.Tensor, observed: torch.Tensor, *, differentiable: bool = False) -> Purified:
        if differentiable:
            return self._purify(h, observed, True)
        with torch.no_grad(), small_batch_threads(len(h) * len(self.start_hide), h.device):
            return self._purify(h.detach(), observed, False)

    def _purify(self, h: torch.Tensor, observed: torch.Tensor, differentiable: bool) -> Purified:
        cfg = self.config
        self.last_cost = {"enc_fwd_rows": 0, "dec_fwd_rows": len(h), "dec_bwd_rows": 0}
        # Steps 1-2: subset starts, refined on the l2,1 residual of every observed block; keep the best.
        keeps = observed.unsqueeze(1) & ~self.start_hide.unsqueeze(0)
        z = self._solve(h, keeps, observed.to(h.dtype), cfg.steps, differentiable)
        kept = observed.clone()
        threshold = self.threshold
        for _ in range(cfg.max_hidden if cfg.detect and threshold is not None else 0):
            assert threshold is not None
            # Step 3: flag the single most anomalous kept block, if it exceeds its threshold.
            self.last_cost["dec_fwd_rows"] += len(z)
            ratio = self.scores(self.ae.decode(z), h, kept).detach() / threshold
            worst = torch.where(kept, ratio, -torch.inf).argmax(dim=1)
            rows = ((ratio.gather(1, worst.unsqueeze(1)).squeeze(1) > 1.0) & (kept.sum(dim=1) > 1)).nonzero().squeeze(1)
            if len(rows) == 0:
                break
            kept[rows, worst[rows]] = False
            # Step 4: solve again without it (starts: E(h without it) and the current z).
            sub = kept[rows]
            z_new = self._solve(
                h[rows], sub.unsqueeze(1), sub.to(h.dtype), cfg.impute_steps, differentiable, extra=z[rows]
            )
            z = z.index_copy(0, rows, z_new)
        out = self.ae.decode(z)
        out = out if differentiable else out.detach()
        scores = self.scores(out, h, observed).detach()
        flagged = observed & ~kept if cfg.detect else self.flags(scores, observed)
        return Purified(h=out, scores=scores, flagged=flagged)
