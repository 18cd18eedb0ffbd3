"""The attack library by name, shared by the evaluation grid and the adversary service.

May import: ``copur.errors``, ``copur.science.purify.blocks`` (block arithmetic) and its own
modules: the science, no transport, no defense code (the defense under test reaches an attack
through its context's callables)."""

from __future__ import annotations

from typing import Any

from copur.errors import ConfigError
from copur.science.attacks.base import Attack, AttackContext, Model, Query, Verdict, attacker_mask
from copur.science.attacks.gradient import LMA, PGD, Adaptive, Evade
from copur.science.attacks.mimic import SIA, Mimic
from copur.science.attacks.simple import Drop, Flip, Noise, Replace, Zero

__all__ = [
    "ATTACKS",
    "LMA",
    "PGD",
    "SIA",
    "Adaptive",
    "Attack",
    "AttackContext",
    "Drop",
    "Evade",
    "Flip",
    "Mimic",
    "Model",
    "Noise",
    "Query",
    "Replace",
    "Verdict",
    "Zero",
    "attacker_mask",
    "make_attack",
]

ATTACKS: dict[str, type[Attack]] = {
    "adaptive": Adaptive,
    "drop": Drop,
    "evade": Evade,
    "flip": Flip,
    "lma": LMA,
    "mimic": Mimic,
    "noise": Noise,
    "pgd": PGD,
    "replace": Replace,
    "sia": SIA,
    "zero": Zero,
}


def make_attack(name: str, **params: Any) -> Attack:
    """Build attack ``name`` with its parameters; unknown names or parameters are a ConfigError."""
    try:
        cls = ATTACKS[name]
    except KeyError:
        raise ConfigError(
            f"unknown attack '{name}' (known: {', '.join(sorted(ATTACKS))})"
        ) from None
    try:
        return cls(**params)
    except TypeError:
        raise ConfigError(f"attack '{name}' does not take parameters {sorted(params)}") from None
