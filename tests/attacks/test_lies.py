"""Properties of the plausible and detector-aware lies: mimic, sia, lma, evade."""

import pytest
import torch

from copur.errors import ConfigError
from copur.science.attacks import AttackContext, Verdict, make_attack
from copur.science.attacks.search import nearest_donors
from copur.science.defenses import Engine

M, E = 6, 16


def _blocks(h: torch.Tensor, party: int) -> torch.Tensor:
    return h[:, party * E : (party + 1) * E]


def test_colluding_mimics_send_the_same_real_sample(test_batch, donor_pool) -> None:
    h, y = test_batch
    pool, labels = donor_pool
    ctx = AttackContext(
        num_parties=M,
        generator=torch.Generator().manual_seed(0),
        labels=y,
        pool=pool,
        pool_labels=labels,
    )
    full = torch.ones(len(h), M, dtype=torch.bool)

    lied, _ = make_attack("mimic")(h, full, (1, 4), ctx)

    # Both liars' blocks are the blocks of one and the same pool row, of another class than the
    # sample's.
    # (Matched on both blocks at once: a few mfeat samples share a block.)
    both = torch.cat([_blocks(lied, 1), _blocks(lied, 4)], dim=1)
    d1 = torch.cdist(both, torch.cat([_blocks(pool, 1), _blocks(pool, 4)], dim=1)).argmin(dim=1)
    torch.testing.assert_close(_blocks(lied, 1), _blocks(pool[d1], 1))
    torch.testing.assert_close(_blocks(lied, 4), _blocks(pool[d1], 4))
    assert bool((labels[d1] != y).all())


def test_mimic_moves_factor_of_the_way_to_the_donor(test_batch, donor_pool) -> None:
    h, _ = test_batch
    pool, labels = donor_pool
    ctx = AttackContext(
        num_parties=M, generator=torch.Generator().manual_seed(0), pool=pool, pool_labels=labels
    )
    full = torch.ones(len(h), M, dtype=torch.bool)

    lied, _ = make_attack("mimic", donor=7, factor=0.25)(h, full, (2,), ctx)

    torch.testing.assert_close(
        _blocks(lied, 2), _blocks(h, 2) + 0.25 * (_blocks(pool[7:8], 2) - _blocks(h, 2))
    )
    by_class, _ = make_attack("mimic", donor_class=3)(h, full, (2,), ctx)
    d = torch.cdist(_blocks(by_class, 2), _blocks(pool, 2)).argmin(dim=1)
    assert bool((labels[d] == 3).all())


def test_search_finds_a_lie_the_defense_gets_wrong_whenever_one_is_tried(
    engine: Engine, test_batch, donor_pool
):
    h, y = test_batch
    pool, labels = donor_pool
    query = engine.defense("none").query
    full = torch.ones(len(h), M, dtype=torch.bool)

    def ctx() -> AttackContext:
        gen = torch.Generator().manual_seed(5)
        return AttackContext(
            num_parties=M, generator=gen, labels=y, query=query, pool=pool, pool_labels=labels
        )

    searched, _ = make_attack("mimic", search=8)(h, full, (0, 3), ctx())
    wrong = query(searched, full).labels != y
    # Each single candidate drawn alone with the same generator: the search is never worse than the
    # first one.
    first, _ = make_attack("mimic")(h, full, (0, 3), ctx())
    assert bool(wrong[query(first, full).labels != y].all())
    assert float(wrong.float().mean()) > float((query(first, full).labels != y).float().mean())


def test_nearest_donors_never_pick_a_refused_row() -> None:
    h = torch.zeros(2, 4)
    pool = torch.arange(12, dtype=torch.float32).view(6, 2).repeat(1, 2)
    allowed = torch.tensor(
        [[False, False, False, False, True, False], [True, True, False, False, False, False]]
    )

    donors = nearest_donors(h, pool, allowed, [1], 2, 8)

    assert donors.shape == (2, 8)
    assert bool(allowed.gather(1, donors).all())


def test_sia_aims_at_the_runner_up_class() -> None:
    # Class 1 is every sample's runner-up: the lie comes from class 1's donors (blocks of 5), not
    # class 2's (-5).
    h = torch.zeros(4, M * E)
    pool = torch.cat([torch.full((3, M * E), 5.0), torch.full((3, M * E), -5.0)])
    pool_labels = torch.tensor([1, 1, 1, 2, 2, 2])

    def query(x: torch.Tensor, observed: torch.Tensor) -> Verdict:
        probs = torch.tensor([0.6, 0.3, 0.1]).repeat(len(x), 1)
        return Verdict(
            labels=torch.zeros(len(x), dtype=torch.long), probs=probs, flagged=observed & False
        )

    ctx = AttackContext(
        num_parties=M,
        generator=torch.Generator().manual_seed(0),
        query=query,
        pool=pool,
        pool_labels=pool_labels,
    )
    lied, _ = make_attack("sia", search=4)(h, torch.ones(4, M, dtype=torch.bool), (2,), ctx)

    assert bool((_blocks(lied, 2) > 0).all())
    assert torch.equal(
        torch.cat([_blocks(lied, p) for p in (0, 1, 3, 4, 5)], dim=1), torch.zeros(4, 5 * E)
    )


def test_evade_never_sends_a_lie_the_defense_flags(engine: Engine, test_batch) -> None:
    h, y = test_batch
    h, y = h[:40], y[:40]
    defense = engine.defense("copur-l21")
    ctx = AttackContext(
        num_parties=M,
        generator=torch.Generator().manual_seed(0),
        labels=y,
        model=defense.logits,
        query=engine.defense("copur-l21").query,
    )
    full = torch.ones(len(h), M, dtype=torch.bool)

    lied, _ = make_attack("evade", steps=10, step_size=2.0)(h, full, (0, 5), ctx)

    out = defense.predict(lied, full)
    changed = (lied != h).any(dim=1)
    assert float(changed.float().mean()) > 0.5
    assert not bool(out.flagged[changed][:, [0, 5]].any())


def test_bounded_lma_stays_in_its_ball(engine: Engine, test_batch) -> None:
    h, y = test_batch
    h, y = h[:20], y[:20]
    ctx = AttackContext(
        num_parties=M,
        generator=torch.Generator().manual_seed(0),
        labels=y,
        model=engine.defense("none").logits,
    )
    full = torch.ones(len(h), M, dtype=torch.bool)

    lied, _ = make_attack("lma", steps=20, step_size=2.0, eps=16.0)(h, full, (3,), ctx)

    assert float((_blocks(lied, 3) - _blocks(h, 3)).norm(dim=1).max()) <= 16.0 + 1e-4
    assert float((engine.defense("none").predict(lied, full).labels == y).float().mean()) < 1.0


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("mimic", {"factor": 0.0}),
        ("mimic", {"search": -1}),
        ("sia", {"steps": -1}),
        ("lma", {"check_every": 0}),
        ("evade", {"steps": 0}),
    ],
)
def test_out_of_range_parameters_are_config_errors(name: str, params: dict) -> None:
    with pytest.raises(ConfigError, match=name):
        make_attack(name, **params)


@pytest.mark.parametrize("name", ["mimic", "sia", "lma", "evade"])
def test_missing_context_is_named(name: str, test_batch) -> None:
    h, _ = test_batch
    ctx = AttackContext(num_parties=M, generator=torch.Generator().manual_seed(0))

    with pytest.raises(ValueError, match="needs"):
        make_attack(name)(h[:2], torch.ones(2, M, dtype=torch.bool), (1,), ctx)
