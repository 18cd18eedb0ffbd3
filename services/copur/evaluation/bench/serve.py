"""Load generator for the fusion center's HTTP front door (``POST /v1/predict``).

:func:`bench_serve` drives a running fusion center at several concurrency levels and reports throughput,
latency percentiles, errors by status and the peak RSS of the cluster's processes. :func:`serve_command`
is the command logic behind ``copur bench serve``: optionally start the cluster itself (batching on, off
or both), run the bench, write a JSON report and print a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["bench_serve", "format_table", "machine_info", "read_rss_mb", "serve_command"]

ID_RANGE = 2000  # sample ids are drawn from 0..ID_RANGE-1 (the mfeat bundle's samples)
RSS_SAMPLE_S = 0.2


# -- process memory --------------------------------------------------------------------------------
def read_rss_mb(pid: int, *, peak: bool = True) -> float | None:
    """Resident set size of ``pid`` in MiB: the peak since it started (``peak``) or the current one; None
    when gone. Linux: /proc (VmHWM, VmRSS); elsewhere psutil when installed (its peak only on Windows)."""
    kib = _proc_status_kib(pid, ("VmHWM", "VmRSS") if peak else ("VmRSS",))
    if kib is not None:
        return max(kib.values()) / 1024 if kib else None
    try:
        import psutil  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        info = psutil.Process(pid).memory_info()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    rss = (getattr(info, "peak_wset", None) or info.rss) if peak else info.rss  # peak_wset on Windows only
    return float(rss) / 2**20


def _proc_status_kib(pid: int, keys: tuple[str, ...]) -> dict[str, int] | None:
    """These ``/proc/<pid>/status`` fields in KiB ({} when the process is gone); None without /proc."""
    if not Path("/proc/self/status").exists():
        return None
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    kib = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            kib[key] = int(value.split()[0])
    return kib


class _RssSampler:
    """Keeps the largest RSS seen for each process while running."""

    def __init__(self, pids: dict[str, int] | None) -> None:
        self.pids = dict(pids or {})
        self.peak: dict[str, float] = {}

    def sample(self) -> None:
        for name, pid in self.pids.items():
            mb = read_rss_mb(pid)
            if mb is not None:
                self.peak[name] = max(self.peak.get(name, 0.0), mb)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RSS_SAMPLE_S)
        self.sample()


# -- the load generator ----------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 0
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": cores,
    }


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _id_bodies(seed: int, ids_per_request: int, defense: str) -> Iterator[dict[str, Any]]:
    """The fixed seeded request sequence: distinct ids in 0..ID_RANGE-1 within each request."""
    rng = random.Random(seed)
    k = min(ids_per_request, ID_RANGE)
    while True:
        ids = [rng.randrange(ID_RANGE)] if k == 1 else rng.sample(range(ID_RANGE), k)
        yield {"sample_ids": ids, "defense": defense}


class _Connection:
    """One keep-alive HTTP/1.1 connection of the load generator: raw asyncio streams, a pre-encoded
    request per body, Content-Length framing. httpx spends about 2.5 ms of CPU per request, which on a
    2-core machine starves the very server being measured (profiled: 70 % of a core at 250 requests/s)."""

    def __init__(self, host: str, port: int, path: str, api_key: str | None = None) -> None:
        self.host, self.port, self.path = host, port, path
        self.auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def encode(self, body: dict[str, Any]) -> bytes:
        data = json.dumps(body).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        return head.encode() + data

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        """Send one request, return (status, body); raises _TransportError naming what failed."""
        if self.writer is None:
            try:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                raise _TransportError("ConnectError") from exc
        assert self.reader is not None
        try:
            self.writer.write(payload)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status, length, close = _parse_head(head)
            body = await self.reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self.close()
            raise _TransportError("ReadError") from exc
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class _TransportError(Exception):
    """A request that got no HTTP answer; the message is the error kind counted in ``errors``."""


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, connection closes) of a response head; ValueError when unusable."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, close = None, False
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        key = key.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"connection":
            close = value.strip().lower() == b"close"
        elif key == b"transfer-encoding":
            raise ValueError("chunked responses are not supported by the load generator")
    if length is None:
        raise ValueError("response without Content-Length")
    return status, length, close


def _split_url(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"url must be http://HOST:PORT, not {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/") + "/v1/predict"


async def _run_level(
    *,
    concurrency: int,
    requests: int,
    duration_s: float,
    ids_per_request: int,
    defense: str,
    seed: int,
    timeout_s: float,
    connections: list[_Connection],
) -> dict[str, Any]:
    bodies = _id_bodies(seed, ids_per_request, defense)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    state = {"sent": 0, "ok": 0, "predictions": 0}
    started = time.perf_counter()
    deadline = started + duration_s

    async def one_worker(conn: _Connection) -> None:
        while state["sent"] < requests and time.perf_counter() < deadline:
            state["sent"] += 1
            body = next(bodies)
            payload = conn.encode(body)
            t0 = time.perf_counter()
            try:
                status, answer = await asyncio.wait_for(conn.request(payload), timeout_s)
            except (_TransportError, TimeoutError) as exc:
                latencies.append(time.perf_counter() - t0)
                conn.close()
                errors[str(exc) if isinstance(exc, _TransportError) else "Timeout"] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            if status == 200 and _answers(answer):
                state["ok"] += 1
                state["predictions"] += len(body["sample_ids"])
            else:
                errors[str(status) if status != 200 else "BadBody"] += 1

    await asyncio.gather(*(one_worker(conn) for conn in connections[:concurrency]))
    elapsed = max(time.perf_counter() - started, 1e-9)
    latencies.sort()
    ms = [x * 1000.0 for x in latencies]
    return {
        "concurrency": concurrency,
        "ids_per_request": ids_per_request,
        "defense": defense,
        "requests": state["sent"],
        "ok": state["ok"],
        "errors": dict(sorted(errors.items())),
        "duration_s": round(elapsed, 3),
        "throughput_rps": round(state["sent"] / elapsed, 2),
        "predictions_per_s": round(state["predictions"] / elapsed, 2),
        "p50_ms": round(_percentile(ms, 50), 3),
        "p95_ms": round(_percentile(ms, 95), 3),
        "p99_ms": round(_percentile(ms, 99), 3),
        "max_ms": round(ms[-1], 3) if ms else 0.0,
    }


def _answers(body: bytes) -> bool:
    """A 200 body counts as an answer when it is a JSON object with a ``predictions`` list."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and isinstance(data.get("predictions"), list)


