"""Exact binomial tools in pure Python (log-space with ``math.lgamma``, bisection), no scipy.

They are written without scipy on purpose so that the tests can check them against scipy and
statsmodels as independent references.
"""

from __future__ import annotations

import math

__all__ = ["binom_tail", "binom_test_half", "clopper_pearson_lower"]

# Terms more than this many nats below the largest one are not summed. The pmf is log-concave, so
# the
# terms left out decay at least geometrically and add up to less than exp(-_CUTOFF) * (n / _CUTOFF +
# 1)
# of the total: below 1e-18 relative for every n < 1e9.
_CUTOFF = 60.0
# Bisection stops once the bracket is this small relative to its upper end (or after _MAX_HALVINGS).
_REL_TOL = 1e-12
_MAX_HALVINGS = 200


def _check_n_k(k: int, n: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be in 0..n={n}, got {k}")


def binom_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), to a relative error of about n * 1e-14 (lgamma rounding
    dominates).

    Edge cases are exact: 1 for k <= 0, 0 for k > n, and the degenerate laws for p = 0 and p = 1.
    Terms are summed in log space around the largest one, so nothing overflows and tails far
    below 1e-300 underflow cleanly to 0.0 instead of producing nan."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    # Step 1: exact answers where the sum is empty, full or degenerate.
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p == 0.0:
        return 0.0
    if p == 1.0:
        return 1.0
    # Step 2: log of the pmf term i, log C(n, i) + i log p + (n - i) log(1 - p).
    log_p, log_q, log_n_fact = math.log(p), math.log1p(-p), math.lgamma(n + 1)

    def log_term(i: int) -> float:
        return (
            log_n_fact - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        )

    # Step 3: the largest term in k..n is at the mode floor((n + 1) p), clipped into the range.
    start = max(k, min(n, math.floor((n + 1) * p)))
    peak = log_term(start)
    # Step 4: walk outwards from the peak until terms fall _CUTOFF nats below it (log-concavity
    # bounds the rest).
    total = 1.0
    for i in range(start + 1, n + 1):
        rel = log_term(i) - peak
        if rel < -_CUTOFF:
            break
        total += math.exp(rel)
    for i in range(start - 1, k - 1, -1):
        rel = log_term(i) - peak
        if rel < -_CUTOFF:
            break
        total += math.exp(rel)
    # Step 5: undo the log-sum-exp shift; clip the rounding excess above 1.
    return min(1.0, math.exp(peak + math.log(total)))


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower confidence bound on p from k successes in n
    trials.

    Guarantee: for every true p, P(bound <= p) >= 1 - alpha. The value equals
    ``scipy.stats.beta.ppf(alpha, k, n - k + 1)`` (0 when k == 0), bisected to 1e-12 relative and
    otherwise limited by ``binom_tail``'s accuracy; the bisection returns the lower end of its
    final bracket, so stopping early never makes the bound less conservative."""
    _check_n_k(k, n)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    # Step 1: closed forms at the ends: no successes bound nothing; all successes give alpha ** (1 /
    # n).
    if k == 0:
        return 0.0
    if k == n:
        return float(alpha ** (1.0 / n))
    # Step 2: P(X >= k | p) increases with p; bisect for the p where it equals alpha.
    lo, hi = 0.0, 1.0
    for _ in range(_MAX_HALVINGS):
        mid = 0.5 * (lo + hi)
        if binom_tail(k, n, mid) < alpha:
            lo = mid
        else:
            hi = mid
        if hi - lo <= _REL_TOL * hi:
            break
    return lo


def binom_test_half(k: int, n: int) -> float:
    """Two-sided exact binomial test p-value of k successes in n trials against p = 0.5.

    Equals min(1, 2 P(X >= max(k, n - k))) for X ~ Binomial(n, 1/2), which is what
    ``scipy.stats.binomtest(k, n, 0.5).pvalue`` computes for the symmetric null.
    """
    _check_n_k(k, n)
    # Step 1: by symmetry, double the tail on the more extreme side, capped at 1.
    return min(1.0, 2.0 * binom_tail(max(k, n - k), n, 0.5))
