"""docs/PERFORMANCE.md from the JSON written by ``copur bench purifier`` and ``copur bench serve``.

:func:`render_performance` is pure (dicts in, markdown out); :func:`evaluate_targets` judges the issue's
CPU targets from the measured numbers; :func:`load_bench_json` reads and checks an input file, and
:func:`write_performance` writes the markdown.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from copur.errors import ConfigError

__all__ = ["Target", "evaluate_targets", "format_number", "load_bench_json", "render_performance", "write_performance"]

SPEEDUP_TARGET = 50
REF_RATE_TARGET = 1000
LATENCY_TARGET_MS = 15
SERVE_RATE_TARGET = 500
SERVE_P99_TARGET_MS = 250
SERVE_P50_TARGET_MS = 25
SERVE_CONCURRENCY = 64

SHAPE_NOTES = {
    "nus-wide": "an autoencoder 240-200-150-200-240 with seeded orthogonal weights (4 parties x 60-dim "
    "embeddings, the shape of the reference implementation's NUS-WIDE experiment; orthogonal weights give the "
    "Jacobian a trained AE's unit gain, so copur-ref runs its 100 + 3 steps as on real data), inputs "
    "AE(noise) plus 10 % noise",
    "mfeat": "the mfeat bundle's trained autoencoder, calibration and test embeddings (6 parties)",
}
COMMAND_LABELS = {
    "purifier": "the purifier micro-benchmark",
    "serve": "the service load test (starts and stops the cluster)",
    "report": "this file",
}
RECORD_KEYS = ("purifier", "shape", "batch_size", "samples_per_s", "latency_ms", "batch_ms")
RUN_KEYS = ("concurrency", "requests", "ok", "predictions_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors")

Row = Sequence[object]


@dataclass(frozen=True)
class Target:
    """One target of the issue: what was measured, the bound, and whether the measurement meets it."""

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
    def verdict(self) -> str:
        return {True: "met", False: "**NOT met**", None: "not measured"}[self.met]

    @property
    def target_text(self) -> str:
        if self.bound == 0 and not self.at_least:
            return "0"
        return f"{'>=' if self.at_least else '<='} {format_number(self.bound)}{self.unit}"

    @property
    def measured_text(self) -> str:
        return "-" if self.measured is None else f"{format_number(self.measured)}{self.unit}"


# -- formatting ------------------------------------------------------------------------------------
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


def _table(head: Sequence[str], rows: Iterable[Row], right: Sequence[bool] | None = None) -> list[str]:
    """A markdown table; ``right`` marks the right-aligned (numeric) columns."""
    align = right if right is not None else [i > 0 for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if r else "---" for r in align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _errors_text(errors: dict[str, int] | None) -> str:
    return ", ".join(f"{k}: {v}" for k, v in (errors or {}).items()) or "0"


# -- finding the numbers ---------------------------------------------------------------------------
def _records(purifier: dict[str, Any] | None, *, name: str, shape: str) -> list[dict[str, Any]]:
    if purifier is None:
        return []
    return [r for r in purifier["records"] if r["purifier"] == name and r["shape"] == shape]


def _best(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(records, key=lambda r: r["samples_per_s"], default=None)


def _batch_one_latency(purifier: dict[str, Any] | None, shape: str) -> float | None:
    one = [r for r in _records(purifier, name="copur", shape=shape) if r["batch_size"] == 1]
    return float(one[0]["latency_ms"]) if one else None


def _speedup(purifier: dict[str, Any] | None, loop_key: str) -> float | None:
    """Best batched copur-ref rate at nus-wide over the one-sample loop's rate (``loop_key``)."""
    best = _best(_records(purifier, name="copur-ref", shape="nus-wide"))
    loop = (purifier or {}).get(loop_key)
    if best is None or not isinstance(loop, dict) or not loop.get("samples_per_s"):
        return None
    return float(best["samples_per_s"]) / float(loop["samples_per_s"])


def _run_defense(serve: dict[str, Any], run: dict[str, Any]) -> str | None:
    return run.get("defense") or (serve.get("settings") or {}).get("defense")


def _serve_run(serve: dict[str, Any] | None, concurrency: int) -> dict[str, Any] | None:
    """The batching-on, defense-copur run at ``concurrency`` (the last one when there are several)."""
    if serve is None:
        return None
    runs = [
        r
        for r in serve["runs"]
        if r.get("batching") == "on" and r["concurrency"] == concurrency and _run_defense(serve, r) == "copur"
    ]
    return runs[-1] if runs else None


