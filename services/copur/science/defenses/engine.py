"""The engine every defense runs on: a bundle's networks, calibration, consistency bank and a seeded
generator on one device, with the purifiers built once and the defenses built by name."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from copur.errors import BundleError
from copur.science.bundle import Bundle
from copur.science.calibration import bundle_bank
from copur.science.certify import SmoothingConfig
from copur.science.defenses.base import Defense, build
from copur.science.purify import PURIFIERS, ConsensusConfig, Purifier, RobustConfig, make_purifier
from copur.science.purify.blocks import mask_blocks

__all__ = ["Engine", "EngineConfig"]


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """How the engine runs its defenses: smoothing's noise and draws, the vote's subset size k,
    the purifiers' configurations, the surrogate's noise draws and the seed of its generator."""

    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    predict_samples: int = 200
    vote_k: int = 2
    robust: RobustConfig = field(default_factory=RobustConfig)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    # : noise draws per gradient of a smoothing defense's surrogate logits (expectation over
    # transformation)
    eot_samples: int = 16
    seed: int = 0


class Engine:
    """A bundle's networks, calibration and generator on one device; builds defenses by name."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        device: torch.device | str = "cpu",
        config: EngineConfig | None = None,
    ):
        if bundle.calibration is None:
            raise BundleError(
                f"bundle {bundle.path} has no calibration.json: run `copur calibrate {bundle.path}`"
            )
        self.config = config or EngineConfig()
        self.device = torch.device(device)
        self.models = bundle.models.to(self.device)
        self.manifest_classes = bundle.manifest.num_classes
        self.num_parties = bundle.manifest.num_parties
        self.emb_dim = bundle.manifest.model["emb_dim"]
        self.calibration = bundle.calibration
        self.block_scale = torch.tensor(self.calibration.block_scale, device=self.device)
        self._bundle = bundle
        self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        self._purifiers: dict[str, Purifier] = {}
        self._defenses: dict[str, Defense] = {}

    def mask(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """``h`` with the unobserved blocks set to zero (how the networks see a missing party)."""
        return mask_blocks(h, observed, self.emb_dim)

    def _make(self, name: str, threshold: list[float] | None, **config: object) -> Purifier:
        thr = torch.tensor(threshold, device=self.device) if threshold is not None else None
        bank = bundle_bank(self._bundle).to(self.device) if PURIFIERS[name].uses_bank else None
        return make_purifier(
            name,
            autoencoder=self.models.autoencoder,
            num_parties=self.num_parties,
            block_scale=self.block_scale,
            threshold=thr,
            bank=bank,
            **config,
        )

    def purifier(self, name: str) -> Purifier:
        """The purifier ``name`` with the bundle's calibrated thresholds (built once)."""
        if name not in self._purifiers:
            thresholds = self.calibration.thresholds
            if name not in thresholds:
                raise BundleError(
                    f"bundle {self._bundle.path} has no calibration for purifier '{name}' "
                    "(calibrated by an older "
                    f"version): run `copur calibrate {self._bundle.path}`"
                )
            configs: dict[str, object] = {
                "copur": self.config.consensus,
                "copur-l21": self.config.robust,
            }
            extra = {"config": configs[name]} if name in configs else {}
            self._purifiers[name] = self._make(name, thresholds[name], **extra)
        return self._purifiers[name]

    def voter_purifier(self) -> Purifier:
        """Decode from the voter's own parties only: one start, no detection."""
        if "voter" not in self._purifiers:
            cfg = RobustConfig(start_hidden=0, detect=False, steps=self.config.robust.steps)
            self._purifiers["voter"] = self._make("copur-l21", None, config=cfg)
        return self._purifiers["voter"]

    def defense(self, name: str) -> Defense:
        """The defense ``name``; unknown names are a ConfigError listing the known ones."""
        if name not in self._defenses:
            self._defenses[name] = build(name, self)
        return self._defenses[name]
