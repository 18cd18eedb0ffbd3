"""The bundle administration calls of :class:`FusionClient` against a real HTTP server (uvicorn)
that imitates the fusion center's admin API: method, quoted path, body and admin key of each
call, the status answer parsed, a malformed answer refused, a 409's detail kept (no retry), and
the activate call's longer timeout.

The stub records what it is asked and answers what a test scripts; the real fusion center is
tested end to end elsewhere."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from copur_client import (
    BadRequest,
    BundleRef,
    BundlesStatus,
    FusionClient,
    PartyBundles,
    ServerError,
    Timeout,
    Unavailable,
    bundles_status_from_json,
)

OLD, NEW = "eca5b1c2d3e4f506", "3fa2c1d0b9e8f7a6"
STATUS_JSON: dict[str, Any] = {
    "active": OLD,
    "held": [
        {"bundle_id": OLD, "path": "/bundle/mfeat"},
        {"bundle_id": NEW, "path": "/bundle/mfeat-next"},
    ],
    "history": [{"bundle_id": "0011223344556677", "path": "/bundle/first"}],
    "parties": [
        {"party": 0, "bundles": [OLD, NEW], "state": "up"},
        {"party": 1, "bundles": [OLD], "state": "down"},
    ],
    "min_parties": 2,  # a key this client does not know: ignored
}
STATUS = BundlesStatus(
    active=OLD,
    held=[BundleRef(OLD, "/bundle/mfeat"), BundleRef(NEW, "/bundle/mfeat-next")],
    history=[BundleRef("0011223344556677", "/bundle/first")],
    parties=[PartyBundles(0, [OLD, NEW], "up"), PartyBundles(1, [OLD], "down")],
)


@dataclass
class Call:
    method: str
    raw_path: str
    body: Any
    auth: str | None


@dataclass
class Stub:
    """What the stub answers next (``script``: status and JSON body, then the status JSON) and
    what it was asked."""

    calls: list[Call] = field(default_factory=list)
    script: list[tuple[int, Any]] = field(default_factory=list)
    delay_s: float = 0.0

    def reset(self) -> None:
        self.calls.clear()
        self.script.clear()
        self.delay_s = 0.0


def _app(stub: Stub) -> FastAPI:
    app = FastAPI()

    @app.api_route("/v1/admin/{rest:path}", methods=["GET", "POST", "DELETE"])
    async def admin(request: Request, rest: str) -> Response:
        raw = await request.body()
        stub.calls.append(
            Call(
                method=request.method,
                raw_path=request.scope["raw_path"].decode(),
                body=await request.json() if raw else None,
                auth=request.headers.get("authorization"),
            )
        )
        scripted = stub.script.pop(0) if stub.script else None
        if stub.delay_s:
            await asyncio.sleep(stub.delay_s)
        if scripted is not None:
            return JSONResponse(status_code=scripted[0], content=scripted[1])
        return JSONResponse(STATUS_JSON)

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Stub, str]]:
    stub = Stub()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    http = uvicorn.Server(
        uvicorn.Config(_app(stub), log_config=None, access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=http.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not http.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert http.started, "stub HTTP server did not start"
    try:
        yield stub, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        http.should_exit = True
        thread.join(timeout=5)
        sock.close()


@pytest.fixture
def stub(server: tuple[Stub, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stub, str]]:
    monkeypatch.setattr("copur_client.retry.time.sleep", lambda _s: None)  # no backoff waits
    server[0].reset()
    yield server
    server[0].reset()


CALLS: list[tuple[str, Callable[[FusionClient], BundlesStatus], str, str, Any]] = [
    ("bundles", lambda c: c.bundles(), "GET", "/v1/admin/bundles", None),
    (
        "load_bundle",
        lambda c: c.load_bundle("/bundle/mfeat-next"),
        "POST",
        "/v1/admin/bundles",
        {"path": "/bundle/mfeat-next"},
    ),
    (
        "activate_bundle",
        lambda c: c.activate_bundle(NEW, quorum=2, wait_s=1.5),
        "POST",
        f"/v1/admin/bundles/{NEW}/activate",
        {"quorum": 2, "wait_s": 1.5},
    ),
    (
        "activate_bundle defaults",
        lambda c: c.activate_bundle(NEW),
        "POST",
        f"/v1/admin/bundles/{NEW}/activate",
        {"quorum": 0, "wait_s": 10.0},
    ),
    ("drop_bundle", lambda c: c.drop_bundle(NEW), "DELETE", f"/v1/admin/bundles/{NEW}", None),
    (
        "load_party_bundle",
        lambda c: c.load_party_bundle(3, "/bundle/mfeat-next"),
        "POST",
        "/v1/admin/parties/3/bundles",
        {"path": "/bundle/mfeat-next"},
    ),
    (
        "drop_party_bundle",
        lambda c: c.drop_party_bundle(3, OLD),
        "DELETE",
        f"/v1/admin/parties/3/bundles/{OLD}",
        None,
    ),
]


@pytest.mark.parametrize(
    ("name", "call", "method", "path", "body"), CALLS, ids=[c[0] for c in CALLS]
)
def test_each_call_sends_its_method_path_body_and_admin_key_and_parses_the_status(
    stub: tuple[Stub, str],
    name: str,
    call: Callable[[FusionClient], BundlesStatus],
    method: str,
    path: str,
    body: Any,
) -> None:
    # Prepare
    seen, url = stub
    # Execute
    with FusionClient(url, api_key="p-key", admin_key="a-key") as client:
        status = call(client)
    # Assert
    assert seen.calls == [Call(method, path, body, "Bearer a-key")]
    assert status == STATUS


def test_the_admin_key_defaults_to_the_environment(
    stub: tuple[Stub, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    seen, url = stub
    monkeypatch.setenv("COPUR_ADMIN_KEY", "env-admin")
    monkeypatch.delenv("COPUR_API_KEY", raising=False)
    # Execute
    with FusionClient(url) as client:
        client.bundles()
    # Assert
    assert [c.auth for c in seen.calls] == ["Bearer env-admin"]


def test_path_segments_are_quoted(stub: tuple[Stub, str]) -> None:
    # Prepare
    seen, url = stub
    odd = "a/b c?d#e%"
    # Execute
    with FusionClient(url, admin_key="k") as client:
        client.activate_bundle(odd)
        client.drop_bundle(odd)
        client.drop_party_bundle(0, odd)
    # Assert: one segment each, nothing left for the server to misread
    quoted = "a%2Fb%20c%3Fd%23e%25"
    assert [c.raw_path for c in seen.calls] == [
        f"/v1/admin/bundles/{quoted}/activate",
        f"/v1/admin/bundles/{quoted}",
        f"/v1/admin/parties/0/bundles/{quoted}",
    ]


@pytest.mark.parametrize(
    "answer",
    [
        [],
        {"held": [], "history": [], "parties": []},
        STATUS_JSON | {"active": 7},
        STATUS_JSON | {"held": {"bundle_id": OLD, "path": "/b"}},
        STATUS_JSON | {"held": [{"bundle_id": OLD}]},
        STATUS_JSON | {"history": ["/bundle/first"]},
        STATUS_JSON | {"parties": [{"party": "0", "bundles": [OLD], "state": "up"}]},
        STATUS_JSON | {"parties": [{"party": True, "bundles": [OLD], "state": "up"}]},
        STATUS_JSON | {"parties": [{"party": 0, "bundles": [1], "state": "up"}]},
        STATUS_JSON | {"parties": [{"party": 0, "bundles": [OLD]}]},
    ],
    ids=[
        "list",
        "no-active",
        "active-int",
        "held-object",
        "ref-no-path",
        "history-strings",
        "party-str",
        "party-bool",
        "bundle-int",
        "no-state",
    ],
)
def test_a_malformed_status_is_a_server_error(stub: tuple[Stub, str], answer: Any) -> None:
    # Prepare
    seen, url = stub
    seen.script = [(200, answer)]
    # Execute
    with FusionClient(url, admin_key="k") as client, pytest.raises(ServerError) as info:
        client.bundles()
    # Assert
    message = str(info.value)
    assert f"GET {url}/v1/admin/bundles" in message
    assert "malformed bundles status" in message
    assert "\n" not in message


def test_a_non_json_answer_is_a_server_error(stub: tuple[Stub, str]) -> None:
    # Prepare
    seen, url = stub
    seen.script = [(200, None)]  # JSON null: an answer, but no status
    # Execute
    with FusionClient(url, admin_key="k") as client, pytest.raises(ServerError):
        client.load_bundle("/bundle/x")
    # Assert
    assert len(seen.calls) == 1


def test_bundles_status_from_json_round_trips_and_names_the_bad_field() -> None:
    # Prepare
    bad = STATUS_JSON | {"parties": [{"party": 0, "bundles": [OLD], "state": None}]}
    # Execute
    parsed = bundles_status_from_json(STATUS_JSON)
    with pytest.raises(ServerError) as info:
        bundles_status_from_json(bad, endpoint="GET x")
    # Assert
    assert parsed == STATUS
    assert "status.parties[0].state" in str(info.value)
    assert str(info.value).startswith("GET x -> 200")


def test_a_409_keeps_the_servers_detail_and_is_not_retried(stub: tuple[Stub, str]) -> None:
    # Prepare
    seen, url = stub
    detail = f"bundle {NEW}: only 2 of 4 parties serve it (need 4)"
    seen.script = [(409, {"detail": detail})] * 3
    # Execute
    with FusionClient(url, admin_key="k", retries=2) as client, pytest.raises(BadRequest) as info:
        client.activate_bundle(NEW, wait_s=0.0)
    # Assert
    assert info.value.status == 409
    assert info.value.detail == detail
    assert detail in str(info.value)
    assert len(seen.calls) == 1


def test_a_503_of_a_relayed_call_is_retried_then_unavailable(stub: tuple[Stub, str]) -> None:
    # Prepare
    seen, url = stub
    seen.script = [(503, {"detail": "party 2 cannot be reached"})] * 3
    # Execute
    with FusionClient(url, admin_key="k", retries=1) as client:
        with pytest.raises(Unavailable) as info:
            client.load_party_bundle(2, "/bundle/x")
        recovered = client.load_party_bundle(2, "/bundle/x")
    # Assert: two attempts for the first call, the third answer 503 then the status
    assert "party 2 cannot be reached" in str(info.value)
    assert recovered == STATUS
    assert len(seen.calls) == 4


def test_activate_may_take_wait_s_beyond_the_clients_timeout(stub: tuple[Stub, str]) -> None:
    # Prepare: every answer comes after 0.5 s; the client's timeout is 0.25 s
    seen, url = stub
    seen.delay_s = 0.5
    # Execute
    with FusionClient(url, admin_key="k", timeout=0.25, retries=0) as client:
        switched = client.activate_bundle(NEW, wait_s=1.0)
        with pytest.raises(Timeout):
            client.bundles()
    # Assert
    assert switched == STATUS
    assert len(seen.calls) == 2


def test_negative_quorum_or_wait_is_refused_before_sending(stub: tuple[Stub, str]) -> None:
    # Prepare
    seen, url = stub
    # Execute
    with FusionClient(url, admin_key="k") as client:
        with pytest.raises(ValueError, match="quorum"):
            client.activate_bundle(NEW, quorum=-1)
        with pytest.raises(ValueError, match="wait_s"):
            client.activate_bundle(NEW, wait_s=-1.0)
    # Assert
    assert seen.calls == []
