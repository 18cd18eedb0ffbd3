"""Typed configuration: model shapes and the three training stages. Keyword-only, validated."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from copur.errors import ConfigError

__all__ = ["ModelConfig", "TrainConfig"]


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Shapes: extractor d_i -> extractor_hidden -> emb_dim; head M*e -> head_hidden -> classes;
    autoencoder M*e -> ae_hidden -> ae_code -> ae_hidden -> M*e (leaky-ReLU(ae_slope))."""

    emb_dim: int = 16
    extractor_hidden: int = 128
    head_hidden: int = 64
    ae_hidden: int = 200
    ae_code: int = 32
    ae_slope: float = 0.8

    def __post_init__(self) -> None:
        for name in ("emb_dim", "extractor_hidden", "head_hidden", "ae_hidden", "ae_code"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")

    def check_code_size(self, num_parties: int) -> None:
        """The code must be well below the input width, or the AE learns the identity."""
        width = num_parties * self.emb_dim
        if self.ae_code * 2 > width:
            raise ConfigError(
                f"ae_code={self.ae_code} is not well below the AE input width {width} (need <= "
                f"{width // 2})"
            )


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The three training stages (docs/ARCHITECTURE.md, "Training"), each with its own epochs and
    learning rate.

    ``ae_mask_prob``: chance that a training sample of the AE has blocks hidden (zeroed), up to
    ``ae_mask_max`` of them, so the encoder learns to impute from partial views."""

    seed: int = 0
    val_fraction: float = 0.1
    batch_size: int = 64
    vfl_epochs: int = 100
    vfl_lr: float = 1e-3
    vfl_mask_prob: float = 0.5
    weight_decay: float = 1e-4
    ae_epochs: int = 300
    ae_lr: float = 1e-3
    ae_mask_prob: float = 0.75
    ae_mask_max: int | None = None
    head_epochs: int = 30
    head_lr: float = 1e-3
    head_mask_prob: float = 0.5
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        for name in ("batch_size", "vfl_epochs", "ae_epochs", "head_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("vfl_lr", "ae_lr", "head_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        for name in ("vfl_mask_prob", "ae_mask_prob", "head_mask_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    def mask_max(self, num_parties: int) -> int:
        """The most parties hidden at once in training (at least one party always stays visible)."""
        return self.ae_mask_max if self.ae_mask_max is not None else max(1, num_parties - 2)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the manifest's ``train`` section)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`; unknown keys are a ConfigError."""
        values = dict(raw)
        values["model"] = ModelConfig(**values.get("model", {}))
        return cls(**values)
