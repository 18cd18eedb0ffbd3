"""The benchmarks' JSON files as pydantic models: what ``copur bench purifier`` and ``copur bench
serve`` write and ``copur bench report`` reads, how they are read (a bad file is one
:class:`ConfigError` line naming the file and the field) and written.

Only what the report needs is required; everything else is optional, so that older and hand-made
files still load. Unknown keys are kept (``extra="allow"``) and written back unchanged. Files are
written with ``exclude_unset``: a field is in the file when the writer set it (to None too).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from copur.errors import ConfigError

__all__ = [
    "Machine",
    "OneSampleLoop",
    "PurifierBench",
    "PurifierRecord",
    "ServeBench",
    "ServeRun",
    "ServeSettings",
    "as_bench",
    "load_bench",
    "write_bench",
]

BenchKind = Literal["purifier", "serve"]
M = TypeVar("M", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")

    @property
    def known(self) -> bool:
        """Whether the file gave any key at all (an empty object is as good as none)."""
        return bool(self.model_fields_set or self.model_extra)


class Machine(_Model):
    """Where a benchmark ran: the host (both benches), torch and the device (the purifier bench)."""

    hostname: str | None = None
    platform: str | None = None
    python: str | None = None
    cpu: str | None = None
    cpu_count: int | None = None
    threads: int | None = None
    torch: str | None = None
    device: str | None = None
    gpu: str | None = None
    load_average: list[float] | None = None


class PurifierRecord(_Model):
    """One purifier at one shape and batch size: rates, latency, FLOPs of one ``purify`` call."""

    purifier: str
    shape: str
    device: str | None = None
    batch_size: int
    samples_per_s: float
    latency_ms: float
    batch_ms: float
    gflops: float | None = None
    flops_per_batch: float | None = None
    gflops_executed: float | None = None
    executed_flops_per_batch: float | None = None
    calls: int | None = None
    cost: dict[str, int] | None = None
    mean_step1_iterations: float | None = None


class OneSampleLoop(_Model):
    """copur-ref on one sample at a time in a Python loop (the baseline of the batched rate)."""

    purifier: str | None = None
    shape: str | None = None
    gradients: str | None = None
    samples: int | None = None
    samples_per_s: float | None = None
    latency_ms: float | None = None
    calls: int | None = None


class PurifierBench(_Model):
    """The JSON of ``copur bench purifier``."""

    machine: Machine | None = None
    matmul_peak_gflops: float | None = None
    notes: list[str] | None = None
    records: list[PurifierRecord]
    one_sample_loop: OneSampleLoop | None = None
    one_sample_loop_autograd: OneSampleLoop | None = None
    speedup_vs_one_sample_loop: float | None = None
    speedup_vs_one_sample_autograd_loop: float | None = None
    speedup_best_batch_size: int | None = None
    command: str | None = None


class ServeRun(_Model):
    """One concurrency level of the load test (one batching setting): counts, rates, latency."""

    batching: str | None = None
    concurrency: int
    ids_per_request: int | None = None
    defense: str | None = None
    requests: int
    ok: int
    errors: dict[str, int] | None
    duration_s: float | None = None
    throughput_rps: float | None = None
    predictions_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


class ServeSettings(_Model):
    """How ``copur bench serve`` loaded the service."""

    concurrency: list[int] | None = None
    requests: int | None = None
    duration_s: float | None = None
    ids_per_request: int | None = None
    defense: str | None = None
    warmup: int | None = None
    batching: str | None = None
    up: bool | None = None
    tls: str | None = None
    auth: str | None = None
    http: str | None = None  # the front door's scheme, `https` or `http` (None: not recorded)


class ServeBench(_Model):
    """The JSON of ``copur bench serve``."""

    machine: Machine | None = None
    settings: ServeSettings | None = None
    runs: list[ServeRun]
    rss_peak_mb: dict[str, float] | None = None
    rss_peak_mb_by_batching: dict[str, dict[str, float]] | None = None
    command: str | None = None

    def rss_by_mode(self) -> dict[str, dict[str, float]]:
        """Peak RSS (MiB) per process for each batching setting; ``{"all": ...}`` for a file without
        the split."""
        if self.rss_peak_mb_by_batching:
            return self.rss_peak_mb_by_batching
        return {"all": self.rss_peak_mb} if self.rss_peak_mb else {}


_MODELS: dict[str, type[_Model]] = {"purifier": PurifierBench, "serve": ServeBench}


def _where(loc: tuple[int | str, ...]) -> str:
    """``("runs", 0, "requests")`` as ``runs[0].requests``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _problem(error: ErrorDetails, kind: str) -> str:
    """One validation error as a phrase that names the field."""
    loc = tuple(error["loc"])
    if not loc:
        return f"expected a JSON object from `copur bench {kind}`"
    if error["type"] == "missing":
        return f"{_where(loc[:-1]) or 'the top level'} lacks '{loc[-1]}'"
    return f"{_where(loc)}: {error['msg']}".replace("\n", " ")


def _validate(model: type[M], data: object, source: str, kind: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_problem(exc.errors()[0], kind)}") from None


def as_bench(model: type[M], data: M | Mapping[str, Any], source: str) -> M:
    """``data`` as ``model``: a model as it is, a mapping (the JSON object) validated; an invalid
    one is a :class:`ConfigError` naming ``source`` and the field."""
    if isinstance(data, model):
        return data
    kind = next((k for k, m in _MODELS.items() if m is model), model.__name__)
    return _validate(model, data, source, kind)


@overload
def load_bench(path: str | Path, kind: Literal["purifier"]) -> PurifierBench: ...
@overload
def load_bench(path: str | Path, kind: Literal["serve"]) -> ServeBench: ...
@overload
def load_bench(path: str | Path, kind: BenchKind) -> PurifierBench | ServeBench: ...


def load_bench(path: str | Path, kind: BenchKind) -> PurifierBench | ServeBench:
    """Read the JSON of ``copur bench purifier`` (kind "purifier") or ``copur bench serve`` (kind
    "serve"); a missing, unreadable or malformed file is a :class:`ConfigError` naming it (and the
    field)."""
    path = Path(path)
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (run `copur bench {kind}` first)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.__class__.__name__})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    model: type[PurifierBench | ServeBench] = PurifierBench if kind == "purifier" else ServeBench
    return _validate(model, data, str(path), kind)


def write_bench(bench: BaseModel, path: str | Path) -> Path:
    """Write ``bench`` as indented JSON (parent folders created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(bench.model_dump(exclude_unset=True), indent=2) + "\n")
    return out
