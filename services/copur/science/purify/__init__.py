"""Purifiers by name, built from a bundle's autoencoder, calibration and consistency bank.

May import: ``copur.science.models``, ``copur.errors`` and its own modules (the science: no
transport, no I/O)."""

from __future__ import annotations

import torch

from copur.errors import ConfigError
from copur.science.models import AutoEncoder
from copur.science.purify.bank import Bank
from copur.science.purify.base import Purified, Purifier
from copur.science.purify.calibrate import block_scales, flag_thresholds
from copur.science.purify.consensus import ConsensusConfig, ConsensusPurifier
from copur.science.purify.reference import ReferenceConfig, ReferencePurifier
from copur.science.purify.robust import RobustConfig, RobustPurifier

__all__ = [
    "PURIFIERS",
    "Bank",
    "ConsensusConfig",
    "ConsensusPurifier",
    "Purified",
    "Purifier",
    "ReferenceConfig",
    "ReferencePurifier",
    "RobustConfig",
    "RobustPurifier",
    "block_scales",
    "flag_thresholds",
    "make_purifier",
]

PURIFIERS: dict[str, type[Purifier]] = {
    "copur": ConsensusPurifier,
    "copur-l21": RobustPurifier,
    "copur-ref": ReferencePurifier,
}


def make_purifier(
    name: str,
    *,
    autoencoder: AutoEncoder,
    num_parties: int,
    block_scale: torch.Tensor,
    threshold: torch.Tensor | None = None,
    bank: Bank | None = None,
    **config: object,
) -> Purifier:
    """Build the purifier ``name`` (``copur``, ``copur-l21`` or ``copur-ref``)."""
    try:
        factory = PURIFIERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown purifier '{name}' (known: {', '.join(sorted(PURIFIERS))})"
        ) from None
    return factory(
        autoencoder=autoencoder,
        num_parties=num_parties,
        block_scale=block_scale,
        threshold=threshold,
        bank=bank,
        **config,
    )
