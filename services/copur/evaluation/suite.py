"""The worst-of-suite evaluation: robust accuracy against the strongest attack of a whole suite,
per sample.

A sample counts for a defense, a number t of liars and a set A of t attacker positions only if
the defense answers it correctly on clean input and under EVERY attack of the suite carried out
by the parties in A. A robustness figure is only as good as the strongest attack it was measured
against, so this is the headline of the report; per-attack figures are details below it.

Attacks run cheapest first. For most defenses a sample broken once is not attacked again (the
worst case is already known: this is what keeps the evaluation affordable); for the defenses
named ``exhaustive`` every attack runs on every sample, so that their per-attack accuracies are
complete too."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

import torch
from tqdm.auto import tqdm

from copur.science.attacks import AttackContext, make_attack
from copur.science.defenses import Engine

__all__ = ["SuiteAttack", "SuiteConfig", "attack_suite", "attacker_sets", "group_name", "run_suite"]


@dataclass(frozen=True)
class SuiteAttack:
    """One attack of the suite: a report ``label``, the library ``attack`` and its ``params``;
    ``loud`` marks a lie that announces itself (far off the honest manifold); ``head``
    differentiates the undefended head instead of the defense (a transfer attack)."""

    label: str
    attack: str
    params: dict[str, Any] = field(default_factory=dict)
    loud: bool = False
    head: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The attack as ``results.json`` records it (label, attack, parameters, loud, head)."""
        return {
            "label": self.label,
            "attack": self.attack,
            "params": self.params,
            "loud": self.loud,
        }


