"""``copur-l21``: code-space l2,1 decoding from several subset starts, then detect and impute.

The product's first robust purifier, kept under this name for comparison (the default ``copur``
is :mod:`copur.science.purify.consensus`).

1. Starts: z_S = E(h with the blocks in S hidden) for S = {} and every subset of the observed
   parties of size <= ``start_hidden``; unobserved blocks are always hidden.
2. Refine every start with ``steps`` Adam steps on the block-normalised l2,1 residual sum_{i in
   O} ||D(z)_i - h_i|| / s_i (s_i: party i's typical clean block norm), all samples and starts in
   one tensor; keep the start with the lowest residual.
3. Detect: flag the observed block whose normalised residual most exceeds the calibrated
   threshold (never all).
4. Impute: solve once more with the flagged blocks treated as missing (starts: E(h without them)
   and the best z), refined on the kept blocks only; steps 3-4 up to ``max_hidden`` times. Output
   D(z*) and the residuals as anomaly scores.

Guarantee (empirical, not certified): a block that is far off the manifold costs linearly, so the
consistent majority of blocks decides z*; a flagged block has no influence on the output. Known
limit: liars that send the blocks of one real sample of another class (plausible, colluding lies)
can pull the smallest l2,1 fit to that sample; ``copur`` selects the honest parties by
consistency with real samples.

In the differentiable pass the flags are straight-through: the forward pass drops a flagged
block, the backward pass sees a sigmoid of its margin to the threshold (BPDA), so an attacker is
never left without a gradient because its block was flagged."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from copur.science.purify.base import Purified, Purifier
from copur.science.purify.blocks import subset_masks
from copur.science.purify.decode import CodeDecoder
from copur.science.purify.fastgrad import small_batch_threads

__all__ = ["RobustConfig", "RobustPurifier"]


@dataclass(frozen=True, kw_only=True)
class RobustConfig:
    """``copur-l21``'s search: subsets of up to ``start_hidden`` parties hidden in the starts,
    Adam steps and rate, and detect-then-impute of up to ``max_hidden`` flagged blocks."""

    max_hidden: int = 2
    start_hidden: int = 1
    steps: int = 20
    impute_steps: int = 20
    lr: float = 0.05
    detect: bool = True
    # : the softness of the flags' backward pass (BPDA) in the differentiable pass, in threshold
    # ratios
    temperature: float = 0.25
    #: False: take each Adam step's gradient with autograd (slower; for comparison)
    analytic_grad: bool = True


class RobustPurifier(Purifier):
    """``copur-l21``: the normalised l2,1 fit in code space from several starts, then detect and
    impute."""

    name = "copur-l21"

    def __init__(self, *, config: RobustConfig | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.config = config or RobustConfig()
        self.decoder = CodeDecoder(
            autoencoder=self.ae, num_parties=self.num_parties, block_scale=self.block_scale
        )
        # : the work of the last ``purify`` call (rows through the encoder, decoder forward and
        # backward)
        self.last_cost: dict[str, int] = {}
        m, k = self.num_parties, min(self.config.start_hidden, self.num_parties - 1)
        self.start_hide = subset_masks(m, range(k + 1), self.device)  # (S, M)

    def purify(
        self, h: torch.Tensor, observed: torch.Tensor, *, differentiable: bool = False
    ) -> Purified:
        """The best start refined, flagged blocks dropped and the fit solved again; scores are
        normalised block residuals."""
        if differentiable:
            return self._purify(h, observed, True)
        with torch.no_grad(), small_batch_threads(len(h) * len(self.start_hide), h.device):
            return self._purify(h.detach(), observed, False)

    def _solve(
        self,
        h: torch.Tensor,
        keeps: torch.Tensor,
        weight: torch.Tensor,
        steps: int,
        differentiable: bool,
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        cfg = self.config
        return self.decoder.refine(
            h,
            keeps,
            weight,
            steps=steps,
            lr=cfg.lr,
            differentiable=differentiable,
            analytic_grad=cfg.analytic_grad,
            extra=extra,
        )

    def _purify(self, h: torch.Tensor, observed: torch.Tensor, differentiable: bool) -> Purified:
        cfg = self.config
        self.last_cost = self.decoder.reset()
        self.decoder.count("dec_fwd_rows", len(h))
        # Steps 1-2: subset starts, refined on the l2,1 residual of every observed block; keep the
        # best.
        keeps = observed.unsqueeze(1) & ~self.start_hide.unsqueeze(0)
        z = self._solve(h, keeps, observed.to(h.dtype), cfg.steps, differentiable)
        kept = observed.clone()
        # The weight each block has in the fit: 1 kept, 0 flagged (straight-through soft in a
        # differentiable pass).
        weight = observed.to(h.dtype)
        threshold = self.threshold
        for _ in range(cfg.max_hidden if cfg.detect and threshold is not None else 0):
            assert threshold is not None
            # Step 3: flag the single most anomalous kept block, if it exceeds its threshold.
            self.decoder.count("dec_fwd_rows", len(z))
            ratio = self.scores(self.ae.decode(z), h, kept) / threshold
            worst = torch.where(kept, ratio.detach(), -torch.inf).argmax(dim=1)
            worst_ratio = ratio.detach().gather(1, worst.unsqueeze(1)).squeeze(1)
            rows = ((worst_ratio > 1.0) & (kept.sum(dim=1) > 1)).nonzero().squeeze(1)
            if len(rows) == 0:
                break
            kept = kept.clone()  # the previous mask may be saved for the backward pass
            kept[rows, worst[rows]] = False
            if differentiable:
                # BPDA: the flag drops the block (forward) but its margin to the threshold steers
                # the gradient.
                soft = torch.sigmoid((1.0 - ratio) / cfg.temperature) * observed
                hard = kept.to(h.dtype)
                weight = hard + (soft - soft.detach()) * (~kept & observed)
            else:
                weight = kept.to(h.dtype)
            # Step 4: solve again without it (starts: E(h without it) and the current z).
            z_new = self._solve(
                h[rows],
                weight[rows].unsqueeze(1),
                weight[rows],
                cfg.impute_steps,
                differentiable,
                extra=z[rows],
            )
            z = z.index_copy(0, rows, z_new)
        out = self.ae.decode(z)
        out = out if differentiable else out.detach()
        scores = self.scores(out, h, observed).detach()
        flagged = observed & ~kept if cfg.detect else self.flags(scores, observed)
        return Purified(h=out, scores=scores, flagged=flagged)
