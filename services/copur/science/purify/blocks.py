"""Block arithmetic on concatenated embeddings h = [h_1 .. h_M] (each block of width e)."""

from __future__ import annotations

import torch

__all__ = ["block_distances", "block_norms", "expand_blocks", "smooth_block_norms"]


def block_norms(x: torch.Tensor, num_parties: int) -> torch.Tensor:
    """(..., M*e) -> (..., M): the l2 norm of every block."""
    return x.unflatten(-1, (num_parties, -1)).norm(dim=-1)


def smooth_block_norms(x: torch.Tensor, num_parties: int, eps: float = 1e-8) -> torch.Tensor:
    """Block norms sqrt(||x_i||^2 + eps): differentiable at 0 (where the plain norm's gradient is NaN)."""
    return (x.unflatten(-1, (num_parties, -1)).square().sum(dim=-1) + eps).sqrt()


def expand_blocks(mask: torch.Tensor, emb_dim: int) -> torch.Tensor:
    """(..., M) per-party mask -> (..., M*e) per-coordinate mask, same dtype."""
    return mask.repeat_interleave(emb_dim, dim=-1)


def block_distances(h: torch.Tensor, rows: torch.Tensor, num_parties: int) -> torch.Tensor:
    """(B, M*e) x (N, M*e) -> (B, N, M): the Euclidean distance between every pair of same-party blocks."""
    a = h.unflatten(-1, (num_parties, -1)).transpose(0, 1)  # (M, B, e)
    b = rows.unflatten(-1, (num_parties, -1)).transpose(0, 1)  # (M, N, e)
    return torch.cdist(a, b).permute(1, 2, 0)
