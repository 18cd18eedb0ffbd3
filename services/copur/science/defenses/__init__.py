"""Defenses by name behind one interface: ``none``, ``ae``, ``rs``, ``copur-ref``, ``copur-l21``,
``copur``, ``copur+rs``, ``vote``.

An :class:`Engine` owns a bundle's networks, its calibration, its consistency bank and a seeded
generator on one device, and builds each defense once. Every defense maps a batch (h, observed)
to a :class:`DefenseOutput`, and offers differentiable ``logits`` for gradient attacks: exact
where the defense is differentiable, a surrogate where it is not (expectation over the noise for
smoothing, the voters' mean probabilities for the vote), so that no defense is evaluated only
against attacks that cannot see it.

Adding a defense: one module in this package whose class (or factory) carries ``@register(name,
rank=...)``. Every module here is imported below, so the registration is the only edit."""

from __future__ import annotations

import importlib
import pkgutil

from copur.science.defenses.base import Defense, DefenseOutput, check_defense, names, register
from copur.science.defenses.engine import Engine, EngineConfig
from copur_client.wire import DEFAULT_DEFENSE

__all__ = [
    "DEFAULT_DEFENSE",
    "DEFENSES",
    "Defense",
    "DefenseOutput",
    "Engine",
    "EngineConfig",
    "check_defense",
    "register",
]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

DEFENSES: tuple[str, ...] = names()
"""Every defense's name, in the order reports show them."""
