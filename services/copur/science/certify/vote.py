"""Party-subset vote certificate.

M parties; the voters are every subset S of k parties (``itertools.combinations`` order). Each
voter is a classifier that sees only the parties in S and casts one vote (a class index) or
abstains (-1). An adversary who controls a set A of t parties can change only the voters with S
and A intersecting: at most C(M, k) - C(M - t, k) of them, whatever A is."""

from __future__ import annotations

import itertools
import math

import torch

from copur.errors import ConfigError
from copur.science.certify.smoothing import ABSTAIN

__all__ = [
    "certified_accuracy",
    "certified_parties",
    "changeable_voters",
    "subset_voters",
    "tally",
    "vote_predict",
]


def _check_k(num_parties: int, k: int) -> None:
    if not 1 <= k <= num_parties:
        raise ConfigError(f"k (parties per voter) must be in 1..num_parties={num_parties}, got {k}")


def subset_voters(num_parties: int, k: int) -> list[tuple[int, ...]]:
    """The C(M, k) voters: every k-subset of parties 0..M-1, in ``itertools.combinations`` order."""
    _check_k(num_parties, k)
    return list(itertools.combinations(range(num_parties), k))


def changeable_voters(num_parties: int, k: int, t: int) -> int:
    """C(M, k) - C(M - t, k): the most voters any t compromised parties can influence (t clipped
    to 0..M).

    It is exact: a voter is untouched iff its subset avoids all t parties, and C(M - t, k)
    subsets do."""
    _check_k(num_parties, k)
    # Step 1: clip t to the number of parties there are.
    t = min(max(t, 0), num_parties)
    # Step 2: every voter minus those that avoid the t compromised parties.
    return math.comb(num_parties, k) - math.comb(num_parties - t, k)


def tally(votes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts (B, num_classes) int64 of votes (B, V) int64; ``ABSTAIN`` (-1) votes count nowhere."""
    if votes.dim() != 2:
        raise ValueError(f"votes must be (B, V), got shape {tuple(votes.shape)}")
    if bool(((votes < ABSTAIN) | (votes >= num_classes)).any()):
        raise ValueError(f"votes must be in -1..{num_classes - 1}")
    votes = votes.to(torch.int64)
    # Step 1: abstentions add 0 to class 0; every other vote adds 1 to its class.
    cast = (votes != ABSTAIN).to(torch.int64)
    counts = torch.zeros(votes.shape[0], num_classes, dtype=torch.int64, device=votes.device)
    return counts.scatter_add_(1, votes.clamp(min=0), cast)


def vote_predict(counts: torch.Tensor) -> torch.Tensor:
    """Plurality vote (B,) int64: the class with the most votes, ties going to the LOWEST class
    index; ``ABSTAIN`` where every voter abstained (all counts 0)."""
    # Step 1: torch.argmax returns the first maximal index, which is the fixed tie rule.
    pred = counts.argmax(dim=1)
    # Step 2: a sample with no vote at all abstains.
    return torch.where(counts.max(dim=1).values > 0, pred, torch.full_like(pred, ABSTAIN))


def certified_parties(counts: torch.Tensor, *, num_parties: int, k: int) -> torch.Tensor:
    """Per sample, the largest t in 0..M with gap > 2 * changeable_voters(M, k, t); -1 where t =
    0 fails.

    The gap is the predicted class's count minus the largest count among the other classes, so -1
    marks a tie or an all-abstain sample. Guarantee: whatever any t <= certified_parties
    compromised parties make their voters output (any class or abstain), ``vote_predict`` is
    unchanged. Each changed voter lowers the gap by at most 2 (one vote off the prediction, one
    onto a rival), and at most changeable_voters(M, k, t) voters change, so the gap stays > 0 and
    the prediction is a strict winner. The bound uses counts only, so it is conservative: it
    assumes the changeable voters are the ones voting for the prediction."""
    _check_k(num_parties, k)
    # Step 1: the predicted class's count and the best rival count (0 when there is no rival class).
    pred = counts.argmax(dim=1)
    n_top = counts.gather(1, pred[:, None])[:, 0]
    n_rival = counts.scatter(1, pred[:, None], -1).max(dim=1).values.clamp(min=0)
    gap = n_top - n_rival
    # Step 2: the thresholds 2 * changeable_voters(M, k, t) for t = 0..M, non-decreasing in t.
    thresholds = torch.tensor(
        [2 * changeable_voters(num_parties, k, t) for t in range(num_parties + 1)],
        dtype=torch.int64,
        device=counts.device,
    )
    # Step 3: by monotonicity, the number of thresholds the gap beats, minus one, is the largest
    # such t.
    return (gap[:, None] > thresholds[None, :]).sum(dim=1) - 1


def certified_accuracy(
    pred: torch.Tensor, cert_t: torch.Tensor, labels: torch.Tensor, *, max_t: int
) -> dict[int, float]:
    """For t = 0..max_t, the fraction of samples that are correct (pred == label) and certified
    for at least t compromised parties (cert_t >= t): a lower bound on accuracy under any such
    attack."""
    if not pred.shape == cert_t.shape == labels.shape or pred.dim() != 1:
        raise ValueError("pred, cert_t and labels must be 1-D tensors of the same length")
    if pred.numel() == 0:
        raise ValueError("certified accuracy of an empty set of samples is undefined")
    # Step 1: which samples are classified correctly.
    correct = pred == labels
    # Step 2: per t, the share of all samples that are correct and certified for at least t parties.
    return {t: float((correct & (cert_t >= t)).to(torch.float64).mean()) for t in range(max_t + 1)}