def _error_count(run: dict[str, Any]) -> int:
    return max(sum(int(v) for v in (run.get("errors") or {}).values()), int(run["requests"]) - int(run["ok"]))


def _value(run: dict[str, Any] | None, read: Callable[[dict[str, Any]], float | int]) -> float | int | None:
    return None if run is None else read(run)


# -- the targets -----------------------------------------------------------------------------------
def _purifier_targets(purifier: dict[str, Any] | None) -> list[Target]:
    best = _best(_records(purifier, name="copur-ref", shape="nus-wide"))
    where = f"nus-wide, batch {best['batch_size']}" if best else "nus-wide"
    targets = [
        Target(
            "copur-ref batched vs its one-sample loop",
            _speedup(purifier, "one_sample_loop"),
            SPEEDUP_TARGET,
            "x",
            True,
            where,
        )
    ]
    if purifier is not None and isinstance(purifier.get("one_sample_loop_autograd"), dict):
        speedup = _speedup(purifier, "one_sample_loop_autograd")
        targets.append(
            Target("copur-ref batched vs a one-sample autograd loop", speedup, SPEEDUP_TARGET, "x", True, where)
        )
    rate = float(best["samples_per_s"]) if best else None
    targets.append(Target("copur-ref batched throughput", rate, REF_RATE_TARGET, " samples/s", True, where))
    for shape in ("nus-wide", "mfeat"):
        latency = _batch_one_latency(purifier, shape)
        where = f"{shape}, batch 1"
        targets.append(Target("copur single-sample latency", latency, LATENCY_TARGET_MS, " ms", False, where))
    return targets


def _serve_targets(serve: dict[str, Any] | None) -> list[Target]:
    busy, calm = _serve_run(serve, SERVE_CONCURRENCY), _serve_run(serve, 1)
    where = f"batching on, defense copur, concurrency {SERVE_CONCURRENCY}"
    return [
        Target(
            "service throughput",
            _value(busy, lambda r: float(r["predictions_per_s"])),
            SERVE_RATE_TARGET,
            " predictions/s",
            True,
            where,
        ),
        Target(
            "service p99 latency", _value(busy, lambda r: float(r["p99_ms"])), SERVE_P99_TARGET_MS, " ms", False, where
        ),
        Target("service errors", _value(busy, _error_count), 0, "", False, where),
        Target(
            "service p50 latency",
            _value(calm, lambda r: float(r["p50_ms"])),
            SERVE_P50_TARGET_MS,
            " ms",
            False,
            "batching on, defense copur, concurrency 1",
        ),
    ]


def evaluate_targets(purifier: dict[str, Any] | None, serve: dict[str, Any] | None) -> list[Target]:
    """The issue's CPU targets, each judged from the measured numbers (``met`` is None where unmeasured)."""
    return _purifier_targets(purifier) + _serve_targets(serve)


# -- the sections ----------------------------------------------------------------------------------
def _header(commands: dict[str, str], generated: str | None) -> list[str]:
    report = commands.get("report")
    how = f"`make perf` (last step: `{report}`)" if report else "`make perf`"
    lines = ["# Performance", "", f"_Generated by {how}; do not edit by hand, rerun `make perf`._"]
    if generated:
        lines += ["", f"Generated {generated}."]
    return lines


def _machine(purifier: dict[str, Any] | None, serve: dict[str, Any] | None) -> list[str]:
    lines = ["## Machine", ""]
    bench = (purifier or {}).get("machine") or {}
    served = (serve or {}).get("machine") or {}
    if not bench and not served:
        return [*lines, "_No machine information in the inputs._"]
    load = bench.get("load_average")
    rows: list[Row] = [
        ("CPU", bench.get("cpu") or served.get("cpu") or "-"),
        ("cores", bench.get("cpu_count") or served.get("cpu_count") or "-"),
        ("torch threads (purifier bench)", bench.get("threads", "-")),
        ("torch", bench.get("torch", "-")),
        ("device (purifier bench)", bench.get("gpu") or bench.get("device") or "-"),
        ("Python", bench.get("python") or served.get("python") or "-"),
        ("load average 1/5/15 min (purifier bench)", " / ".join(f"{x:.2f}" for x in load) if load else "-"),
        ("float32 matmul peak", _gflops_text((purifier or {}).get("matmul_peak_gflops"))),
    ]
    if served and served.get("cpu") not in (None, bench.get("cpu")):
        rows.append(("CPU (serve bench)", f"{served['cpu']}, {served.get('cpu_count', '?')} cores"))
    return lines + _table(("", "value"), rows, right=(False, False))


