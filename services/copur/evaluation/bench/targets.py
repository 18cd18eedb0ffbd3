"""The issue's CPU targets judged from the measured numbers (:func:`evaluate_targets`), the
numbers the report derives from the benchmarks' files, and how it prints a number
(:func:`format_number`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from copur.evaluation.bench.models import (
    PurifierBench,
    PurifierRecord,
    ServeBench,
    ServeRun,
    as_bench,
)

__all__ = [
    "Ceiling",
    "Target",
    "best_batched_ref",
    "evaluate_targets",
    "format_number",
    "speedup",
    "speedup_ceiling",
]

SPEEDUP_TARGET = 50
REF_RATE_TARGET = 1000
LATENCY_TARGET_MS = 15
SERVE_RATE_TARGET = 500
SERVE_P99_TARGET_MS = 250
SERVE_P50_TARGET_MS = 25
SERVE_CONCURRENCY = 64


def format_number(value: float | int | None) -> str:
    """About three significant digits, thousands separated; ``-`` for None."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    x = float(value)
    magnitude = abs(x)
    if magnitude >= 1000:
        return f"{x:,.0f}"
    if magnitude >= 100:
        return f"{x:.0f}"
    if magnitude >= 10:
        return f"{x:.1f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{x:.2f}"
    return f"{x:.3g}"


@dataclass(frozen=True)
class Target:
    """One target of the issue: what was measured, the bound, whether the measurement meets it."""

    name: str
    measured: float | int | None
    bound: float | int
    unit: str
    at_least: bool  # True: measured >= bound is good; False: measured <= bound is good
    where: str = ""

    @property
    def met(self) -> bool | None:
        """None when nothing was measured."""
        if self.measured is None:
            return None
        return self.measured >= self.bound if self.at_least else self.measured <= self.bound

    @property
    def target_text(self) -> str:
        """The bound as the report shows it: ``>= 50x``, ``<= 15 ms`` (``0`` for none allowed)."""
        if self.bound == 0 and not self.at_least:
            return "0"
        return f"{'>=' if self.at_least else '<='} {format_number(self.bound)}{self.unit}"

    @property
    def measured_text(self) -> str:
        """The measurement with its unit, ``-`` when there is none."""
        return "-" if self.measured is None else f"{format_number(self.measured)}{self.unit}"


@dataclass(frozen=True)
class Ceiling:
    """What batched copur-ref would reach at 100 % of the matmul peak, vs the one-sample loop."""

    mflop_per_sample: float
    rate_at_peak: float
    speedup: float


# -- finding the numbers ---------------------------------------------------------------------------
def _records(purifier: PurifierBench | None, *, name: str, shape: str) -> list[PurifierRecord]:
    if purifier is None:
        return []
    return [r for r in purifier.records if r.purifier == name and r.shape == shape]


def best_batched_ref(purifier: PurifierBench | None) -> PurifierRecord | None:
    """copur-ref's fastest batch (samples/s) at the nus-wide shape."""
    records = _records(purifier, name="copur-ref", shape="nus-wide")
    return max(records, key=lambda r: r.samples_per_s, default=None)


def _batch_one_latency(purifier: PurifierBench | None, shape: str) -> float | None:
    one = [r for r in _records(purifier, name="copur", shape=shape) if r.batch_size == 1]
    return float(one[0].latency_ms) if one else None


def speedup(purifier: PurifierBench | None, loop_key: str) -> float | None:
    """Best batched copur-ref rate at nus-wide over the one-sample loop's rate (``loop_key``)."""
    best = best_batched_ref(purifier)
    loop = getattr(purifier, loop_key, None)
    if best is None or loop is None or not loop.samples_per_s:
        return None
    return float(best.samples_per_s) / float(loop.samples_per_s)


