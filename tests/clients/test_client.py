"""The client library against real HTTP (uvicorn) and gRPC servers that imitate the fusion
center's boundary.

The stubs answer with the documented shapes and error bodies; the real cluster is tested end to
end elsewhere."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import asdict
from typing import Any

import grpc
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from clusterkit import free_ports
from copur_client import (
    AdversaryControl,
    BadRequest,
    CopurClientError,
    FusionClient,
    GrpcFusionClient,
    NotFound,
    ServerError,
    Timeout,
    Unavailable,
    predict_command,
    predictions_table,
)
from copur_client.serde import predict_request_from_proto, predictions_to_proto
from copur_client.v1 import fusion_pb2_grpc
from copur_client.wire import Certificate, Prediction

# Values exactly representable in float32, so the gRPC path (repeated float) round-trips them
# unchanged.
CLASS_NAMES = [f"digit-{k}" for k in range(10)]


def expected_prediction(
    sample_id: int, defense: str = "copur", certify: bool = False
) -> Prediction:
    label = sample_id % 10
    probs = [0.0625] * 10
    probs[label] = 0.4375
    cert = None
    if certify:
        cert = (
            Certificate(kind="vote", certified_parties=2, label=label)
            if sample_id % 2 == 0
            else Certificate(kind="smoothing", radius=0.25, label=label)
        )
    return Prediction(
        sample_id=sample_id,
        label=label,
        probabilities=probs,
        party_scores=[0.5, 2.75 if sample_id % 3 == 0 else 0.25, 0.125],
        flagged_parties=[1] if sample_id % 3 == 0 else [],
        missing_parties=[2] if sample_id % 5 == 0 else [],
        defense=defense,
        certificate=cert,
    )


class StubState:
    """What the stub servers answer next and what they were asked."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.script: list[
            tuple[int, Any]
        ] = []  # (status or grpc code, detail) answered before normal service
        self.calls: list[dict[str, Any]] = []
        self.delay_s = 0.0
        self.ready = True
        self.policy: dict[str, Any] = {
            "attack": "none",
            "params": {},
            "party": 1,
            "calls": 0,
            "corrupted": 0,
        }

    def answer(self, ids: list[int], defense: str | None, certify: bool) -> list[Prediction]:
        return [expected_prediction(i, defense or "copur", certify) for i in ids]


def stub_http_app(state: StubState) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/predict")
    async def predict(request: Request) -> JSONResponse:
        body = await request.json()
        state.calls.append(body)
        scripted = (
            state.script.pop(0) if state.script else None
        )  # taken before a delay outlives its test
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        if scripted:
            return JSONResponse(status_code=scripted[0], content={"detail": scripted[1]})
        preds = state.answer(body["sample_ids"], body.get("defense"), body.get("certify", False))
        return JSONResponse({"predictions": [asdict(p) for p in preds]})

    @app.get("/v1/parties")
    async def parties() -> dict[str, Any]:
        state.calls.append({"path": "/v1/parties"})
        party = {
            "index": 0,
            "name": "party-0",
            "address": "127.0.0.1:7000",
            "state": "up",
            "failures": 0,
        }
        return {
            "parties": [party | {"last_error": None, "recent_failures": 0, "flags": 3}],
            "min_parties": 2,
        }

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        return JSONResponse(status_code=200 if state.ready else 503, content={"ready": state.ready})

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            "# HELP copur_requests_total Requests.\ncopur_requests_total 7.0\n"
        )

    @app.get("/v1/policy")
    async def get_policy() -> dict[str, Any]:
        return state.policy

    @app.put("/v1/policy")
    async def put_policy(request: Request) -> JSONResponse:
        body = await request.json()
        state.calls.append(body)
        if body.get("attack") not in ("none", "gaussian", "pgd"):
            return JSONResponse(
                status_code=422, content={"detail": f"unknown attack '{body.get('attack')}'"}
            )
        state.policy = state.policy | {"attack": body["attack"], "params": body.get("params", {})}
        return JSONResponse(state.policy)

    return app


