"""The clients' API keys: sent as Bearer tokens (HTTP header, gRPC metadata), taken from the
environment by default, admin operations with the admin key; 401 / 403 / 429 as their own
exceptions, 429 retried after the server's Retry-After a bounded number of times."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from copur_client import (
    AdversaryControl,
    BadRequest,
    CopurClientError,
    Forbidden,
    FusionClient,
    GrpcFusionClient,
    RateLimited,
    Unauthorized,
    predict_command,
)
from copur_client.serde import predictions_to_proto
from copur_client.v1 import fusion_pb2_grpc


class Seen:
    def __init__(self) -> None:
        self.auth: list[str | None] = []
        self.script: list[tuple[int, dict[str, str]]] = []


def _answer(seen: Seen, request: Request, ok: Any) -> JSONResponse:
    seen.auth.append(request.headers.get("authorization"))
    if seen.script:
        status, headers = seen.script.pop(0)
        return JSONResponse(
            status_code=status, content={"detail": f"refused {status}"}, headers=headers
        )
    return JSONResponse(ok)


def _app(seen: Seen) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/predict")
    async def predict(request: Request) -> JSONResponse:
        return _answer(seen, request, {"predictions": []})

    @app.get("/v1/parties")
    async def parties(request: Request) -> JSONResponse:
        return _answer(seen, request, {"parties": []})

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        return _answer(seen, request, {"ready": True})

    @app.put("/v1/policy")
    async def policy(request: Request) -> JSONResponse:
        return _answer(seen, request, {"attack": "none", "params": {}})

    return app


class Servicer(fusion_pb2_grpc.FusionServiceServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.seen.auth.append(dict(context.invocation_metadata()).get("authorization"))
        if self.seen.script:
            code, trailing = self.seen.script.pop(0)
            context.set_trailing_metadata(tuple(trailing.items()))
            context.abort(
                grpc.StatusCode(code) if not isinstance(code, grpc.StatusCode) else code, "refused"
            )
        return predictions_to_proto([])


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Seen, str, str]]:
    seen = Seen()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    http = uvicorn.Server(
        uvicorn.Config(_app(seen), log_config=None, access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=http.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not http.started:
        time.sleep(0.01)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    fusion_pb2_grpc.add_FusionServiceServicer_to_server(Servicer(seen), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield seen, f"http://127.0.0.1:{sock.getsockname()[1]}", f"127.0.0.1:{port}"
    server.stop(None)
    http.should_exit = True
    thread.join(5)


@pytest.fixture
def stub(
    servers: tuple[Seen, str, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[Seen, str, str, list[float]]:
    seen = servers[0]
    seen.auth.clear()
    seen.script.clear()
    slept: list[float] = []
    monkeypatch.setattr("copur_client.retry.time.sleep", slept.append)
    monkeypatch.setattr("copur_client.retry.time.sleep", slept.append)
    return (*servers, slept)


def test_keys_are_sent_as_bearer_tokens_admin_operations_with_the_admin_key(stub: Any) -> None:
    # Prepare
    seen, url, _, _ = stub
    # Execute
    with FusionClient(url, api_key="p-key", admin_key="a-key") as client:
        client.predict([1])
        client.parties()
        client.ready()
    with AdversaryControl(url, api_key="a-key") as control:
        control.set_policy("none")
    # Assert: probes carry no key
    assert seen.auth == ["Bearer p-key", "Bearer a-key", None, "Bearer a-key"]


def test_keys_default_to_the_environment_and_an_empty_key_sends_none(
    stub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    seen, url, _, _ = stub
    monkeypatch.setenv("COPUR_API_KEY", "env-p")
    monkeypatch.setenv("COPUR_ADMIN_KEY", "env-a")
    # Execute
    with FusionClient(url) as client:
        client.predict([1])
        client.parties()
    with FusionClient(url, api_key="", admin_key="") as client:
        client.predict([1])
    with AdversaryControl(url) as control:
        control.set_policy("none")
    # Assert
    assert seen.auth == ["Bearer env-p", "Bearer env-a", None, "Bearer env-a"]


def test_an_admin_key_alone_serves_predictions_too(
    stub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    seen, url, _, _ = stub
    monkeypatch.delenv("COPUR_API_KEY", raising=False)
    # Execute
    with FusionClient(url, admin_key="a-key") as client:
        client.predict([1])
    # Assert
    assert seen.auth == ["Bearer a-key"]


@pytest.mark.parametrize(("status", "exc_type"), [(401, Unauthorized), (403, Forbidden)])
def test_401_and_403_are_their_own_one_line_errors_never_retried(
    stub: Any, status: int, exc_type: type
) -> None:
    # Prepare
    seen, url, _, slept = stub
    seen.script = [(status, {})] * 3
    # Execute
    with FusionClient(url, api_key="", retries=2) as client, pytest.raises(exc_type) as info:
        client.predict([1])
    # Assert
    assert isinstance(info.value, BadRequest) and info.value.status == status
    assert f"refused {status}" in str(info.value) and "\n" not in str(info.value)
    assert len(seen.auth) == 1 and slept == []
    if status == 401:
        assert "no API key was sent: pass one or set $COPUR_API_KEY" in str(info.value)


def test_a_429_is_retried_after_the_servers_retry_after(stub: Any) -> None:
    # Prepare
    seen, url, _, slept = stub
    seen.script = [(429, {"Retry-After": "3"}), (429, {"Retry-After": "1"})]
    # Execute
    with FusionClient(url, api_key="k") as client:
        client.predict([1])
    # Assert
    assert slept == [3.0, 1.0] and len(seen.auth) == 3


def test_429_retries_are_bounded_and_end_in_rate_limited(stub: Any) -> None:
    # Prepare
    seen, url, _, slept = stub
    seen.script = [(429, {"Retry-After": "2"})] * 5
    # Execute
    with (
        FusionClient(url, api_key="k", rate_retries=1) as client,
        pytest.raises(RateLimited) as info,
    ):
        client.predict([1])
    # Assert
    assert slept == [2.0] and len(seen.auth) == 2
    assert info.value.status == 429 and info.value.retry_after_s == 2.0


def test_grpc_sends_the_key_as_metadata_and_maps_auth_codes(
    stub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    seen, _, target, slept = stub
    monkeypatch.setenv("COPUR_API_KEY", "env-p")
    seen.script = [
        (grpc.StatusCode.UNAUTHENTICATED, {}),
        (grpc.StatusCode.PERMISSION_DENIED, {}),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, {"retry-after": "2"}),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, {}),
    ]
    # Execute
    with GrpcFusionClient(target, rate_retries=0) as client:
        errors = []
        for _ in range(4):
            with pytest.raises(CopurClientError) as info:
                client.predict([1])
            errors.append(info.value)
        client.predict([1])
    with GrpcFusionClient(target, api_key="explicit") as client:
        client.predict([1])
    # Assert
    assert [type(e).__name__ for e in errors] == [
        "Unauthorized",
        "Forbidden",
        "RateLimited",
        "BadRequest",
    ]
    assert [e.status for e in errors] == [401, 403, 429, 413]
    assert seen.auth == ["Bearer env-p"] * 5 + ["Bearer explicit"]
    assert slept == []


def test_grpc_rate_limit_is_retried_after_the_servers_wait(stub: Any) -> None:
    # Prepare
    seen, _, target, slept = stub
    seen.script = [(grpc.StatusCode.RESOURCE_EXHAUSTED, {"retry-after": "1"})]
    # Execute
    with GrpcFusionClient(target, api_key="k") as client:
        client.predict([1])
    # Assert
    assert slept == [1.0] and len(seen.auth) == 2


def test_predict_command_passes_the_key(stub: Any) -> None:
    # Prepare
    seen, url, target, _ = stub
    # Execute
    http_code, _ = predict_command(url, [1], None, False, True, None, api_key="cmd-key")
    grpc_code, _ = predict_command(url, [1], None, False, True, target, api_key="cmd-key")
    # Assert
    assert (http_code, grpc_code) == (0, 0)
    assert seen.auth == ["Bearer cmd-key", "Bearer cmd-key"]
