import math

import pytest
from scipy import stats

from copur.science.certify.stats import binom_tail, binom_test_half, clopper_pearson_lower

TAIL_NS = [1, 2, 7, 50, 1000, 100_000]
TAIL_PS = [1e-9, 0.001, 0.1, 0.3, 0.5, 0.7, 0.99, 1 - 1e-9]
CP_NS = [1, 2, 10, 100, 1000, 100_000]
CP_ALPHAS = [1e-10, 0.001, 0.025, 0.5, 0.9]


def _ks(n: int, p: float | None = None) -> list[int]:
    """k values that hit both ends, the middle, and the neighbourhood of the mean."""
    ks = {-3, 0, 1, 2, n // 3, n // 2, n - 1, n, n + 1, n + 5}
    if p is not None:
        ks |= {int(n * p) - 2, int(n * p), int(n * p) + 3}
    return sorted(ks)


def _rel_tol(n: int) -> float:
    # lgamma rounding makes the relative error grow like n * 1e-14.
    return max(1e-12, n * 1e-14)


@pytest.mark.parametrize("n", TAIL_NS)
@pytest.mark.parametrize("p", TAIL_PS)
def test_binom_tail_matches_scipy_survival_function(n: int, p: float) -> None:
    # Prepare
    ks = _ks(n, p)

    # Execute
    ours = [binom_tail(k, n, p) for k in ks]

    # Assert
    for k, value in zip(ks, ours, strict=True):
        expected = float(stats.binom.sf(k - 1, n, p))
        assert value == pytest.approx(expected, rel=_rel_tol(n), abs=1e-300), (k, n, p)


@pytest.mark.parametrize(
    ("k", "n", "p", "expected"),
    [
        (0, 10, 0.3, 1.0),
        (-1, 10, 0.3, 1.0),
        (11, 10, 0.3, 0.0),
        (1, 10, 0.0, 0.0),
        (0, 10, 0.0, 1.0),
        (10, 10, 1.0, 1.0),
        (11, 10, 1.0, 0.0),
        (0, 0, 0.5, 1.0),
        (1, 0, 0.5, 0.0),
        (10, 10, 0.5, 0.5**10),
        (1, 1, 0.25, 0.25),
    ],
)
def test_binom_tail_edge_cases_are_exact(k: int, n: int, p: float, expected: float) -> None:
    # Execute
    value = binom_tail(k, n, p)

    # Assert
    assert value == expected


def test_binom_tail_far_tail_underflows_to_zero_without_nan() -> None:
    # Execute
    value = binom_tail(100_000, 100_000, 1e-9)

    # Assert
    assert value == 0.0


@pytest.mark.parametrize(
    ("k", "n", "p"), [(1, -1, 0.5), (1, 5, -0.1), (1, 5, 1.5), (1, 5, math.nan)]
)
def test_binom_tail_rejects_invalid_arguments(k: int, n: int, p: float) -> None:
    # Execute / Assert
    with pytest.raises(ValueError):
        binom_tail(k, n, p)


def _cp_grid() -> list[tuple[int, int, float]]:
    return [
        (k, n, alpha)
        for n in CP_NS
        for alpha in CP_ALPHAS
        for k in sorted({0, 1, n // 2, n - 1, n})
    ]


@pytest.mark.parametrize(("k", "n", "alpha"), _cp_grid())
def test_clopper_pearson_lower_matches_scipy_beta_ppf(k: int, n: int, alpha: float) -> None:
    # Prepare
    expected = float(stats.beta.ppf(alpha, k, n - k + 1)) if k > 0 else 0.0

    # Execute
    bound = clopper_pearson_lower(k, n, alpha)

    # Assert
    assert bound == pytest.approx(expected, rel=max(1e-9, _rel_tol(n)), abs=0.0)
    assert 0.0 <= bound <= 1.0
    assert (
        alpha > 0.5 or bound <= k / n
    )  # at confidence >= 1/2 the lower bound never exceeds the estimate


# A two-sided interval needs 2 * alpha < 1.
@pytest.mark.parametrize(("k", "n", "alpha"), [case for case in _cp_grid() if case[2] < 0.5])
def test_clopper_pearson_lower_matches_statsmodels_beta_interval(
    k: int, n: int, alpha: float
) -> None:
    # Prepare
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    # The two-sided interval at level 2 * alpha has the one-sided (1 - alpha) bound as its lower
    # end.
    expected = float(proportion.proportion_confint(k, n, alpha=2 * alpha, method="beta")[0])

    # Execute
    bound = clopper_pearson_lower(k, n, alpha)

    # Assert
    assert bound == pytest.approx(expected, rel=max(1e-9, _rel_tol(n)), abs=1e-300)


def test_clopper_pearson_lower_known_values() -> None:
    # Execute
    all_successes = clopper_pearson_lower(1000, 1000, 0.001)
    none = clopper_pearson_lower(0, 1000, 0.001)

    # Assert
    assert all_successes == pytest.approx(0.001 ** (1 / 1000), rel=1e-15)
    assert none == 0.0


def test_clopper_pearson_lower_covers_the_true_p_at_least_one_minus_alpha() -> None:
    # Prepare: exact coverage for n = 30, p = 0.6: sum the pmf over k whose bound is <= p.
    n, p, alpha = 30, 0.6, 0.05

    # Execute
    coverage = sum(
        stats.binom.pmf(k, n, p) for k in range(n + 1) if clopper_pearson_lower(k, n, alpha) <= p
    )

    # Assert
    assert coverage >= 1 - alpha


@pytest.mark.parametrize(
    ("k", "n", "alpha"), [(1, 0, 0.1), (-1, 5, 0.1), (6, 5, 0.1), (2, 5, 0.0), (2, 5, 1.0)]
)
def test_clopper_pearson_lower_rejects_invalid_arguments(k: int, n: int, alpha: float) -> None:
    # Execute / Assert
    with pytest.raises(ValueError):
        clopper_pearson_lower(k, n, alpha)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11, 100, 1001, 100_000])
def test_binom_test_half_matches_scipy_binomtest(n: int) -> None:
    # Prepare
    ks = sorted(
        {0, 1, n // 2, (n + 1) // 2, n // 2 + 1, int(0.45 * n), int(0.55 * n), n - 1, n}
        & set(range(n + 1))
    )

    # Execute
    ours = [binom_test_half(k, n) for k in ks]

    # Assert
    for k, value in zip(ks, ours, strict=True):
        expected = float(stats.binomtest(k, n, 0.5).pvalue)
        assert value == pytest.approx(expected, rel=max(1e-9, _rel_tol(n)), abs=1e-300), (k, n)


def test_binom_test_half_small_cases_by_hand() -> None:
    # Execute
    balanced = binom_test_half(5, 10)
    extreme = binom_test_half(10, 10)
    one_of_one = binom_test_half(1, 1)

    # Assert
    assert balanced == 1.0
    assert extreme == pytest.approx(2 * 0.5**10, rel=1e-15)
    assert one_of_one == 1.0