def attack_suite(
    *, search: int = 32, steps: int = 50, step_size: float = 0.5
) -> tuple[SuiteAttack, ...]:
    """The standard suite, cheapest first: loud lies, absent or copied blocks, plausible
    colluding lies found by query search (random and white-box-ranked donors, the runner-up
    class), and gradient attacks through the defense itself (cross-entropy, Carlini-Wagner
    margin from the honest and from a donor's blocks, and the detector-aware ``evade``), plus
    PGD against the undefended head."""
    grad = {"steps": steps, "step_size": step_size}
    return (
        SuiteAttack("flip x10", "flip", {"amp": 10.0}, loud=True),
        SuiteAttack("noise", "noise", {"norm": 10.0}, loud=True),
        SuiteAttack("zero", "zero"),
        SuiteAttack("drop", "drop"),
        SuiteAttack("replace", "replace"),
        SuiteAttack(f"mimic search={search}", "mimic", {"search": search}),
        SuiteAttack(f"mimic nearest search={search}", "mimic", {"search": search, "nearest": True}),
        SuiteAttack(
            f"sia search={max(2, search // 2)}", "sia", {"search": max(2, search // 2), "steps": 20}
        ),
        SuiteAttack("pgd (head)", "pgd", dict(grad), head=True),
        SuiteAttack("adaptive", "adaptive", dict(grad)),
        SuiteAttack("lma", "lma", dict(grad)),
        SuiteAttack("lma from donor", "lma", {**grad, "from_donor": True}),
        SuiteAttack("evade", "evade", {"steps": steps, "step_size": 2 * step_size}),
    )


def attacker_sets(num_parties: int, t: int, limit: int | None = None) -> list[tuple[int, ...]]:
    """Every set of ``t`` attacker positions, or ``limit`` of them spread evenly over the list."""
    sets = list(itertools.combinations(range(num_parties), t))
    if limit is None or limit >= len(sets):
        return sets
    step = len(sets) / limit
    return [sets[int(i * step)] for i in range(limit)]


def group_name(attackers: Sequence[int]) -> str:
    """``p1``, ``p0p3``: the attacker positions of a group; ``clean`` for none."""
    return "".join(f"p{i}" for i in attackers) or "clean"


@dataclass(frozen=True, kw_only=True)
class SuiteConfig:
    """``liars``: the numbers t of lying parties; ``max_sets``: per t, at most this many attacker
    sets (spread evenly; absent: all); ``exhaustive``: defenses whose every attack runs on every
    sample."""

    attacks: tuple[SuiteAttack, ...] = field(default_factory=attack_suite)
    liars: tuple[int, ...] = (0, 1, 2, 3)
    max_sets: dict[int, int] = field(default_factory=dict)
    exhaustive: tuple[str, ...] = ()


def run_suite(
    engine: Engine,
    *,
    h: torch.Tensor,
    y: torch.Tensor,
    pool: torch.Tensor,
    pool_labels: torch.Tensor,
    defenses: Sequence[str],
    config: SuiteConfig,
    generator: torch.Generator,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the suite against every defense; the report's ``worst_of_suite``, ``per_attack`` and
    ``first_break``.

    ``worst_of_suite[defense][t]`` = {"mean", "worst", "groups": {group: accuracy}};
    ``per_attack`` (exhaustive defenses only) the same per attack label;
    ``first_break[defense][t][label]`` how many (sample, group) pairs that attack was the first
    to break; ``seconds[defense][label]`` the time each attack took."""
    m = engine.num_parties
    full = torch.ones(len(h), m, dtype=torch.bool, device=h.device)
    head = engine.defense("none").logits
    sets = {t: attacker_sets(m, t, config.max_sets.get(t)) for t in config.liars if t < m}
    total = len(defenses) * sum(len(s) for s in sets.values())
    bar = tqdm(total=total, desc="worst of suite", disable=not progress)
    worst: dict[str, dict[str, Any]] = {}
    per_attack: dict[str, dict[str, Any]] = {}
    first_break: dict[str, dict[str, dict[str, int]]] = {}
    seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name in defenses:
        defense = engine.defense(name)
        clean_ok = defense.predict(h, full).labels == y
        exhaustive = name in config.exhaustive
        worst[name], first_break[name] = {}, {}
        if exhaustive:
            per_attack[name] = {}
        for t, attacker_groups in sets.items():
            groups: dict[str, float] = {}
            attack_acc: dict[str, dict[str, float]] = {a.label: {} for a in config.attacks}
            broke = dict.fromkeys((a.label for a in config.attacks), 0)
            for attackers in attacker_groups:
                ok = clean_ok.clone()
                for spec in config.attacks if attackers else ():
                    # Only samples still standing are attacked, unless every attack's own figure is
                    # wanted.
                    rows = (
                        torch.arange(len(h), device=h.device)
                        if exhaustive
                        else ok.nonzero().squeeze(1)
                    )
                    if len(rows) == 0:
                        break
                    started = time.perf_counter()
                    ctx = AttackContext(
                        num_parties=m,
                        generator=generator,
                        labels=y[rows],
                        model=head if spec.head else defense.logits,
                        query=defense.query,
                        pool=pool,
                        pool_labels=pool_labels,
                    )
                    hh, obs = make_attack(spec.attack, **spec.params)(
                        h[rows], full[rows], attackers, ctx
                    )
                    right = defense.predict(hh, obs).labels == y[rows]
                    seconds[name][spec.label] += time.perf_counter() - started
                    broke[spec.label] += int((ok[rows] & ~right).sum())
                    if exhaustive:
                        attack_acc[spec.label][group_name(attackers)] = float(
                            right.to(torch.float64).mean()
                        )
                    ok[rows] &= right
                groups[group_name(attackers)] = float(ok.to(torch.float64).mean())
                bar.update(1)
            worst[name][str(t)] = {
                "mean": mean(groups.values()),
                "worst": min(groups.values()),
                "groups": groups,
            }
            first_break[name][str(t)] = broke
            if exhaustive and t > 0:
                per_attack[name][str(t)] = {
                    label: {"mean": mean(g.values()), "worst": min(g.values())}
                    for label, g in attack_acc.items()
                }
    bar.close()
    return {
        "worst_of_suite": worst,
        "per_attack": per_attack,
        "first_break": first_break,
        "seconds": {d: {a: round(v, 2) for a, v in per.items()} for d, per in seconds.items()},
    }