class StubFusionServicer(fusion_pb2_grpc.FusionServiceServicer):
    def __init__(self, state: StubState) -> None:
        self.state = state

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        ids, defense, certify = predict_request_from_proto(request)
        self.state.calls.append({"sample_ids": ids, "defense": defense, "certify": certify})
        scripted = self.state.script.pop(0) if self.state.script else None
        if self.state.delay_s:
            time.sleep(self.state.delay_s)
        if scripted:
            context.abort(*scripted)
        return predictions_to_proto(self.state.answer(ids, defense or None, certify))


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[StubState, str, str]]:
    """(state, HTTP base URL, gRPC target) of stub servers shared by the module's tests."""
    state = StubState()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    http = uvicorn.Server(
        uvicorn.Config(stub_http_app(state), log_config=None, access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=http.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not http.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert http.started, "stub HTTP server did not start"

    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    fusion_pb2_grpc.add_FusionServiceServicer_to_server(StubFusionServicer(state), grpc_server)
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    try:
        yield state, f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}"
    finally:
        grpc_server.stop(grace=None)
        http.should_exit = True
        thread.join(timeout=5)
        sock.close()


@pytest.fixture
def stub(servers: tuple[StubState, str, str]) -> Iterator[tuple[StubState, str, str]]:
    servers[0].reset()
    yield servers
    servers[0].reset()


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff sleeps of the HTTP client, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr("copur_client.retry.time.sleep", slept.append)
    return slept


# --- HTTP: predictions and reads
# ---------------------------------------------------------------------------


def test_predict_returns_the_servers_predictions_in_order(stub: tuple[StubState, str, str]) -> None:
    # Prepare
    state, url, _ = stub
    ids = [5, 2, 9, 30]
    # Execute
    with FusionClient(url) as client:
        preds = client.predict(ids, defense="vote", certify=True)
    # Assert
    assert preds == [expected_prediction(i, "vote", True) for i in ids]
    assert all(isinstance(p, Prediction) for p in preds)
    assert state.calls == [{"sample_ids": ids, "certify": True, "defense": "vote"}]


def test_predict_without_defense_leaves_it_to_the_server(stub: tuple[StubState, str, str]) -> None:
    # Prepare
    state, url, _ = stub
    # Execute
    with FusionClient(url) as client:
        preds = client.predict([3])
    # Assert
    assert "defense" not in state.calls[0]
    assert preds[0].certificate is None


def test_parties_ready_and_metrics(stub: tuple[StubState, str, str]) -> None:
    # Prepare
    state, url, _ = stub
    # Execute
    with FusionClient(url, retries=0) as client:
        parties = client.parties()
        ready = client.ready()
        state.ready = False
        not_ready = client.ready()
        metrics = client.metrics()
    # Assert
    assert [p["name"] for p in parties] == ["party-0"]
    assert parties[0]["flags"] == 3
    assert (ready, not_ready) == (True, False)
    assert "copur_requests_total 7.0" in metrics


# --- HTTP: errors and retries
# ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "detail", "exc_type", "shown"),
    [
        (400, "empty sample_ids", BadRequest, "empty sample_ids"),
        (404, "unknown sample ids: [99999]", NotFound, "unknown sample ids: [99999]"),
        (413, "3000 sample ids exceed the limit of 1024", BadRequest, "exceed the limit of 1024"),
        (
            422,
            "sample_ids[0]: Input should be a valid integer",
            BadRequest,
            "sample_ids[0]: Input should be a valid",
        ),
        (
            503,
            "2 of 4 parties answered (need 3): party-1, party-3 down",
            Unavailable,
            "party-1, party-3 down",
        ),
        (500, "internal error", ServerError, "internal error"),
    ],
)
def test_http_errors_map_to_exceptions_with_the_servers_detail(
    stub: tuple[StubState, str, str],
    no_sleep: list[float],
    status: int,
    detail: Any,
    exc_type: type[CopurClientError],
    shown: str,
) -> None:
    # Prepare
    state, url, _ = stub
    state.script = [(status, detail)] * 3  # enough to outlast the retries of a 503
    # Execute
    with FusionClient(url, retries=2) as client, pytest.raises(exc_type) as info:
        client.predict([1, 2])
    # Assert
    message = str(info.value)
    assert shown in message
    assert f"POST {url}/v1/predict" in message
    assert "\n" not in message
    assert info.value.status == status
    assert info.value.detail in message