def _gflops_text(value: float | None) -> str:
    return "-" if value is None else f"{format_number(value)} GFLOP/s"


def _shape_table(records: list[dict[str, Any]], peak: float | None) -> list[str]:
    rows = []
    for r in sorted(records, key=lambda r: (r["purifier"] != "copur-ref", r["batch_size"])):
        gflops, executed = r.get("gflops"), r.get("gflops_executed")
        share = f"{format_number(100.0 * executed / peak)}%" if executed is not None and peak else "-"
        rows.append(
            (
                r["purifier"],
                r["batch_size"],
                format_number(r["samples_per_s"]),
                format_number(r["latency_ms"]),
                format_number(r["batch_ms"]),
                format_number(gflops),
                format_number(executed),
                share,
            )
        )
    head = (
        "purifier",
        "batch",
        "samples/s",
        "ms/sample",
        "ms/batch",
        "GFLOP/s nominal",
        "GFLOP/s executed",
        "executed, % of matmul peak",
    )
    return _table(head, rows, right=(False, *[True] * 7))


def _loops(purifier: dict[str, Any]) -> list[str]:
    best = _best(_records(purifier, name="copur-ref", shape="nus-wide"))
    loops = [
        ("default path (analytic gradients)", "one_sample_loop"),
        ("autograd per step (the public code's formulation)", "one_sample_loop_autograd"),
    ]
    rows = []
    for label, key in loops:
        loop = purifier.get(key)
        if isinstance(loop, dict):
            speedup = _speedup(purifier, key)
            shown = f"{format_number(speedup)}x" if speedup is not None else "-"
            rows.append(
                (
                    label,
                    loop.get("samples", "-"),
                    format_number(loop.get("samples_per_s")),
                    format_number(loop.get("latency_ms")),
                    shown,
                )
            )
    if not rows:
        return []
    batch = f" (batch {best['batch_size']}, {format_number(best['samples_per_s'])} samples/s)" if best else ""
    intro = (
        "copur-ref purifying one sample per call in a Python loop at the nus-wide shape, against its best "
        f"batched rate{batch}:"
    )
    head = ("loop", "samples", "samples/s", "ms/sample", "batched speedup")
    return ["### One sample at a time", "", intro, "", *_table(head, rows)]


def _purifier_section(purifier: dict[str, Any] | None) -> list[str]:
    lines = ["## Purifiers (`copur bench purifier`)", ""]
    if purifier is None:
        return [*lines, "_No purifier benchmark was given._"]
    lines += [
        "Throughput of one `purify` call on a batch, repeated for at least `--min-seconds`. *GFLOP/s nominal*",
        "is the algorithm's work per second: every AE layer as trained, forward and input-gradient backward per",
        "step, early stops counted. The fast paths do less arithmetic than that (the AE's code layer folded",
        "into its neighbours when wider, copur-ref's step 1 taken in the first layer's pre-activation), so this",
        "effective rate can pass the matmul peak. *GFLOP/s executed* counts the matmuls the call really ran",
        "(torch's FlopCounterMode); its share of a measured float32 2048 x 2048 matmul (same device and",
        "threads) is the hardware efficiency.",
    ]
    peak = purifier.get("matmul_peak_gflops")
    shapes = dict.fromkeys(r["shape"] for r in purifier["records"])
    for shape in shapes:
        records = [r for r in purifier["records"] if r["shape"] == shape]
        note = SHAPE_NOTES.get(shape)
        lines += ["", f"### {shape}", "", *([f"{note[0].upper()}{note[1:]}.", ""] if note else [])]
        lines += _shape_table(records, peak)
    loops = _loops(purifier)
    lines += ["", *loops] if loops else []
    notes = purifier.get("notes") or []
    lines += ["", "Notes:", "", *(f"- {n}" for n in notes)] if notes else []
    return lines