async def _bench(
    *,
    url: str,
    concurrency: Sequence[int],
    requests: int,
    duration_s: float,
    ids_per_request: int,
    defense: str,
    pids: dict[str, int] | None,
    warmup: int,
    timeout_s: float,
    seed: int,
    api_key: str | None,
) -> dict[str, Any]:
    host, port, path = _split_url(url)
    sampler = _RssSampler(pids)
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))
    runs = []
    try:
        for level in concurrency:
            connections = [_Connection(host, port, path, api_key) for _ in range(level)]
            level_run = partial(
                _run_level,
                concurrency=level,
                duration_s=duration_s,
                ids_per_request=ids_per_request,
                defense=defense,
                timeout_s=timeout_s,
                connections=connections,
            )
            try:
                if warmup > 0:  # not counted: connection setup, lazy initialisation on the server
                    await level_run(requests=warmup, seed=seed + 1)
                runs.append(await level_run(requests=requests, seed=seed))
            finally:
                for conn in connections:
                    conn.close()
    finally:
        stop.set()
        await sampling
    return {
        "machine": machine_info(),
        "url": url,
        "runs": runs,
        "rss_peak_mb": {k: round(v, 1) for k, v in sorted(sampler.peak.items())},
    }


def bench_serve(
    *,
    url: str,
    concurrency: Sequence[int] = (1, 8, 64),
    requests: int = 20000,
    duration_s: float = 20.0,
    ids_per_request: int = 1,
    defense: str = "copur",
    pids: dict[str, int] | None = None,
    warmup: int = 0,
    timeout_s: float = 30.0,
    seed: int = 0,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Load ``url``'s ``POST /v1/predict`` at each concurrency level in turn, each request carrying
    ``api_key`` as its Bearer token (none when None).

    Each level sends at most ``requests`` requests and stops starting new ones after ``duration_s``
    seconds, whichever comes first; each request asks for ``ids_per_request`` distinct ids from a fixed
    seeded sequence in 0..1999. ``warmup`` uncounted requests precede each level. Latency percentiles
    cover every request sent (failed ones included); ``errors`` counts non-200 answers by status code
    and transport failures by exception name. ``rss_peak_mb`` is the peak RSS of each process in
    ``pids`` sampled during the run.

    Returns ``{"machine", "url", "runs": [{"concurrency", "requests", "ok", "errors", "throughput_rps",
    "predictions_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", ...}], "rss_peak_mb"}``.
    """
    if requests < 1 or duration_s <= 0 or ids_per_request < 1 or any(c < 1 for c in concurrency):
        raise ValueError("requests, duration_s, ids_per_request and every concurrency level must be positive")
    return asyncio.run(
        _bench(
            url=url,
            concurrency=list(concurrency),
            requests=requests,
            duration_s=duration_s,
            ids_per_request=ids_per_request,
            defense=defense,
            pids=pids,
            warmup=warmup,
            timeout_s=timeout_s,
            seed=seed,
            api_key=api_key,
        )
    )


# -- the command -----------------------------------------------------------------------------------
def format_table(runs: Sequence[dict[str, Any]]) -> str:
    head = (
        f"{'batching':>8} {'conc':>5} {'reqs':>6} {'ok':>6} {'req/s':>8} {'pred/s':>8} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}  errors"
    )
    lines = [head, "-" * len(head)]
    for r in runs:
        errors = ", ".join(f"{k}:{v}" for k, v in r["errors"].items()) or "-"
        lines.append(
            f"{r.get('batching', '?'):>8} {r['concurrency']:>5} {r['requests']:>6} {r['ok']:>6} "
            f"{r['throughput_rps']:>8.1f} {r['predictions_per_s']:>8.1f} {r['p50_ms']:>8.1f} "
            f"{r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f}  {errors}"
        )
    return "\n".join(lines)


def _bench_topology(config: Path, batching: bool, out_dir: Path) -> Path:
    """A copy of ``config`` with fusion.batching set, every adversary's policy ``none`` and absolute bundle
    and tls.dir paths (relative paths are taken from the working directory, else from the file's folder)."""
    import yaml

    raw = yaml.safe_load(config.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{config} must hold a mapping at the top level")
    raw.setdefault("fusion", {})
    raw["fusion"] = dict(raw["fusion"] or {}, batching=batching)
    raw["adversaries"] = [dict(a, policy="none") for a in raw.get("adversaries") or []]
    paths: list[tuple[dict[str, Any], str]] = [(raw, "bundle"), (raw, "data_dir")]
    if isinstance(raw.get("tls"), dict):
        paths.append((raw["tls"], "dir"))
    if isinstance(raw.get("auth"), dict):
        paths.append((raw["auth"], "keys_file"))
    for node, key in paths:
        value = node.get(key)
        if isinstance(value, str) and not Path(value).is_absolute():
            here, beside = Path(value).resolve(), (config.parent / value).resolve()
            node[key] = str(here if here.exists() or not beside.exists() else beside)
    path = out_dir / f"cluster-batching-{'on' if batching else 'off'}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _state_pids(log_dir: Path) -> dict[str, int] | None:
    """The pids a running ``copur up`` recorded in ``log_dir/cluster.json``, if any."""
    try:
        info = json.loads((log_dir / "cluster.json").read_text())
        return {str(k): int(v) for k, v in info["pids"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def serve_command(
    *,
    url: str | None,
    config: Path,
    json_path: Path,
    up: bool,
    batching: str = "both",
    concurrency: Sequence[int] = (1, 8, 64),
    requests: int = 20000,
    duration_s: float = 20.0,
    ids_per_request: int = 1,
    defense: str = "copur",
    warmup: int = 20,
    log_dir: Path | None = None,
    start_timeout: float = 180.0,
    echo: Callable[[str], None] = print,
    api_key: str | None = None,
) -> int:
    """``copur bench serve``: bench a running fusion center (``url``) or, with ``up``, start the cluster of
    ``config`` (adversaries' policy none) once per batching mode ("on", "off" or "both"), bench it and stop
    it. Writes the JSON report to ``json_path``, prints a table; returns the exit code. Requests carry
    ``api_key``; without one, the development predict key of the started cluster (``up``), else
    ``$COPUR_API_KEY``."""
    if batching not in ("on", "off", "both"):
        echo(f"error: --batching must be on, off or both, not {batching!r}")
        return 2
    if not up and url is None:
        echo("error: give --url of a running fusion center, or --up to start the cluster")
        return 2
    if not up and batching == "both":
        echo("error: --batching both needs --up (a running cluster has one batching setting)")
        return 2
    modes = ["on", "off"] if batching == "both" else [batching]
    kwargs: dict[str, Any] = {
        "concurrency": concurrency,
        "requests": requests,
        "duration_s": duration_s,
        "ids_per_request": ids_per_request,
        "defense": defense,
        "warmup": warmup,
    }
    runs: list[dict[str, Any]] = []
    rss_by_mode: dict[str, dict[str, float]] = {}
    machine: dict[str, Any] = {}
    security: dict[str, str] = {}
    if not up:
        assert url is not None
        key = api_key or os.environ.get("COPUR_API_KEY")
        result = bench_serve(url=url, pids=_state_pids(log_dir or Path("runs/cluster")), api_key=key, **kwargs)
        machine = result["machine"]
        runs += [{"batching": batching, **r} for r in result["runs"]]
        rss_by_mode[batching] = result["rss_peak_mb"]
    else:
        from copur.errors import CopurError
        from copur.operations.launcher import Cluster
        from copur.transport.topology import load_topology

        with tempfile.TemporaryDirectory(prefix="copur-bench-") as tmp:
            for mode in modes:
                path = _bench_topology(Path(config), mode == "on", Path(tmp))
                logs = (log_dir or Path(tmp) / "logs") / f"batching-{mode}"
                topology = load_topology(path)
                security = {"tls": topology.tls.mode, "auth": topology.auth.mode}
                cluster = Cluster(topology, config_path=path, log_dir=logs)
                echo(f"starting the cluster with batching {mode} (logs in {logs}/)")
                try:
                    cluster.start(start_timeout)
                except CopurError as exc:
                    echo(f"error: {exc}")
                    return 1
                try:
                    key = api_key or cluster.dev_key("predict") or os.environ.get("COPUR_API_KEY")
                    result = bench_serve(url=cluster.fusion_url, pids=cluster.pids(), api_key=key, **kwargs)
                finally:
                    cluster.stop()
                machine = result["machine"]
                runs += [{"batching": mode, **r} for r in result["runs"]]
                rss_by_mode[mode] = result["rss_peak_mb"]
                echo(format_table(runs[-len(result["runs"]) :]))
    rss: dict[str, float] = {}
    for peaks in rss_by_mode.values():
        for name, mb in peaks.items():
            rss[name] = max(rss.get(name, 0.0), mb)
    report = {
        "machine": machine,
        "settings": {**kwargs, "concurrency": list(concurrency), "batching": batching, "up": up, **security},
        "runs": runs,
        "rss_peak_mb": rss,
        "rss_peak_mb_by_batching": rss_by_mode,
    }
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    echo("")
    echo(format_table(runs))
    if rss:
        echo("peak RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    echo(f"wrote {json_path}")
    return 0


if __name__ == "__main__":  # pragma: no cover - handy without the CLI wiring
    sys.exit(
        serve_command(
            url=None,
            config=Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/cluster.yaml"),
            json_path=Path(sys.argv[2] if len(sys.argv) > 2 else "runs/bench/serve.json"),
            up=True,
        )
    )