def test_a_503_then_200_is_retried_and_succeeds(
    stub: tuple[StubState, str, str], no_sleep: list[float]
) -> None:
    # Prepare
    state, url, _ = stub
    state.script = [(503, "too few parties")]
    # Execute
    with FusionClient(url, retries=2, backoff_s=0.05) as client:
        preds = client.predict([7])
    # Assert
    assert preds == [expected_prediction(7)]
    assert len(state.calls) == 2
    assert no_sleep == [0.05]


def test_503_retries_are_bounded(stub: tuple[StubState, str, str], no_sleep: list[float]) -> None:
    # Prepare
    state, url, _ = stub
    state.script = [(503, "too few parties")] * 5
    # Execute
    with FusionClient(url, retries=2, backoff_s=0.1) as client, pytest.raises(Unavailable):
        client.predict([7])
    # Assert: three attempts, exponential backoff between them
    assert len(state.calls) == 3
    assert no_sleep == [0.1, 0.2]


@pytest.mark.parametrize("status", [400, 404, 422])
def test_4xx_is_not_retried(
    stub: tuple[StubState, str, str], no_sleep: list[float], status: int
) -> None:
    # Prepare
    state, url, _ = stub
    state.script = [(status, "refused")] * 3
    # Execute
    with FusionClient(url, retries=2) as client, pytest.raises(BadRequest):
        client.predict([1])
    # Assert
    assert len(state.calls) == 1
    assert no_sleep == []


def test_connection_refused_is_unavailable_after_retries(no_sleep: list[float]) -> None:
    # Prepare: a port nothing listens on
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    # Execute
    with FusionClient(url, retries=2, backoff_s=0.01) as client, pytest.raises(Unavailable) as info:
        client.predict([1])
    # Assert
    assert no_sleep == [0.01, 0.02]
    assert "cannot connect" in str(info.value)
    assert info.value.status is None
    with FusionClient(url, retries=0) as client:
        assert client.ready() is False


def test_slow_answer_is_a_timeout(stub: tuple[StubState, str, str]) -> None:
    # Prepare
    state, url, _ = stub
    state.delay_s = 0.5
    # Execute
    with FusionClient(url, timeout=0.1, retries=2) as client, pytest.raises(Timeout) as info:
        client.predict([1])
    # Assert: not retried
    assert f"POST {url}/v1/predict" in str(info.value)
    assert len(state.calls) == 1


# --- gRPC
# ------------------------------------------------------------------------------------------------


def test_grpc_predict_returns_the_servers_predictions_in_order(
    stub: tuple[StubState, str, str],
) -> None:
    # Prepare
    state, _, target = stub
    ids = [8, 1, 15]
    # Execute
    with GrpcFusionClient(target) as client:
        preds = client.predict(ids, defense="copur+rs", certify=True)
        default = client.predict([4])
    # Assert
    assert preds == [expected_prediction(i, "copur+rs", True) for i in ids]
    assert default == [expected_prediction(4)]
    assert state.calls[1] == {"sample_ids": [4], "defense": "", "certify": False}


@pytest.mark.parametrize(
    ("code", "exc_type", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, BadRequest, 400),
        (grpc.StatusCode.NOT_FOUND, NotFound, 404),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, BadRequest, 413),
        (grpc.StatusCode.UNAVAILABLE, Unavailable, 503),
        (grpc.StatusCode.INTERNAL, ServerError, 500),
    ],
)
def test_grpc_status_codes_map_to_exceptions(
    stub: tuple[StubState, str, str],
    code: grpc.StatusCode,
    exc_type: type[CopurClientError],
    status: int,
) -> None:
    # Prepare
    state, _, target = stub
    state.script = [(code, "the server's own words")]
    # Execute
    with GrpcFusionClient(target) as client, pytest.raises(exc_type) as info:
        client.predict([1])
    # Assert
    assert type(info.value) is exc_type
    assert info.value.status == status
    assert "the server's own words" in str(info.value)
    assert code.name in str(info.value)
    assert "FusionService/Predict" in str(info.value)


