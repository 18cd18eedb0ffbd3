"""The Defense interface, what a defense answers, and the one registry of defenses by name.

A defense module registers itself with :func:`register`; :mod:`copur.science.defenses` imports
every module of this package, so adding a defense is one new module with one registration."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import torch

from copur.errors import ConfigError
from copur.science.attacks.base import Verdict

if TYPE_CHECKING:
    from copur.science.defenses.engine import Engine

__all__ = [
    "Defense",
    "DefenseFactory",
    "DefenseOutput",
    "build",
    "check_defense",
    "names",
    "register",
]

DefenseFactory = Callable[["Engine"], "Defense"]
F = TypeVar("F", bound=DefenseFactory)

_REGISTRY: dict[str, tuple[int, DefenseFactory]] = {}


def register(name: str, *, rank: int) -> Callable[[F], F]:
    """Register ``factory(engine) -> Defense`` under ``name``; ``rank`` orders :func:`names` (the
    order the reports show). Used as a decorator on a Defense class or on a function building
    one."""

    def add(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"defense '{name}' is registered twice")
        _REGISTRY[name] = (rank, factory)
        return factory

    return add


def names() -> tuple[str, ...]:
    """Every registered defense's name, by rank."""
    return tuple(sorted(_REGISTRY, key=lambda n: _REGISTRY[n][0]))


def check_defense(name: str) -> str:
    """``name`` when a defense is registered under it; else the one ConfigError every front door and
    command answers, naming it (its first 64 characters, quoted) and listing the known ones."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown defense {name[:64]!r} (known: {', '.join(names())})")
    return name


def build(name: str, engine: Engine) -> Defense:
    """The defense ``name`` on ``engine``; an unknown name is :func:`check_defense`'s error."""
    return _REGISTRY[check_defense(name)][1](engine)


@dataclass(frozen=True)
class DefenseOutput:
    """Per sample: probabilities (B, C), label (-1 = abstain), per-party scores and flags (B, M),
    and the certificate when asked (``radius`` for smoothing, ``certified_parties`` for the
    vote)."""

    probs: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    flagged: torch.Tensor
    certificate: dict[str, torch.Tensor] = field(default_factory=dict)


class Defense(ABC):
    """A defense: ``predict`` answers a batch; ``logits`` are what gradient attacks differentiate
    (exact when ``differentiable``, else a documented surrogate, or a ConfigError where there is
    none)."""

    name: str = ""
    differentiable: bool = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @abstractmethod
    def predict(
        self, h: torch.Tensor, observed: torch.Tensor, *, certify: bool = False
    ) -> DefenseOutput:
        """Classify a batch; unobserved blocks are ignored."""

    def logits(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Differentiable logits (for gradient attacks); only where ``differentiable``."""
        raise ConfigError(f"defense '{self.name}' is not differentiable")

    def query(self, h: torch.Tensor, observed: torch.Tensor) -> Verdict:
        """The answer as a querying attacker sees it (an attack's ``query``: labels,
        probabilities, flags)."""
        out = self.predict(h, observed)
        return Verdict(labels=out.labels, probs=out.probs, flagged=out.flagged)

    def _plain(
        self,
        logits: torch.Tensor,
        observed: torch.Tensor,
        scores: torch.Tensor | None = None,
        flagged: torch.Tensor | None = None,
    ) -> DefenseOutput:
        zeros = torch.zeros(observed.shape, device=logits.device)
        return DefenseOutput(
            probs=logits.softmax(dim=1),
            labels=logits.argmax(dim=1),
            scores=zeros if scores is None else scores,
            flagged=torch.zeros_like(observed) if flagged is None else flagged,
        )