def speedup_ceiling(purifier: PurifierBench | None) -> Ceiling | None:
    """The batched-vs-loop ratio at 100 % of the matmul peak, from the measured numbers."""
    best = best_batched_ref(purifier)
    if purifier is None or best is None:
        return None
    loop, peak = purifier.one_sample_loop, purifier.matmul_peak_gflops
    if loop is None or not loop.samples_per_s or not peak or not best.executed_flops_per_batch:
        return None
    per_sample = float(best.executed_flops_per_batch) / float(best.batch_size)
    rate_at_peak = float(peak) * 1e9 / per_sample
    return Ceiling(per_sample / 1e6, rate_at_peak, rate_at_peak / float(loop.samples_per_s))


def _serve_run(serve: ServeBench | None, concurrency: int) -> ServeRun | None:
    """The batching-on, defense-copur run at ``concurrency`` (the last one of several)."""
    if serve is None:
        return None
    default = serve.settings.defense if serve.settings else None
    runs = [
        r
        for r in serve.runs
        if r.batching == "on" and r.concurrency == concurrency and (r.defense or default) == "copur"
    ]
    return runs[-1] if runs else None


def _error_count(run: ServeRun) -> int:
    return max(sum(int(v) for v in (run.errors or {}).values()), run.requests - run.ok)


def _value(run: ServeRun | None, read: Callable[[ServeRun], float | int]) -> float | int | None:
    return None if run is None else read(run)


# -- the targets -----------------------------------------------------------------------------------
def _purifier_targets(purifier: PurifierBench | None) -> list[Target]:
    best = best_batched_ref(purifier)
    where = f"nus-wide, batch {best.batch_size}" if best else "nus-wide"
    loop = speedup(purifier, "one_sample_loop")
    name = "copur-ref batched vs its one-sample loop"
    targets = [Target(name, loop, SPEEDUP_TARGET, "x", True, where)]
    if purifier is not None and purifier.one_sample_loop_autograd is not None:
        autograd = speedup(purifier, "one_sample_loop_autograd")
        name = "copur-ref batched vs a one-sample autograd loop"
        targets.append(Target(name, autograd, SPEEDUP_TARGET, "x", True, where))
    rate = float(best.samples_per_s) if best else None
    name = "copur-ref batched throughput"
    targets.append(Target(name, rate, REF_RATE_TARGET, " samples/s", True, where))
    for shape in ("nus-wide", "mfeat"):
        latency = _batch_one_latency(purifier, shape)
        name, where = "copur single-sample latency", f"{shape}, batch 1"
        targets.append(Target(name, latency, LATENCY_TARGET_MS, " ms", False, where))
    return targets


def _serve_targets(serve: ServeBench | None) -> list[Target]:
    busy, calm = _serve_run(serve, SERVE_CONCURRENCY), _serve_run(serve, 1)
    where = f"batching on, defense copur, concurrency {SERVE_CONCURRENCY}"
    rate = _value(busy, lambda r: float(r.predictions_per_s))
    p99 = _value(busy, lambda r: float(r.p99_ms))
    p50 = _value(calm, lambda r: float(r.p50_ms))
    return [
        Target("service throughput", rate, SERVE_RATE_TARGET, " predictions/s", True, where),
        Target("service p99 latency", p99, SERVE_P99_TARGET_MS, " ms", False, where),
        Target("service errors", _value(busy, _error_count), 0, "", False, where),
        Target(
            "service p50 latency",
            p50,
            SERVE_P50_TARGET_MS,
            " ms",
            False,
            "batching on, defense copur, concurrency 1",
        ),
    ]


def evaluate_targets(
    purifier: PurifierBench | Mapping[str, Any] | None, serve: ServeBench | Mapping[str, Any] | None
) -> list[Target]:
    """The issue's CPU targets, each judged from the measured numbers (``met`` is None where
    unmeasured). The inputs are the files' models or their JSON objects; None: not measured."""
    bench = None if purifier is None else as_bench(PurifierBench, purifier, "purifier")
    served = None if serve is None else as_bench(ServeBench, serve, "serve")
    return _purifier_targets(bench) + _serve_targets(served)
