"""Load generator for the fusion center's HTTP front door (``POST /v1/predict``).

:func:`bench_serve` drives a running fusion center at several concurrency levels and reports
throughput, latency percentiles, errors by status and the peak RSS of the cluster's processes.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from copur.evaluation.bench.machine import machine_info
from copur.evaluation.bench.memory import RssSampler
from copur.evaluation.bench.models import ServeRun
from copur.evaluation.percentiles import percentile_ms

__all__ = ["ID_RANGE", "bench_serve"]

ID_RANGE = 2000  # sample ids are drawn from 0..ID_RANGE-1 (the mfeat bundle's samples)


def _id_bodies(seed: int, ids_per_request: int, defense: str) -> Iterator[dict[str, Any]]:
    """The fixed seeded request sequence: distinct ids in 0..ID_RANGE-1 within each request."""
    rng = random.Random(seed)
    k = min(ids_per_request, ID_RANGE)
    while True:
        ids = [rng.randrange(ID_RANGE)] if k == 1 else rng.sample(range(ID_RANGE), k)
        yield {"sample_ids": ids, "defense": defense}


class _Connection:
    """One keep-alive HTTP/1.1 connection of the load generator: raw asyncio streams, a pre-encoded
    request per body, Content-Length framing. httpx spends about 2.5 ms of CPU per request, which on
    a 2-core machine starves the very server being measured (profiled: 70 % of a core at 250
    requests/s)."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        api_key: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.path, self.tls = host, port, path, tls
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
                self.reader, self.writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.tls
                )
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


def _split_url(url: str) -> tuple[str, int, str, bool]:
    """(host, port, predict path, HTTPS) of ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be http(s)://HOST:PORT, not {url!r}")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    return parts.hostname, port, parts.path.rstrip("/") + "/v1/predict", https


def _ms(latencies: Sequence[float], q: float) -> float:
    """The ``q``-th latency percentile in ms, to the microsecond (0 when nothing was sent)."""
    value = percentile_ms(latencies, q)
    return 0.0 if value is None else round(value, 3)


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
) -> ServeRun:
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
    return ServeRun(
        concurrency=concurrency,
        ids_per_request=ids_per_request,
        defense=defense,
        requests=state["sent"],
        ok=state["ok"],
        errors=dict(sorted(errors.items())),
        duration_s=round(elapsed, 3),
        throughput_rps=round(state["sent"] / elapsed, 2),
        predictions_per_s=round(state["predictions"] / elapsed, 2),
        p50_ms=_ms(latencies, 50),
        p95_ms=_ms(latencies, 95),
        p99_ms=_ms(latencies, 99),
        max_ms=_ms(latencies, 100),
    )


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
    ca_file: Path | None,
) -> dict[str, Any]:
    host, port, path, https = _split_url(url)
    tls = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))

    sampler = RssSampler(pids)
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))
    runs: list[ServeRun] = []
    try:
        for level in concurrency:
            connections = [
                _Connection(host, port, path, api_key, tls if https else None) for _ in range(level)
            ]
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
        "machine": machine_info().model_dump(exclude_unset=True),
        "url": url,
        "runs": [run.model_dump(exclude_unset=True) for run in runs],
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
    ca_file: Path | None = None,
) -> dict[str, Any]:
    """Load ``url``'s ``POST /v1/predict`` at each concurrency level in turn, each request carrying
    ``api_key`` as its Bearer token (none when None); an ``https://`` ``url`` is verified with
    ``ca_file`` (the system's trust store when None).

    Each level sends at most ``requests`` requests and stops starting new ones after ``duration_s``
    seconds, whichever comes first; each request asks for ``ids_per_request`` distinct ids from a
    fixed seeded sequence in 0..1999. ``warmup`` uncounted requests precede each level. Latency
    percentiles (linear interpolation, :mod:`copur.evaluation.percentiles`) cover every request sent
    (failed ones included); ``errors`` counts non-200 answers by status code and transport failures
    by exception name. ``rss_peak_mb`` is the peak RSS of each process in ``pids`` sampled during
    the run.

    Returns ``{"machine", "url", "runs", "rss_peak_mb"}`` as JSON-ready dicts: ``machine`` a
    :class:`~copur.evaluation.bench.models.Machine`, each run a
    :class:`~copur.evaluation.bench.models.ServeRun` (without ``batching``).
    """
    if requests < 1 or duration_s <= 0 or ids_per_request < 1 or any(c < 1 for c in concurrency):
        positive = "requests, duration_s, ids_per_request and every concurrency level"
        raise ValueError(f"{positive} must be positive")
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
            ca_file=ca_file,
        )
    )
