"""Query-based search: candidate lies built from donor samples, and the best candidate by the
defense's answers.

Pure functions over tensors; the defense is reached only through :meth:`AttackContext.ask`."""

from __future__ import annotations

from typing import Final

import torch

from copur.science.attacks.base import AttackContext
from copur.science.purify.blocks import block_distances

__all__ = ["FACTORS", "blend", "nearest_donors", "pick_best", "random_donors"]

# : the factors (times the attack's own) a search tries in turn: how far each block moves towards
# the donor's
FACTORS: Final = (1.0, 0.75, 1.25, 0.5, 1.5)


def random_donors(allowed: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """(B, n) pool indices drawn uniformly (with replacement) among each row's ``allowed`` (B, P)
    pool rows."""
    weights = allowed.to(torch.float32).cpu()
    empty = weights.sum(dim=1) == 0
    weights[empty] = 1.0  # no allowed donor (a class absent from the pool): any row
    return torch.multinomial(weights, n, replacement=True, generator=generator).to(allowed.device)


def nearest_donors(
    h: torch.Tensor,
    pool: torch.Tensor,
    allowed: torch.Tensor,
    attackers: list[int],
    num_parties: int,
    n: int,
) -> torch.Tensor:
    """(B, n) allowed pool rows whose blocks best match the sample's honest blocks (white-box
    mimicry).

    A lie agrees with r honest parties when the donor's blocks are close to theirs on r of them;
    the search does not know which r the defense rewards, so the n candidates go in turn to r =
    H, H-1, .., 1 (H honest parties), each r ranking donors by the sum of their r smallest block
    distances (each block divided by its party's median block norm in the pool)."""
    honest = [i for i in range(num_parties) if i not in attackers]
    scale = pool.unflatten(1, (num_parties, -1)).norm(dim=2).median(dim=0).values.clamp_min(1e-6)
    dist = (block_distances(h, pool, num_parties) / scale)[:, :, honest]  # (B, P, H)
    partial = dist.sort(dim=2).values.cumsum(dim=2)  # [..., r-1]: the r smallest
    partial = torch.where(allowed.unsqueeze(2), partial, torch.full_like(partial, torch.inf))
    per_r = -(-n // len(honest))
    k = min(per_r, pool.shape[0])
    ranked = []
    for r in reversed(range(len(honest))):
        best = partial[:, :, r].topk(k, dim=1, largest=False)
        # Fewer allowed rows than k: the rest of the ranking repeats the best allowed one, never a
        # refused row.
        ranked.append(torch.where(best.values.isinf(), best.indices[:, :1], best.indices))
    # Interleave: the best donor for every r first, then the second best, ...
    order = torch.stack(ranked, dim=2).flatten(1)
    return order.repeat(1, -(-n // order.shape[1]))[:, :n]


def blend(
    h: torch.Tensor, donor_rows: torch.Tensor, factors: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """(B, N, D) candidates: h with the masked blocks moved ``factors`` (N,) of the way to
    ``donor_rows`` (B, N, D) (1: the donor's blocks exactly; every attacker takes the same donor,
    so colluders tell one story)."""
    base = h.unsqueeze(1)
    moved = base + factors.view(1, -1, 1).to(h.dtype) * (donor_rows - base)
    return torch.where(mask, moved, base.expand_as(moved))


def pick_best(
    ctx: AttackContext, candidates: torch.Tensor, observed: torch.Tensor, reference: torch.Tensor
) -> torch.Tensor:
    """(B, D): per sample, the candidate (of (B, N, D)) that the defense answers wrongly (not
    ``reference``) with the lowest probability of ``reference``; when none is answered wrongly,
    the lowest probability."""
    b, n, _ = candidates.shape
    verdict = ctx.ask(candidates.flatten(0, 1), observed.repeat_interleave(n, dim=0))
    labels = verdict.labels.view(b, n)
    p_ref = (
        verdict.probs.view(b, n, -1).gather(2, reference.view(b, 1, 1).expand(b, n, 1)).squeeze(2)
    )
    key = p_ref - 2.0 * (labels != reference.unsqueeze(1)).to(p_ref.dtype)
    best = key.argmin(dim=1)
    return candidates[torch.arange(b, device=candidates.device), best]
