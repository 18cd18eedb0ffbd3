"""The worst-of-suite evaluation: a sample counts only if no attack of the suite changes its
answer."""

import torch

from copur.evaluation.suite import (
    SuiteAttack,
    SuiteConfig,
    attack_suite,
    attacker_sets,
    group_name,
    run_suite,
)
from copur.science.defenses import Engine

M = 6
#: deterministic attacks (no random draws), so that runs can be compared sample by sample
DETERMINISTIC = (
    SuiteAttack("flip x10", "flip", {"amp": 10.0}, loud=True),
    SuiteAttack("flip x0.5", "flip", {"amp": 0.5}),
    SuiteAttack("zero", "zero"),
)


def _run(engine: Engine, batch, pool, *, exhaustive: tuple[str, ...], defenses=("none", "copur")):
    h, y = batch
    return run_suite(
        engine,
        h=h[:40],
        y=y[:40],
        pool=pool[0],
        pool_labels=pool[1],
        defenses=defenses,
        config=SuiteConfig(
            attacks=DETERMINISTIC, liars=(0, 1, 2), max_sets={2: 3}, exhaustive=exhaustive
        ),
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )


def test_attacker_sets_are_all_or_spread_evenly() -> None:
    assert len(attacker_sets(6, 2)) == 15
    assert attacker_sets(6, 3, 5) == [(0, 1, 2), (0, 2, 3), (0, 3, 5), (1, 2, 5), (2, 3, 4)]
    assert attacker_sets(4, 1, 10) == [(0,), (1,), (2,), (3,)]
    assert group_name((0, 3)) == "p0p3" and group_name(()) == "clean"


def test_the_standard_suite_goes_cheapest_first_and_marks_the_loud_attacks() -> None:
    suite = attack_suite(search=16, steps=20)

    assert [a.attack for a in suite[:5]] == ["flip", "noise", "zero", "drop", "replace"]
    assert {a.label for a in suite if a.loud} == {"flip x10", "noise"}
    assert {a.attack for a in suite} == {
        "flip", "noise", "zero", "drop", "replace", "mimic", "sia", "pgd", "adaptive", "lma",
        "evade",
    }  # fmt: skip
    assert next(a for a in suite if a.attack == "mimic").params["search"] == 16


def test_a_sample_counts_only_if_every_attack_fails(engine: Engine, test_batch, donor_pool) -> None:
    report = _run(engine, test_batch, donor_pool, exhaustive=("none", "copur"))

    for name in ("none", "copur"):
        for t in ("1", "2"):
            worst = report["worst_of_suite"][name][t]
            per_attack = report["per_attack"][name][t]
            # The worst case per sample is below every attack alone, for every set of attackers.
            assert worst["mean"] <= min(a["mean"] for a in per_attack.values()) + 1e-12
            assert worst["worst"] == min(worst["groups"].values())
    assert (
        report["worst_of_suite"]["none"]["1"]["mean"] < 0.1
    )  # flip x10 breaks the undefended head
    assert report["worst_of_suite"]["copur"]["1"]["mean"] > 0.9
    assert set(report["worst_of_suite"]["copur"]["2"]["groups"]) == {"p0p1", "p1p2", "p2p4"}
    assert report["worst_of_suite"]["copur"]["0"]["groups"] == {
        "clean": report["worst_of_suite"]["copur"]["0"]["mean"]
    }


def test_skipping_broken_samples_changes_nothing_but_the_work(
    engine: Engine, test_batch, donor_pool
) -> None:
    full = _run(engine, test_batch, donor_pool, exhaustive=("none",), defenses=("none",))
    skipping = _run(engine, test_batch, donor_pool, exhaustive=(), defenses=("none",))

    assert full["worst_of_suite"] == skipping["worst_of_suite"]
    assert "none" not in skipping["per_attack"]
    # The first attack to break a sample is credited once per (sample, set) in both runs.
    assert full["first_break"] == skipping["first_break"]
    assert skipping["first_break"]["none"]["1"]["flip x10"] > 0
