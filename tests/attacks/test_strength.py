"""Every attack of the library must be strong somewhere: it beats ``replace`` (another sample's
block) or ``adaptive`` (PGD through the defense) against at least one defense of the test bundle,
or it is too weak to keep."""

from typing import Any

import pytest
import torch

from copur.science.attacks import ATTACKS, AttackContext, make_attack
from copur.science.defenses import Engine

M = 6
# : the baselines the others are measured against, and the missing-party events (not meant to be
# strong)
EXEMPT = {
    "replace": "the baseline",
    "drop": "a missing party",
    "zero": "a missing party's zero block",
}
# : attack -> (parameters, defense, attacker positions, baseline it must beat, by at least this
# margin)
STRONG: dict[str, tuple[dict[str, Any], str, tuple[int, ...], str, float]] = {
    "flip": ({"amp": 10.0}, "none", (1,), "replace", 0.5),
    "noise": ({"norm": 100.0}, "none", (1,), "replace", 0.3),
    "pgd": ({"steps": 50, "step_size": 0.5}, "none", (1,), "replace", 0.3),
    "adaptive": ({"steps": 20, "step_size": 0.5}, "copur-l21", (1, 2), "replace", 0.1),
    "mimic": ({"search": 16}, "copur-l21", (1, 2), "replace", 0.3),
    "sia": ({"search": 8}, "copur-l21", (1, 2), "replace", 0.2),
    "lma": ({"steps": 20}, "copur-l21", (0, 5), "adaptive", 0.1),
    "evade": ({"steps": 20, "step_size": 1.0}, "copur-l21", (0, 5), "replace", 0.3),
}


def test_every_attack_is_either_tested_for_strength_or_a_named_baseline() -> None:
    assert set(ATTACKS) == set(STRONG) | set(EXEMPT)


def _accuracy(
    engine: Engine, defense: str, attack: str, params: dict[str, Any], attackers, batch, pool
) -> float:
    h, y = batch
    answer = engine.defense(defense)
    ctx = AttackContext(
        num_parties=M,
        generator=torch.Generator().manual_seed(0),
        labels=y,
        model=engine.defense("none").logits if attack == "pgd" else answer.logits,
        query=answer.query,
        pool=pool[0],
        pool_labels=pool[1],
    )
    full = torch.ones(len(h), M, dtype=torch.bool)
    hh, obs = make_attack(attack, **params)(h, full, attackers, ctx)
    return float((answer.predict(hh, obs).labels == y).float().mean())


@pytest.mark.parametrize("name", sorted(STRONG))
def test_the_attack_beats_its_baseline_somewhere(
    engine: Engine, test_batch, donor_pool, name: str
) -> None:
    params, defense, attackers, baseline, margin = STRONG[name]
    base_params = STRONG["adaptive"][0] if baseline == "adaptive" else {}

    strong = _accuracy(engine, defense, name, params, attackers, test_batch, donor_pool)
    weak = _accuracy(engine, defense, baseline, base_params, attackers, test_batch, donor_pool)

    assert strong <= weak - margin, (
        f"{name} {strong:.3f} vs {baseline} {weak:.3f} against {defense}"
    )