def test_grpc_deadline_is_a_timeout_and_refusal_is_unavailable(
    stub: tuple[StubState, str, str],
) -> None:
    # Prepare
    state, _, target = stub
    state.delay_s = 0.5
    # Execute / Assert
    with (
        GrpcFusionClient(target, timeout=0.1) as client,
        pytest.raises(Timeout, match="DEADLINE_EXCEEDED"),
    ):
        client.predict([1])
    with (
        GrpcFusionClient(f"127.0.0.1:{free_ports(1)[0]}", timeout=2) as client,
        pytest.raises(Unavailable),
    ):
        client.predict([1])


# --- adversary control
# -------------------------------------------------------------------------------------


def test_adversary_control_get_and_set(stub: tuple[StubState, str, str]) -> None:
    # Prepare
    state, url, _ = stub
    # Execute
    with AdversaryControl(url) as control:
        before = control.get_policy()
        after = control.set_policy("pgd", eps=0.5, steps=10, target=3)
        with pytest.raises(BadRequest) as info:
            control.set_policy("meteor")
    # Assert
    assert before["attack"] == "none"
    assert after["attack"] == "pgd"
    assert after["params"] == {"eps": 0.5, "steps": 10, "target": 3}
    assert state.calls[0] == {"attack": "pgd", "params": {"eps": 0.5, "steps": 10, "target": 3}}
    assert info.value.status == 422
    assert "unknown attack 'meteor'" in str(info.value)
    assert f"PUT {url}/v1/policy" in str(info.value)


# --- table and command
# -------------------------------------------------------------------------------------


def test_predictions_table_shows_ids_labels_and_flags() -> None:
    # Prepare
    preds = [expected_prediction(i, "copur", True) for i in (12, 7, 30)]
    # Execute
    text = predictions_table(preds, CLASS_NAMES)
    # Assert
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["sample", "label", "p"]
    assert len(lines) == 2 + len(preds) + 1
    row12, row7, row30 = lines[2:5]
    assert row12.split()[:3] == ["12", "2", "(digit-2)"]
    assert row7.split()[:3] == ["7", "7", "(digit-7)"]
    assert "0.438" in row7
    assert " 1 " in f" {row12} " and " 1 " in f" {row30} "  # flagged party 1
    assert "vote lying<=2 label=2" in row12 and "smoothing r=0.25 label=7" in row7
    assert "2.75" in row30 and " 2 " in f" {row30} "  # party score and missing party 2
    assert lines[-1].startswith("3 prediction(s), 2 with flagged parties")


def test_predict_command_prints_the_table_or_the_servers_json(
    stub: tuple[StubState, str, str],
) -> None:
    # Prepare
    _, url, target = stub
    ids = [4, 9]
    # Execute
    code_table, table = predict_command(url, ids, None, False, False, None)
    code_json, text = predict_command(url, ids, "vote", True, True, None)
    code_grpc, grpc_text = predict_command(url, ids, "vote", True, True, target)
    # Assert
    assert code_table == 0 and "4" in table.splitlines()[2]
    assert code_json == 0
    assert json.loads(text) == {
        "predictions": [asdict(expected_prediction(i, "vote", True)) for i in ids]
    }
    assert code_grpc == 0 and json.loads(grpc_text) == json.loads(text)


def test_predict_command_failure_is_exit_2_and_one_line(stub: tuple[StubState, str, str]) -> None:
    # Prepare
    state, url, _ = stub
    state.script = [(404, "unknown sample ids: [99999]")]
    # Execute
    code, text = predict_command(url, [99999], None, False, False, None)
    refused_code, refused = predict_command(
        f"http://127.0.0.1:{free_ports(1)[0]}", [1], None, False, True, None
    )
    # Assert
    assert code == 2
    assert text.startswith("error: ") and "\n" not in text
    assert "unknown sample ids: [99999]" in text
    assert refused_code == 2 and refused.startswith("error: ") and "cannot connect" in refused
