"""bench_serve against a tiny in-process HTTP stub: keys, request counting, both bounds, errors
by status. Functional only: nothing here asserts on timings beyond the duration bound being
honoured."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn

from copur.evaluation.bench.loadgen import bench_serve

RUN_KEYS = {
    "concurrency",
    "requests",
    "ok",
    "errors",
    "throughput_rps",
    "predictions_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
}


@dataclass
class Stub:
    """A raw ASGI app answering POST /v1/predict; ``fail_every`` > 0 makes every n-th request a
    503."""

    delay_s: float = 0.0
    fail_every: int = 0
    seen: list[list[int]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        ids = json.loads(body)["sample_ids"]
        self.seen.append(ids)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = 503 if self.fail_every and len(self.seen) % self.fail_every == 0 else 200
        payload = b'{"detail": "too few parties"}' if status == 503 else b'{"predictions": []}'
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    app = Stub()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "stub server did not start"
        time.sleep(0.01)
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_keys_and_request_bound(stub: tuple[Stub, str]) -> None:
    app, url = stub
    result = bench_serve(
        url=url,
        concurrency=(1, 4),
        requests=25,
        duration_s=30.0,
        ids_per_request=3,
        pids={"me": os.getpid()},
    )
    assert set(result) >= {"machine", "runs", "rss_peak_mb"}
    assert [r["concurrency"] for r in result["runs"]] == [1, 4]
    for run in result["runs"]:
        assert set(run) >= RUN_KEYS
        assert run["requests"] == run["ok"] == 25
        assert run["errors"] == {}
        assert run["predictions_per_s"] == pytest.approx(3 * run["throughput_rps"], rel=0.01)
        assert 0 < run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"] <= run["max_ms"]
    assert len(app.seen) == 50
    assert all(
        len(ids) == 3 and len(set(ids)) == 3 and all(0 <= i < 2000 for i in ids) for ids in app.seen
    )
    # the id sequence is fixed and seeded: both levels sent the same ids in the same order
    assert sorted(map(tuple, app.seen[:25])) == sorted(map(tuple, app.seen[25:]))
    assert result["rss_peak_mb"]["me"] > 0


def test_duration_bound(stub: tuple[Stub, str]) -> None:
    app, url = stub
    app.delay_s = 0.05
    started = time.monotonic()
    result = bench_serve(url=url, concurrency=(2,), requests=100_000, duration_s=0.5)
    elapsed = time.monotonic() - started
    run = result["runs"][0]
    assert 2 <= run["requests"] < 100
    assert run["requests"] == run["ok"] == len(app.seen)
    assert elapsed < 5.0


def test_errors_by_status(stub: tuple[Stub, str]) -> None:
    app, url = stub
    app.fail_every = 4
    result = bench_serve(url=url, concurrency=(2,), requests=40, duration_s=30.0)
    run = result["runs"][0]
    assert run["requests"] == 40
    assert run["errors"] == {"503": 10}
    assert run["ok"] == 30
    assert run["predictions_per_s"] == pytest.approx(run["throughput_rps"] * 30 / 40, rel=0.01)


def test_transport_errors_are_counted() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    result = bench_serve(
        url=f"http://127.0.0.1:{port}", concurrency=(1,), requests=3, duration_s=5.0
    )
    run = result["runs"][0]
    assert run["requests"] == 3 and run["ok"] == 0
    assert run["errors"] == {"ConnectError": 3}
