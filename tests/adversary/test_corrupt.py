import numpy as np
import pytest

from adversary.support import PARTY, Clean, E, M
from copur.errors import ConfigError
from copur.roles.adversary import AdversaryContext, Policy, corrupt_block
from copur.science.bundle import Bundle


@pytest.fixture
def context(mfeat_bundle: Bundle) -> AdversaryContext:
    return AdversaryContext.from_bundle(mfeat_bundle, seed=0)


def _corrupt(block: np.ndarray, policy: Policy, context: AdversaryContext) -> np.ndarray | None:
    return corrupt_block(block, policy=policy, party=PARTY, num_parties=M, context=context)


def _rows_of(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
    """For each row, the index of the identical table row (-1 if none)."""
    same = (rows[:, None, :] == table[None, :, :]).all(axis=2)
    return np.where(same.any(axis=1), same.argmax(axis=1), -1)


def test_none_returns_the_block_itself_and_remembers_it(
    context: AdversaryContext, clean: Clean
) -> None:
    block = clean.table[:10]

    out = _corrupt(block, Policy(), context)

    assert out is block
    assert np.array_equal(context.pool(), block)


def test_drop_answers_nothing(context: AdversaryContext, clean: Clean) -> None:
    assert _corrupt(clean.table[:10], Policy(attack="drop"), context) is None


def test_replace_without_memory_draws_rows_of_the_batch(
    context: AdversaryContext, clean: Clean
) -> None:
    block = clean.table[:30]

    out = _corrupt(block, Policy(attack="replace"), context)

    assert out is not None
    src = _rows_of(out, block)
    assert (src >= 0).all()
    assert (src != np.arange(30)).mean() > 0.5


def test_replace_draws_from_remembered_rows(context: AdversaryContext, clean: Clean) -> None:
    _corrupt(clean.table[:40], Policy(), context)

    out = _corrupt(clean.table[60:80], Policy(attack="replace"), context)

    assert out is not None
    src = _rows_of(out, clean.table)
    assert ((src >= 0) & (src < 40)).all()


def test_the_memory_is_a_bounded_ring(mfeat_bundle: Bundle, clean: Clean) -> None:
    context = AdversaryContext.from_bundle(mfeat_bundle, pool_rows=10)

    for start in range(0, 25, 5):
        _corrupt(clean.table[start : start + 5], Policy(), context)

    pool = context.pool()
    assert pool.shape == (10, E)
    assert sorted(_rows_of(pool, clean.table).tolist()) == list(range(15, 25))


def test_only_the_own_block_comes_back_with_the_attack_applied(
    context: AdversaryContext, clean: Clean
) -> None:
    out = _corrupt(clean.table[:8], Policy(attack="noise", params={"norm": 3.0}), context)

    assert out is not None and out.shape == (8, E) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 3.0, rtol=1e-5)


def test_a_seeded_context_corrupts_reproducibly(mfeat_bundle: Bundle, clean: Clean) -> None:
    policy = Policy(attack="noise")

    a = _corrupt(clean.table[:8], policy, AdversaryContext.from_bundle(mfeat_bundle, seed=7))
    b = _corrupt(clean.table[:8], policy, AdversaryContext.from_bundle(mfeat_bundle, seed=7))

    assert a is not None and b is not None and np.array_equal(a, b)


def test_targeted_pgd_pushes_the_head_to_the_target(
    context: AdversaryContext, clean: Clean, head
) -> None:
    block = clean.table[:40]

    out = _corrupt(block, Policy(attack="pgd", params={"target": 3}), context)

    assert out is not None
    assert float((head(clean.assemble(out)) == 3).float().mean()) > 0.8


def test_adaptive_attacks_through_the_defense(context: AdversaryContext, clean: Clean) -> None:
    block = clean.table[:6]

    out = _corrupt(block, Policy(attack="adaptive", params={"steps": 2}), context)

    assert out is not None and out.shape == block.shape
    assert not np.array_equal(out, block)


def test_a_target_outside_the_classes_is_refused(context: AdversaryContext, clean: Clean) -> None:
    with pytest.raises(ConfigError, match="target"):
        _corrupt(clean.table[:4], Policy(attack="pgd", params={"target": 10}), context)


@pytest.mark.parametrize(
    ("shape", "num_parties", "party", "named"),
    [
        ((4, E + 1), M, PARTY, "shape"),
        ((4, E), M + 1, PARTY, "num_parties"),
        ((4, E), M, M, "party"),
    ],
)
def test_inconsistent_inputs_are_refused(
    context: AdversaryContext, shape, num_parties, party, named
) -> None:
    with pytest.raises(ValueError, match=named):
        corrupt_block(
            np.zeros(shape, np.float32),
            policy=Policy(),
            party=party,
            num_parties=num_parties,
            context=context,
        )
