"""Choosing the torch device: ``auto`` is ``cuda`` when present, else ``cpu``."""

from __future__ import annotations

import torch

from copur.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto`` / ``cpu`` / ``cuda[:k]`` to a device; asking for cuda without one is an
    error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}' (use auto, cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but no CUDA device is available")
    return device
