"""Decoding in the autoencoder's code space: Adam on the block-normalised l2,1 residual, batched.

min_z sum_{i kept} w_i ||D(z)_i - h_i|| / s_i from one or several starts z = E(h with only the
kept blocks visible), every sample and every start of a batch in one tensor; the start with the
lowest residual wins. Shared by the purifiers that decode (``copur`` and ``copur-l21``). Pure
computation, no I/O."""

from __future__ import annotations

from collections.abc import Callable

import torch

from copur.science.models import AutoEncoder
from copur.science.purify.blocks import mask_blocks, smooth_block_norms
from copur.science.purify.fastgrad import MLPCache, block_grad

__all__ = ["CodeDecoder", "adam_descent"]

LossFn = Callable[[torch.Tensor], torch.Tensor]
GradFn = Callable[[torch.Tensor], torch.Tensor]


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

    Adam is coordinate-wise, so a batch of rows is the same as running each row alone. Gradients
    are taken with respect to ``z`` only; with ``differentiable`` the steps stay in the graph
    (unrolled). Without it, ``grad_fn`` (the analytic gradient of ``loss_fn(z).sum()``), when
    given, replaces autograd and the moments are updated in place."""
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


class CodeDecoder:
    """A frozen AE's decoder fitted to the kept blocks of h, with its cost accounting.

    ``cost`` counts the rows through the encoder forward and the decoder forward and
    input-gradient backward since the last :meth:`reset` (what the purifier benchmark turns into
    FLOPs)."""

    def __init__(
        self, *, autoencoder: AutoEncoder, num_parties: int, block_scale: torch.Tensor
    ) -> None:
        self.ae = autoencoder
        self.num_parties = num_parties
        self.emb_dim = autoencoder.width // num_parties
        self.block_scale = block_scale
        self._mlp = MLPCache()
        self.cost: dict[str, int] = {}

    def reset(self) -> dict[str, int]:
        """Zero the work counters and return them (filled by the next solve)."""
        self.cost = {"enc_fwd_rows": 0, "dec_fwd_rows": 0, "dec_bwd_rows": 0}
        return self.cost

    def count(self, key: str, rows: int) -> None:
        """Add ``rows`` to the work counter ``key``."""
        self.cost[key] = self.cost.get(key, 0) + rows

    def l21(self, z: torch.Tensor, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Per-row sum over blocks of weight_i ||D(z)_i - h_i|| / s_i."""
        residual = smooth_block_norms(self.ae.decode(z) - h, self.num_parties)
        return (residual / self.block_scale * weight).sum(dim=1)

    def refine(
        self,
        h: torch.Tensor,
        keeps: torch.Tensor,
        weight: torch.Tensor,
        *,
        steps: int,
        lr: float,
        differentiable: bool,
        analytic_grad: bool = True,
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The best z per sample: starts E(h with only ``keeps`` (B, S, M) visible) (+ ``extra``
        (B, D_z)), each refined with ``steps`` Adam steps on the l2,1 residual weighted by
        ``weight`` (B, M); lowest wins.

        ``keeps`` and ``weight`` may be float (soft masks in a differentiable pass); the start
        choice is discrete and is held fixed for the gradient."""
        b, s, _ = keeps.shape
        z0 = self.ae.encode(mask_blocks(h.unsqueeze(1), keeps, self.emb_dim)).reshape(b * s, -1)
        starts = s
        if extra is not None:
            z0 = torch.cat([z0.view(b, s, -1), extra.unsqueeze(1)], dim=1).reshape(b * (s + 1), -1)
            starts = s + 1
        n = b * starts
        self.count("enc_fwd_rows", b * s)
        # One forward per step, plus one to compare the starts when there are several.
        self.count("dec_fwd_rows", n * (steps + (starts > 1)))
        self.count("dec_bwd_rows", n * steps)
        hr = h.repeat_interleave(starts, dim=0)
        wr = weight.to(h.dtype).repeat_interleave(starts, dim=0)
        grad_fn = None
        if not differentiable and analytic_grad:
            decoder = self._mlp.get(self.ae.decoder)
            coef = wr / self.block_scale
            m, e = self.num_parties, self.emb_dim

            def grad_fn(zz: torch.Tensor) -> torch.Tensor:
                out, pre = decoder.forward(zz)
                return decoder.backward(block_grad(out - hr, coef, m, e), pre)

        z = adam_descent(
            z0,
            lambda zz: self.l21(zz, hr, wr),
            steps=steps,
            lr=lr,
            differentiable=differentiable,
            grad_fn=grad_fn,
        )
        if starts == 1:
            return z
        loss = self.l21(z, hr, wr).view(b, starts)
        best = loss.detach().argmin(dim=1)
        return z.view(b, starts, -1)[torch.arange(b, device=h.device), best]
