import pytest
import torch

from copur.errors import ConfigError
from copur.evaluation.grid import PGD_STEP
from copur.science.attacks import ATTACKS, AttackContext, make_attack
from copur.science.defenses import Engine

M, E = 6, 16


def _ctx(engine: Engine, y: torch.Tensor, h: torch.Tensor, defense: str = "none") -> AttackContext:
    answer = engine.defense(defense)
    return AttackContext(
        num_parties=M,
        generator=torch.Generator().manual_seed(0),
        labels=y,
        target=(y + 1) % 10,
        model=answer.logits,
        query=answer.query,
        pool=h.flip(0),
        pool_labels=y.flip(0),
    )


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("attackers", [(1,), (0, 4)])
def test_attacks_touch_only_the_attackers_blocks(
    engine: Engine, test_batch, name: str, attackers
) -> None:
    h, y = test_batch
    h, y = h[:16], y[:16]
    full = torch.ones(len(h), M, dtype=torch.bool)
    params = {"steps": 3} if name in ("pgd", "adaptive", "lma", "evade") else {}

    hh, obs = make_attack(name, **params)(h, full, attackers, _ctx(engine, y, h))

    honest = [i for i in range(M) if i not in attackers]
    for i in honest:
        assert torch.equal(hh[:, i * E : (i + 1) * E], h[:, i * E : (i + 1) * E])
        assert obs[:, i].all()
    changed = any(
        not torch.equal(hh[:, a * E : (a + 1) * E], h[:, a * E : (a + 1) * E]) for a in attackers
    )
    assert changed or not obs[:, list(attackers)].any()


def test_drop_marks_the_attackers_unobserved(engine: Engine, test_batch) -> None:
    h, y = test_batch
    full = torch.ones(len(h), M, dtype=torch.bool)

    _, obs = make_attack("drop")(h, full, (2, 5), _ctx(engine, y, h))

    assert not obs[:, [2, 5]].any() and obs[:, [0, 1, 3, 4]].all()


def test_targeted_pgd_reaches_the_target_on_the_undefended_head(engine: Engine, test_batch) -> None:
    h, y = test_batch
    full = torch.ones(len(h), M, dtype=torch.bool)
    ctx = _ctx(engine, y, h)

    hh, obs = make_attack("pgd", targeted=True, step_size=PGD_STEP)(h, full, (3,), ctx)

    pred = engine.defense("none").predict(hh, obs).labels
    assert float((pred == ctx.target).float().mean()) > 0.5


def test_l2_bounded_pgd_respects_the_bound(engine: Engine, test_batch) -> None:
    h, y = test_batch
    full = torch.ones(len(h), M, dtype=torch.bool)

    hh, _ = make_attack("pgd", eps=2.0, step_size=0.5, steps=10)(h, full, (1,), _ctx(engine, y, h))

    assert float((hh - h)[:, E : 2 * E].norm(dim=1).max()) <= 2.0 + 1e-4


def test_flip_and_noise_parameters(engine: Engine, test_batch) -> None:
    h, y = test_batch
    full = torch.ones(len(h), M, dtype=torch.bool)
    ctx = _ctx(engine, y, h)

    flipped, _ = make_attack("flip", amp=3.0)(h, full, (0,), ctx)
    noisy, _ = make_attack("noise", norm=7.0)(h, full, (0,), ctx)

    torch.testing.assert_close(flipped[:, :E], -3.0 * h[:, :E])
    torch.testing.assert_close(noisy[:, :E].norm(dim=1), torch.full((len(h),), 7.0))


def test_unknown_attack_or_parameter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown attack 'melt'"):
        make_attack("melt")
    with pytest.raises(ConfigError, match="does not take parameters \\['power'\\]"):
        make_attack("flip", power=3)


def test_attacker_index_out_of_range(engine: Engine, test_batch) -> None:
    h, y = test_batch
    with pytest.raises(ValueError, match="attacker index 6 is not a party"):
        make_attack("zero")(h, torch.ones(len(h), M, dtype=torch.bool), (6,), _ctx(engine, y, h))
