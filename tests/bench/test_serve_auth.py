"""The load generator's raw HTTP requests carry the API key (a missing one would measure only
401s)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from copur.evaluation.bench.loadgen import bench_serve


class KeyedStub:
    """Answers 200 to ``Authorization: Bearer right`` and 401 to anything else; records what it
    saw."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        auth = dict(scope["headers"]).get(b"authorization")
        self.seen.append(auth.decode() if auth else None)
        ok = auth == b"Bearer right"
        payload = json.dumps({"predictions": []} if ok else {"detail": "invalid API key"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        await send(
            {"type": "http.response.start", "status": 200 if ok else 401, "headers": headers}
        )
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture
def stub() -> Iterator[tuple[KeyedStub, str]]:
    app = KeyedStub()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield app, f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


def test_every_request_carries_the_key(stub: tuple[KeyedStub, str]) -> None:
    # Prepare
    app, url = stub
    # Execute
    keyed = bench_serve(url=url, concurrency=(2,), requests=10, duration_s=10, api_key="right")
    bare = bench_serve(url=url, concurrency=(1,), requests=3, duration_s=10)
    # Assert
    assert keyed["runs"][0]["ok"] == 10 and keyed["runs"][0]["errors"] == {}
    assert bare["runs"][0]["errors"] == {"401": 3}
    assert app.seen == ["Bearer right"] * 10 + [None] * 3
