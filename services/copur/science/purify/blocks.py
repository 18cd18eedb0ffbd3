"""Block arithmetic on concatenated embeddings h = [h_1 .. h_M] (each block of width e)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch

__all__ = [
    "block_distances",
    "block_norms",
    "expand_blocks",
    "mask_blocks",
    "smooth_block_norms",
    "subset_masks",
]


def block_norms(x: torch.Tensor, num_parties: int) -> torch.Tensor:
    """(..., M*e) -> (..., M): the l2 norm of every block."""
    return x.unflatten(-1, (num_parties, -1)).norm(dim=-1)


def smooth_block_norms(x: torch.Tensor, num_parties: int, eps: float = 1e-8) -> torch.Tensor:
    """Block norms sqrt(||x_i||^2 + eps): differentiable at 0 (where the plain norm's gradient is
    NaN)."""
    return (x.unflatten(-1, (num_parties, -1)).square().sum(dim=-1) + eps).sqrt()


def expand_blocks(mask: torch.Tensor, emb_dim: int) -> torch.Tensor:
    """(..., M) per-party mask -> (..., M*e) per-coordinate mask, same dtype."""
    return mask.repeat_interleave(emb_dim, dim=-1)


def mask_blocks(h: torch.Tensor, keep: torch.Tensor, emb_dim: int) -> torch.Tensor:
    """``h`` (..., M*e) with the blocks that ``keep`` (..., M) leaves out set to zero
    (broadcasting)."""
    return h * expand_blocks(keep.to(h.dtype), emb_dim)


def subset_masks(
    num_parties: int, sizes: Iterable[int], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(S, M) bool: row s marks the parties of the s-th subset; every subset of each size in
    ``sizes``, sizes in the given order, subsets of one size in ``itertools.combinations`` order."""
    subsets = [s for r in sizes for s in itertools.combinations(range(num_parties), r)]
    member = torch.zeros(len(subsets), num_parties, dtype=torch.bool)
    for row, subset in enumerate(subsets):
        member[row, list(subset)] = True
    return member.to(device)


def block_distances(h: torch.Tensor, rows: torch.Tensor, num_parties: int) -> torch.Tensor:
    """(B, M*e) x (N, M*e) -> (B, N, M): the Euclidean distance between every pair of same-party
    blocks."""
    a = h.unflatten(-1, (num_parties, -1)).transpose(0, 1)  # (M, B, e)
    b = rows.unflatten(-1, (num_parties, -1)).transpose(0, 1)  # (M, N, e)
    return torch.cdist(a, b).permute(1, 2, 0)