def _serve_settings(serve: dict[str, Any]) -> str:
    s = serve.get("settings") or {}
    parts = [
        f"at most {s['requests']} requests or {format_number(s['duration_s'])} s per level"
        if "requests" in s and "duration_s" in s
        else "",
        f"{s['ids_per_request']} sample id(s) per request" if "ids_per_request" in s else "",
        f"defense `{s['defense']}`" if "defense" in s else "",
        f"{s['warmup']} uncounted warm-up requests per level" if "warmup" in s else "",
        f"gRPC links `{s['tls']}`, front door auth `{s['auth']}`" if "tls" in s and "auth" in s else "",
    ]
    text = "; ".join(p for p in parts if p)
    return f"`POST /v1/predict` on the fusion center's HTTP front door: {text}." if text else ""


def _serve_table(serve: dict[str, Any]) -> list[str]:
    rows = [
        (
            r.get("batching", "?"),
            r["concurrency"],
            r["requests"],
            r["ok"],
            format_number(r["predictions_per_s"]),
            format_number(r["p50_ms"]),
            format_number(r["p95_ms"]),
            format_number(r["p99_ms"]),
            format_number(r["max_ms"]),
            _errors_text(r.get("errors")),
        )
        for r in serve["runs"]
    ]
    head = ("batching", "concurrency", "requests", "ok", "pred/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors")
    return _table(head, rows, right=(False, *[True] * 8, False))


def _rss_table(serve: dict[str, Any]) -> list[str]:
    by_mode: dict[str, dict[str, float]] = serve.get("rss_peak_mb_by_batching") or {}
    if not by_mode and serve.get("rss_peak_mb"):
        by_mode = {"all": serve["rss_peak_mb"]}
    if not by_mode:
        return []
    modes = list(by_mode)
    names = sorted({name for peaks in by_mode.values() for name in peaks})
    rows = [(name, *(format_number(by_mode[m].get(name)) for m in modes)) for name in names]
    head = ("process", *(f"batching {m}" if m in ("on", "off") else m for m in modes))
    return ["Peak resident memory per process (MiB):", "", *_table(head, rows)]


def _serve_section(serve: dict[str, Any] | None) -> list[str]:
    lines = ["## Service (`copur bench serve`)", ""]
    if serve is None:
        return [*lines, "_No service benchmark was given._"]
    settings = _serve_settings(serve)
    lines += [settings, ""] if settings else []
    lines += _serve_table(serve)
    rss = _rss_table(serve)
    return lines + (["", *rss] if rss else [])


def _targets_section(purifier: dict[str, Any] | None, serve: dict[str, Any] | None) -> list[str]:
    targets = evaluate_targets(purifier, serve)
    rows = [(t.name, t.where, t.measured_text, t.target_text, t.verdict) for t in targets]
    met = sum(t.met is True for t in targets)
    lines = [
        "## Targets",
        "",
        f"The issue's CPU targets, judged from the numbers above: {met} of {len(targets)} met.",
    ]
    device = ((purifier or {}).get("machine") or {}).get("device")
    if device and device != "cpu":
        lines.append(f"The purifier numbers were measured on `{device}`; these targets are for the CPU.")
    return [
        *lines,
        "",
        *_table(("target", "where", "measured", "target", "verdict"), rows, right=(False, False, True, True, False)),
        *_speedup_ceiling(purifier),
    ]


def _speedup_ceiling(purifier: dict[str, Any] | None) -> list[str]:
    """What the batched-vs-loop ratio could be at 100 % of the matmul peak, from the measured numbers."""
    best = _best(_records(purifier, name="copur-ref", shape="nus-wide"))
    loop = (purifier or {}).get("one_sample_loop")
    peak = (purifier or {}).get("matmul_peak_gflops")
    if best is None or not isinstance(loop, dict) or not peak or not best.get("executed_flops_per_batch"):
        return []
    per_sample = float(best["executed_flops_per_batch"]) / float(best["batch_size"])
    rate_at_peak = float(peak) * 1e9 / per_sample
    ceiling = rate_at_peak / float(loop["samples_per_s"])
    return [
        "",
        f"The batched copur-ref executes {format_number(per_sample / 1e6)} MFLOP of matmuls per sample at",
        f"nus-wide; at 100 % of the measured matmul peak that is {format_number(rate_at_peak)} samples/s, "
        f"{format_number(ceiling)}x the",
        "one-sample loop of the default path. That loop is bound by per-operation dispatch, not arithmetic, so",
        "the ratio against it is capped by the matmul peak; the ratio against the same loop with autograd per",
        "step (the public code's formulation) is the other row.",
    ]


