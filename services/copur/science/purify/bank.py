"""The consistency bank: clean embeddings of real training samples, and how consistent a set of
parties is.

Pure functions, no I/O. The bank holds N clean concatenated embeddings b_n = [b_n1 .. b_nM] of
training samples. A kept set K of parties is *consistent* when a few real samples match every
block of K at once:

    cost(K) = mean over the k bank rows with the lowest sum of sum_{i in K} max(||h_i - b_ni|| /
    u_i, 1)
              + penalty * |observed parties not in K|

u_i is party i's typical block distance to its nearest bank row on clean held-out data
(:func:`nearest_unit`), so every block's distance is in units of what an honest block of that
party costs. The floor of 1 unit means that matching a bank row exactly (a liar copying the
blocks of a real sample) earns nothing over an honest match, and the penalty is what hiding an
observed block costs: a block is worth keeping while it costs less.

Why real samples rather than the autoencoder's manifold: the decoder's range is a continuum that
fits blocks of two different samples at once (a 32-dimensional code can match the 32 numbers of
two 16-wide blocks), so the smallest residual does not single out the honest parties when liars
send the blocks of another sample. Blocks of two different real samples rarely match one real
sample."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from copur.science.purify.blocks import block_distances, subset_masks

__all__ = ["Bank", "hypothesis_costs", "nearest_unit", "subset_hypotheses"]


@dataclass(frozen=True)
class Bank:
    """``rows`` (N, M*e) clean embeddings of training samples, their ``labels`` (N,), and
    ``unit`` (M,): each party's typical nearest-neighbour block distance on clean validation
    data (see :func:`nearest_unit`)."""

    rows: torch.Tensor
    labels: torch.Tensor
    unit: torch.Tensor

    def to(self, device: torch.device | str) -> Bank:
        """The bank on ``device``."""
        return Bank(
            rows=self.rows.to(device), labels=self.labels.to(device), unit=self.unit.to(device)
        )

    def __len__(self) -> int:
        return len(self.rows)


def nearest_unit(
    h_clean: torch.Tensor, rows: torch.Tensor, num_parties: int, block_scale: torch.Tensor
) -> torch.Tensor:
    """(M,): per party, the median over ``h_clean`` of the block distance to the nearest bank
    row, where nearest means the lowest sum of block distances each divided by ``block_scale``
    (a whole-sample match)."""
    # Step 1: per-block distances of every clean row to every bank row.
    dist = block_distances(h_clean, rows, num_parties)
    # Step 2: the bank row that matches the whole sample best, blocks weighted by their typical
    # norm.
    nearest = (dist / block_scale).sum(dim=2).argmin(dim=1)
    # Step 3: that row's distance in each block, the median over the clean rows.
    per_block = dist[torch.arange(len(h_clean), device=h_clean.device), nearest]
    return per_block.median(dim=0).values.clamp_min(1e-6)


def subset_hypotheses(
    num_parties: int, tolerate: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(S, M) bool keep masks: hide every subset of at most ``tolerate`` parties (row 0 hides
    none)."""
    tolerate = max(0, min(tolerate, num_parties - 1))
    return ~subset_masks(num_parties, range(tolerate + 1), device)


def hypothesis_costs(
    units: torch.Tensor,
    observed: torch.Tensor,
    keep: torch.Tensor,
    *,
    neighbours: int,
    penalty: float,
    growth: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cost of every hypothesis for every sample, and its nearest bank rows.

    ``units`` (B, N, M): block distances in units (already floored at 1); ``observed`` (B, M);
    ``keep`` (S, M). The j-th hidden observed block costs ``penalty`` + (j - 1) * ``growth``:
    more liars are less likely, so hiding two blocks must buy more than twice what hiding one
    does. Returns cost (B, S) (+inf where a hypothesis keeps no observed block) and the indices
    (B, S, k) of the k bank rows that match the kept blocks best."""
    k = min(neighbours, units.shape[1])
    kept = observed.unsqueeze(1) & keep.unsqueeze(0)  # (B, S, M)
    # Step 1: every bank row's summed distance over each hypothesis's kept blocks, (B, S, N).
    summed = torch.einsum("bnm,bsm->bsn", units, kept.to(units.dtype))
    # Step 2: the mean over the k best-matching bank rows: a few real samples must agree, not just
    # one.
    best = summed.topk(k, dim=2, largest=False)
    cost = best.values.mean(dim=2)
    # Step 3: hiding an observed block costs the penalty; keeping nothing is not a hypothesis.
    hidden = (observed.unsqueeze(1) & ~keep.unsqueeze(0)).sum(dim=2).to(cost.dtype)
    cost = cost + penalty * hidden + growth * hidden * (hidden - 1) / 2
    cost = torch.where(kept.any(dim=2), cost, torch.full_like(cost, torch.inf))
    return cost, best.indices
