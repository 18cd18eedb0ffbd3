"""Calibration on clean validation embeddings: per-party block scales and flag thresholds."""

from __future__ import annotations

import torch

from copur.science.purify.base import Purifier
from copur.science.purify.blocks import block_norms

__all__ = ["block_scales", "flag_thresholds"]


def block_scales(h_clean: torch.Tensor, num_parties: int) -> torch.Tensor:
    """Each party's typical clean block norm (the median over samples), (M,)."""
    return block_norms(h_clean, num_parties).median(dim=0).values.clamp_min(1e-6)


@torch.no_grad()
def flag_thresholds(
    purifier: Purifier, h_clean: torch.Tensor, *, quantile: float = 0.99, factor: float = 3.0
) -> torch.Tensor:
    """``factor`` x the ``quantile`` of each party's normalised residual on clean data, (M,).

    On data distributed like ``h_clean`` an honest block is flagged with probability <= 1 -
    quantile."""
    saved, purifier.threshold = purifier.threshold, None
    try:
        observed = torch.ones(
            len(h_clean), purifier.num_parties, dtype=torch.bool, device=h_clean.device
        )
        scores = purifier.purify(h_clean, observed).scores
    finally:
        purifier.threshold = saved
    return factor * scores.quantile(quantile, dim=0)
