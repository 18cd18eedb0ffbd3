"""The standard evaluation grid: named scenarios (attack, attackers) over a data set's parties."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ADAPTIVE_L2_EPS", "PGD_STEP", "PGD_STEPS", "Scenario", "standard_grid"]

# Gradient attacks in the grid: the reference's 50 signed steps, but of 0.5 rather than its 0.1,
# which is
# absolute and too small for these embeddings (it moves the undefended head's answer on a few % of
# samples).
PGD_STEPS = 50
PGD_STEP = 0.5
# The bounded adaptive attack: an l2 budget per attacker block about one typical block norm.
ADAPTIVE_L2_EPS = 10.0


@dataclass(frozen=True)
class Scenario:
    """One cell of the grid: ``attack`` (None = clean) by ``attackers`` with ``params``."""

    name: str
    family: str
    attack: str | None
    attackers: tuple[int, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    defenses: tuple[str, ...] | None = None  # None: every defense of the run

    @property
    def targeted(self) -> bool:
        """Whether the attack pushes every sample to one target class."""
        return bool(self.params.get("targeted", False))


def _tag(parties: tuple[int, ...]) -> str:
    return "".join(f"p{i}" for i in parties)


def _amp(a: float) -> str:
    return f"{a:g}".replace(".", "_")


def standard_grid(
    num_parties: int,
    *,
    quick: bool = False,
    amps: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20),
    sweep_defenses: tuple[str, ...] = ("none", "ae", "copur-ref", "copur"),
) -> list[Scenario]:
    """Scenarios named as the report expects: ``clean``, ``flip10-p{i}``, ``flip10-p{i}p{j}``,
    ``missing-p{i}``, ``noise-p{i}``, ``replace-p{i}``, ``pgd-untargeted-p{i}``,
    ``pgd-targeted-p{i}``, ``adaptive-p{i}`` (unbounded), ``adaptive-l2-p{i}``, plus the
    flip-amplitude sweep ``flip{a}-p{i}`` and three-attacker flips ``flip10-p{i}p{j}p{k}``.
    ``quick`` keeps two positions, three pairs and a short sweep."""
    m = num_parties
    singles = [(i,) for i in range(m)]
    pairs = list(itertools.combinations(range(m), 2))
    all_triples = list(itertools.combinations(range(m), 3))
    triples = all_triples[:: max(1, len(all_triples) // 5)]
    if quick:
        singles, pairs, triples, amps = (
            singles[:: max(1, m // 2)][:2],
            pairs[:3],
            triples[:1],
            (1, 10),
        )
    grid = [Scenario("clean", "clean", None)]
    grid += [Scenario(f"flip10-{_tag(s)}", "flip", "flip", s, {"amp": 10.0}) for s in singles]
    grid += [Scenario(f"flip10-{_tag(s)}", "flip-pair", "flip", s, {"amp": 10.0}) for s in pairs]
    grid += [
        Scenario(f"flip10-{_tag(s)}", "flip-triple", "flip", s, {"amp": 10.0}) for s in triples
    ]
    grid += [Scenario(f"missing-{_tag(s)}", "missing", "drop", s) for s in singles]
    grid += [Scenario(f"noise-{_tag(s)}", "noise", "noise", s, {"norm": 10.0}) for s in singles]
    grid += [Scenario(f"replace-{_tag(s)}", "replace", "replace", s) for s in singles]
    pgd = {"steps": PGD_STEPS, "step_size": PGD_STEP}
    grid += [
        Scenario(
            f"pgd-untargeted-{_tag(s)}", "pgd-untargeted", "pgd", s, {"targeted": False, **pgd}
        )
        for s in singles
    ]
    grid += [
        Scenario(f"pgd-targeted-{_tag(s)}", "pgd-targeted", "pgd", s, {"targeted": True, **pgd})
        for s in singles
    ]
    grid += [Scenario(f"adaptive-{_tag(s)}", "adaptive", "adaptive", s, dict(pgd)) for s in singles]
    bounded = {"steps": PGD_STEPS, "step_size": ADAPTIVE_L2_EPS / 10, "eps": ADAPTIVE_L2_EPS}
    grid += [
        Scenario(f"adaptive-l2-{_tag(s)}", "adaptive-l2", "adaptive", s, bounded) for s in singles
    ]
    grid += [
        Scenario(
            f"flip{_amp(a)}-{_tag(s)}", "flip-sweep", "flip", s, {"amp": float(a)}, sweep_defenses
        )
        for a in amps
        if a != 10
        for s in singles
    ]
    return grid