def _reproduce(commands: dict[str, str]) -> list[str]:
    intro = "`make perf` regenerates this file. The commands that produced it, run from the repository root:"
    lines = ["## How to reproduce", "", intro, "", "```"]
    for key, command in commands.items():
        lines += [f"# {COMMAND_LABELS.get(key, key)}", command]
    return [*lines, "```"]


SPEED_NOTES = [
    "## Where the speed comes from",
    "",
    "Each item was found with a profile (the torch profiler for the purifiers, py-spy for the services):",
    "",
    "- **No autograd in inference.** The purifiers only need gradients with respect to their own iterates,",
    "  so their default paths use the AE's analytic input gradient (`copur.science.purify.fastgrad`: plain matmuls and",
    "  torch's fused leaky-ReLU backward). `differentiable=True` (adaptive attacks) and",
    "  `analytic_grad=False` still take the autograd path; tests hold both to the same iterates.",
    "- **Fewer matmuls per step.** The AE's code layer is folded into its neighbours when that is cheaper,",
    "  and copur-ref's step 1 moves the first layer's pre-activation instead of L (one matmul fewer a step).",
    "- **Per-sample early stop that shrinks the batch**: rows that converged leave the active set.",
    "- **One intra-op thread for small batches** (`small_batch_threads`): tiny matmuls split over two threads",
    "  stall whenever the other core is busy, which on a shared 2-core machine is always.",
    "- **Batches that grow with the load**: the gateway keeps at most two batches in flight and sends",
    "  whatever queued meanwhile as one batch; a lone request on an idle pipeline leaves at once.",
    "- **No full garbage collections of the startup heap**: each service calls `gc.freeze()` once it is",
    "  up; before that, a periodic full collection stalled every in-flight request at once.",
    "- **A load generator that does not starve the server**: `copur bench serve` speaks HTTP/1.1 over raw",
    "  asyncio streams (an httpx client needed most of a core by itself at these rates).",
    "",
    "`torch.compile` (dynamic shapes) of copur-ref's step was tried and not adopted: at batch 4096 it ran at",
    "about the eager speed (the matmuls, which it does not speed up, are most of the time), it was slower at",
    "batch 1, and every process would pay the compilation first.",
]


def render_performance(
    purifier: dict[str, Any] | None,
    serve: dict[str, Any] | None,
    *,
    commands: dict[str, str],
    generated: str | None = None,
) -> str:
    """The markdown of docs/PERFORMANCE.md. ``commands`` maps "purifier", "serve" and "report" (other keys
    are shown as they are) to the command lines that made the inputs and this file, in the order to run
    them; ``generated`` is an optional date line. ``None`` for an input leaves its sections out."""
    sections = [
        _header(commands, generated),
        _machine(purifier, serve),
        _purifier_section(purifier),
        _serve_section(serve),
        _targets_section(purifier, serve),
        SPEED_NOTES,
        _reproduce(commands),
    ]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


# -- files -----------------------------------------------------------------------------------------
def _check_rows(path: Path, rows: object, key: str, required: Sequence[str]) -> None:
    if not isinstance(rows, list):
        raise ConfigError(f"{path}: '{key}' must be a list")
    for i, row in enumerate(rows):
        missing = [k for k in required if not isinstance(row, dict) or k not in row]
        if missing:
            raise ConfigError(f"{path}: {key}[{i}] lacks '{missing[0]}'")


def load_bench_json(path: str | Path, kind: str) -> dict[str, Any]:
    """Read a ``copur bench purifier`` (kind "purifier") or ``copur bench serve`` (kind "serve") JSON file;
    a missing, unreadable or malformed file is a :class:`ConfigError` naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (run `copur bench {kind}` first)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.__class__.__name__})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object from `copur bench {kind}`")
    if kind == "purifier":
        _check_rows(path, data.get("records"), "records", RECORD_KEYS)
    else:
        _check_rows(path, data.get("runs"), "runs", RUN_KEYS)
    return data


def write_performance(markdown: str, path: str | Path) -> Path:
    """Write the markdown (parent folders created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown)
    return out
