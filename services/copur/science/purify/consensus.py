"""``copur`` (the default): keep the parties that real samples agree with, then decode from them
alone.

1. Hypotheses: every way of hiding at most ``tolerate`` observed parties (default floor((M-1)/2),
   the most liars an honest majority outnumbers), plus hiding none.
2. Consistency: each hypothesis costs the mean, over the k bank rows that match its kept blocks
   best, of the summed block distances in units of each party's typical nearest-neighbour
   distance (floored at 1), plus ``penalty`` for the first hidden observed block, ``penalty +
   growth`` for the second, and so on (:func:`copur.science.purify.bank.hypothesis_costs`). Keep
   the cheapest. The growth matters against one liar: to be kept, a lie must make a set that
   hides two honest parties cheaper than the honest set that hides the liar alone, and the second
   hidden block makes that set pay more.
3. Decode: z* = argmin_z sum_{i kept} ||D(z)_i - h_i|| / s_i from E(h with only the kept blocks
   visible) (:class:`copur.science.purify.decode.CodeDecoder`); output D(z*).
4. Scores and flags: a party's score is its block's distance (in units) to those k bank rows; an
   observed block is flagged when the consensus excluded it and its score exceeds the calibrated
   threshold.

Guarantee (empirical, not certified): the output depends on the hidden blocks only through step
2's choice, so a liar that the consensus hides has no influence at all; to be kept, a block must
agree with real samples that also match the honest blocks. Colluding liars win only when the
blocks of one real sample of another class match the honest parties' blocks about as well as the
honest parties match each other, which is the ambiguity no fusion center can resolve. The vote
defense (:mod:`copur.science.certify.vote`) gives a provable floor.

In the differentiable pass (adaptive attacks) the choice of step 2 is straight-through (BPDA):
the forward pass uses the hard choice, the backward pass the softmin over hypotheses at
``temperature``, so the attacker sees how its blocks move the choice."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from copur.errors import ConfigError
from copur.science.purify.bank import Bank, hypothesis_costs, subset_hypotheses
from copur.science.purify.base import Purified, Purifier
from copur.science.purify.blocks import block_distances
from copur.science.purify.decode import CodeDecoder
from copur.science.purify.fastgrad import small_batch_threads

__all__ = ["ConsensusConfig", "ConsensusPurifier"]


@dataclass(frozen=True, kw_only=True)
class ConsensusConfig:
    #: most lying parties a hypothesis hides; None: floor((M - 1) / 2)
    """How ``copur`` chooses the parties to keep (how many it may hide, the neighbours and
    penalties of the cost) and decodes from them (Adam steps and rate); ConfigError on
    impossible values."""

    tolerate: int | None = None
    #: k: a kept set is judged by the k bank rows that match it best
    neighbours: int = 5
    #: what hiding one observed block costs, in units of a typical honest block distance
    penalty: float = 2.0
    # : each further hidden block costs this much more than the one before (more liars are less
    # likely)
    growth: float = 1.0
    steps: int = 20
    lr: float = 0.05
    #: the softness of the choice's backward pass (BPDA) in a differentiable pass, in cost units
    temperature: float = 1.0
    #: most (sample, bank row, hypothesis) cells held in memory at once; larger batches are chunked
    max_cells: int = 1 << 24
    #: False: take each Adam step's gradient with autograd (slower; for comparison)
    analytic_grad: bool = True

    def __post_init__(self) -> None:
        if self.neighbours < 1:
            raise ConfigError(f"neighbours must be >= 1, got {self.neighbours}")
        if self.penalty < 0 or self.temperature <= 0:
            raise ConfigError("penalty must be >= 0 and temperature > 0")


@dataclass(frozen=True)
class _Choice:
    keep: torch.Tensor  # (B, M) bool: the kept observed blocks
    soft: torch.Tensor | None  # (B, M) softmin-weighted keep, differentiable pass only
    scores: torch.Tensor  # (B, M) distance in units to the chosen k bank rows, 0 where unobserved


class ConsensusPurifier(Purifier):
    """``copur``: keep the cheapest set of parties by consistency with real samples, decode from
    them alone.

    Guarantee: a hidden block has no influence on the output; the cost of a kept set grows with
    every kept block that matches no real sample the other kept blocks match."""

    name = "copur"
    #: flags need the block excluded as well, so the threshold is the clean quantile itself
    flag_factor = 1.0
    uses_bank = True

    def __init__(self, *, config: ConsensusConfig | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if self.bank is None:
            raise ConfigError(
                "purifier 'copur' needs the bundle's consistency bank: run `copur calibrate BUNDLE`"
            )
        self.config = config or ConsensusConfig()
        m = self.num_parties
        tolerate = self.config.tolerate if self.config.tolerate is not None else (m - 1) // 2
        self.hypotheses = subset_hypotheses(m, tolerate, self.device)  # (S, M)
        self.decoder = CodeDecoder(autoencoder=self.ae, num_parties=m, block_scale=self.block_scale)
        #: the work of the last ``purify`` call (decoder rows, and the bank comparison's FLOPs)
        self.last_cost: dict[str, int] = {}

    def purify(
        self, h: torch.Tensor, observed: torch.Tensor, *, differentiable: bool = False
    ) -> Purified:
        """Choose the kept set for every sample (every hypothesis and bank row in one batched
        cost), decode from it, score and flag every observed block."""
        if differentiable:
            return self._purify(h, observed, True)
        with torch.no_grad(), small_batch_threads(len(h) * len(self.hypotheses), h.device):
            return self._purify(h.detach(), observed, False)

    @property
    def _bank(self) -> Bank:
        assert self.bank is not None  # checked in __init__
        return self.bank

    def _choose(self, h: torch.Tensor, observed: torch.Tensor, differentiable: bool) -> _Choice:
        cfg, bank, hyp = self.config, self._bank, self.hypotheses
        m, n, s = self.num_parties, len(bank), len(hyp)
        rows = torch.arange(len(h), device=h.device)
        # Step 2 over the hypotheses of step 1: distances in units (floored at 1) to every bank row,
        # each
        # hypothesis's cost, the cheapest.
        units = block_distances(h, bank.rows, m) / bank.unit
        cost, nearest = hypothesis_costs(
            units.clamp_min(1.0),
            observed,
            hyp,
            neighbours=cfg.neighbours,
            penalty=cfg.penalty,
            growth=cfg.growth,
        )
        best = cost.detach().argmin(dim=1)
        keep = observed & hyp[best]
        chosen = nearest[rows, best]  # (B, k)
        scores = units.gather(1, chosen.unsqueeze(2).expand(-1, -1, m)).mean(dim=1) * observed
        self.decoder.count("bank_flops", len(h) * n * (2 * self.ae.width + m * s))
        soft = None
        if differentiable:
            weights = torch.softmax(-cost / cfg.temperature, dim=1)  # +inf cost -> weight 0
            soft = torch.einsum(
                "bs,bsm->bm", weights, (observed.unsqueeze(1) & hyp.unsqueeze(0)).to(h.dtype)
            )
        return _Choice(keep=keep, soft=soft, scores=scores)

    def _choose_chunked(
        self, h: torch.Tensor, observed: torch.Tensor, differentiable: bool
    ) -> _Choice:
        per_row = max(1, len(self._bank) * max(len(self.hypotheses), self.num_parties))
        size = max(1, self.config.max_cells // per_row)
        if len(h) <= size:
            return self._choose(h, observed, differentiable)
        parts = [
            self._choose(h[i : i + size], observed[i : i + size], differentiable)
            for i in range(0, len(h), size)
        ]
        soft = (
            None
            if parts[0].soft is None
            else torch.cat([p.soft for p in parts if p.soft is not None])
        )
        return _Choice(
            keep=torch.cat([p.keep for p in parts]),
            soft=soft,
            scores=torch.cat([p.scores for p in parts]),
        )

    def _purify(self, h: torch.Tensor, observed: torch.Tensor, differentiable: bool) -> Purified:
        cfg = self.config
        self.last_cost = self.decoder.reset()
        self.decoder.count("bank_flops", 0)
        # Steps 1-2: the cheapest hypothesis of the consistency bank.
        choice = self._choose_chunked(h, observed, differentiable)
        weight = choice.keep.to(h.dtype)
        if choice.soft is not None:
            # BPDA: the hard choice forward, the softmin over hypotheses backward.
            weight = weight + choice.soft - choice.soft.detach()
        # Step 3: decode from the kept blocks alone.
        z = self.decoder.refine(
            h,
            weight.unsqueeze(1),
            weight,
            steps=cfg.steps,
            lr=cfg.lr,
            differentiable=differentiable,
            analytic_grad=cfg.analytic_grad,
        )
        self.decoder.count("dec_fwd_rows", len(h))
        out = self.ae.decode(z)
        out = out if differentiable else out.detach()
        # Step 4: an excluded block is flagged when it is also far from the real samples the rest
        # agree with.
        scores = choice.scores.detach()
        flagged = self.flags(scores, observed) & ~choice.keep
        return Purified(h=out, scores=scores, flagged=flagged)
