"""Percentiles of measured latencies: the one definition every report uses (the benchmarks, the
scenarios).

Linear interpolation between the two nearest order statistics (numpy's default, R's type 7): with
n values sorted ascending, the q-th percentile sits at fractional rank (n - 1) * q / 100."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["percentile", "percentile_ms"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values``; None when there are none."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within [0, 100], got {q}")
    if len(values) == 0:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def percentile_ms(seconds: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile of latencies given in seconds, in milliseconds; None when there
    are none."""
    value = percentile(seconds, q)
    return None if value is None else 1000.0 * value
