"""The networks: per-party extractors f_i, the fusion head g, and the subspace autoencoder
D(E(.))."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from copur.science.config import ModelConfig

__all__ = ["AutoEncoder", "FusionHead", "ModelSet", "PartyExtractor", "build_models"]


class PartyExtractor(nn.Module):
    """f_i: standardise the party's raw features (train statistics), then an MLP to an embedding."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, *, in_dim: int, hidden: int, emb_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, emb_dim))

    @property
    def in_dim(self) -> int:
        """The party's number of raw feature columns."""
        return int(self.mean.shape[0])

    def set_standardization(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        """Store the training split's per-column mean and standard deviation (zero deviations
        become 1)."""
        self.mean.copy_(mean)
        self.scale.copy_(torch.where(scale > 1e-8, scale, torch.ones_like(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """f_i(x): standardise, then the MLP; (n, d_i) -> (n, e)."""
        return self.net((x - self.mean) / self.scale)


class FusionHead(nn.Module):
    """g: the fusion center's classifier over the concatenated embedding h = [h_1 .. h_M]."""

    def __init__(self, *, in_dim: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """g(h): class logits of concatenated embeddings; (n, M*e) -> (n, C)."""
        return self.net(h)


class AutoEncoder(nn.Module):
    """D(E(.)): d -> hidden -> code -> hidden -> d, leaky-ReLU after the first and third layer."""

    def __init__(self, *, in_dim: int, hidden: int, code: int, slope: float) -> None:
        super().__init__()
        self.width = in_dim
        self.encoder = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.LeakyReLU(slope), nn.Linear(hidden, code)
        )
        self.decoder = nn.Sequential(
            nn.Linear(code, hidden), nn.LeakyReLU(slope), nn.Linear(hidden, in_dim)
        )

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        """E(h): the code of concatenated embeddings; (n, M*e) -> (n, code)."""
        return self.encoder(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """D(z): concatenated embeddings from a code; (n, code) -> (n, M*e)."""
        return self.decoder(z)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """D(E(h)): the projection onto the learned manifold."""
        return self.decoder(self.encoder(h))


@dataclass
class ModelSet:
    """Everything a bundle holds: extractors, the stage-1 head, the AE, the stage-3 head."""

    extractors: list[PartyExtractor]
    head_vfl: FusionHead
    autoencoder: AutoEncoder
    head_ae: FusionHead

    def embed(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """h = [f_1(x_1) .. f_M(x_M)], shape (N, M*e)."""
        return torch.cat([f(x) for f, x in zip(self.extractors, xs, strict=True)], dim=1)

    def to(self, device: torch.device | str) -> ModelSet:
        """Move every network to ``device``; returns self."""
        for module in self.modules():
            module.to(device)
        return self

    def modules(self) -> list[nn.Module]:
        """Every network of the set, extractors first."""
        return [*self.extractors, self.head_vfl, self.autoencoder, self.head_ae]

    def eval(self) -> ModelSet:
        """Put every network in evaluation mode; returns self."""
        for module in self.modules():
            module.eval()
        return self


def build_models(*, party_dims: Sequence[int], num_classes: int, config: ModelConfig) -> ModelSet:
    """Fresh (randomly initialised from torch's current generator) networks for the given shapes."""
    width = len(party_dims) * config.emb_dim
    return ModelSet(
        extractors=[
            PartyExtractor(in_dim=d, hidden=config.extractor_hidden, emb_dim=config.emb_dim)
            for d in party_dims
        ],
        head_vfl=FusionHead(in_dim=width, hidden=config.head_hidden, num_classes=num_classes),
        autoencoder=AutoEncoder(
            in_dim=width, hidden=config.ae_hidden, code=config.ae_code, slope=config.ae_slope
        ),
        head_ae=FusionHead(in_dim=width, hidden=config.head_hidden, num_classes=num_classes),
    )
