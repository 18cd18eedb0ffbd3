"""The Purifier interface: map a received embedding (with unobserved blocks) onto the clean
manifold."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from copur.science.models import AutoEncoder
from copur.science.purify.bank import Bank
from copur.science.purify.blocks import block_norms, mask_blocks

__all__ = ["Purified", "Purifier"]


@dataclass(frozen=True)
class Purified:
    """A purifier's answer for a batch.

    ``h``: (B, M*e) purified embedding; ``scores``: (B, M) per-party anomaly scores, 0 for
    unobserved parties (the residual ||h_hat_i - h_i|| divided by the party's typical clean block
    norm, unless the purifier says otherwise); ``flagged``: (B, M) parties the purifier found
    lying: their score exceeds the threshold calibrated on clean validation data (and, for
    purifiers that exclude blocks, the block was excluded)."""

    h: torch.Tensor
    scores: torch.Tensor
    flagged: torch.Tensor


class Purifier(ABC):
    """Owns a frozen autoencoder and the calibration (per-party block scale and flag threshold,
    and the consistency bank of clean training embeddings for purifiers that use it)."""

    name: str = ""
    # : the flag threshold is ``flag_factor`` x a clean quantile of the scores; None: the
    # calibration's factor
    flag_factor: float | None = None
    #: whether the purifier reads the consistency bank (the bundle's ``bank.safetensors``)
    uses_bank: bool = False

    def __init__(
        self,
        *,
        autoencoder: AutoEncoder,
        num_parties: int,
        block_scale: torch.Tensor,
        threshold: torch.Tensor | None = None,
        bank: Bank | None = None,
    ) -> None:
        self.ae = autoencoder.eval().requires_grad_(False)
        self.emb_dim = autoencoder.width // num_parties
        self.num_parties = num_parties
        device = next(autoencoder.parameters()).device
        self.block_scale = block_scale.to(device)
        self.threshold = threshold.to(device) if threshold is not None else None
        self.bank = bank.to(device) if bank is not None else None

    @property
    def device(self) -> torch.device:
        """The device of the autoencoder's parameters (where inputs must be)."""
        return self.block_scale.device

    def scores(self, h_hat: torch.Tensor, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Normalised per-party residuals, 0 where unobserved."""
        return block_norms(h_hat - h, self.num_parties) / self.block_scale * observed

    def flags(self, scores: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """(B, M) bool: observed blocks whose score exceeds the calibrated threshold (none
        without thresholds)."""
        if self.threshold is None:
            return torch.zeros_like(observed)
        return observed & (scores > self.threshold)

    def masked_input(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Zero the blocks that are not kept (how the AE saw hidden parties in training)."""
        return mask_blocks(h, keep, self.emb_dim)

    @abstractmethod
    def purify(
        self, h: torch.Tensor, observed: torch.Tensor, *, differentiable: bool = False
    ) -> Purified:
        """Purify a batch. ``observed`` (B, M) bool marks received, valid blocks; the rest are
        ignored.

        With ``differentiable`` the computation is unrolled so that gradients flow from the
        output back to ``h`` (for adaptive attacks); otherwise no autograd state is kept beyond
        the inner steps."""
