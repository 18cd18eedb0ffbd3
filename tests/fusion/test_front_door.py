"""The fusion center's front doors against a real handler over real parties: API keys (401 / 403
/ 429), open probes, OpenAPI's bearer scheme, every kind of bad input a 4xx with a one-line
detail, the body limit, and the gRPC door's ``authorization`` metadata."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from copur.science.defenses import DEFENSES
from copur.transport.auth import add_key, dev_key, init_keys
from copur_client.serde import predict_request_to_proto, predictions_from_proto
from copur_client.v1 import fusion_pb2_grpc
from frontdoor import FrontDoor, serve_front_door

MAX_BODY = 4096
MAX_IDS = 50


class Keys:
    def __init__(self, directory: Path) -> None:
        self.file = init_keys(directory).keys_file
        self.predict = dev_key(self.file, "predict")
        self.admin = dev_key(self.file, "admin")
        self.throttled_http = add_key(self.file, "throttled-http", "predict", rate_per_s=2)
        self.throttled_grpc = add_key(self.file, "throttled-grpc", "predict", rate_per_s=2)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("front-door-keys"))


@pytest.fixture(scope="module")
def door(mfeat_bundle_dir: Path, keys: Keys) -> Iterator[FrontDoor]:
    with serve_front_door(
        mfeat_bundle_dir, keys_file=keys.file, max_body_bytes=MAX_BODY, max_request_ids=MAX_IDS
    ) as running:
        yield running


def _bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _predict(door: FrontDoor, key: str | None, body: Any = None, **kwargs: Any) -> httpx.Response:
    headers = {**(_bearer(key) if key else {}), **kwargs.pop("headers", {})}
    if body is None and "content" not in kwargs:
        body = {"sample_ids": [1, 2], "defense": "none"}
    if body is not None:
        kwargs["json"] = body
    return httpx.post(f"{door.url}/v1/predict", headers=headers, timeout=60, **kwargs)


def _detail(response: httpx.Response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail, response.text
    return detail


# --- keys and scopes
# ---------------------------------------------------------------------------------------


def test_predict_without_a_key_is_401_and_asks_for_a_bearer_token(door: FrontDoor) -> None:
    # Execute
    response = _predict(door, None)
    # Assert
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in _detail(response)


@pytest.mark.parametrize(
    "authorization", ["Bearer not-a-key", "Bearer", "Basic dXNlcjpwYXNz", "not-a-key"]
)
def test_a_wrong_or_malformed_key_is_401(door: FrontDoor, authorization: str) -> None:
    # Execute
    response = _predict(door, None, headers={"Authorization": authorization})
    # Assert
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    _detail(response)


def test_the_key_is_checked_before_the_body_is_read(door: FrontDoor) -> None:
    # Execute: malformed JSON of the wrong media type, oversized, without a key
    response = _predict(
        door, None, content=b"{" * (2 * MAX_BODY), headers={"Content-Type": "text/plain"}
    )
    # Assert
    assert response.status_code == 401


def test_a_predict_key_predicts_but_may_not_read_the_parties(door: FrontDoor, keys: Keys) -> None:
    # Execute
    predicted = _predict(door, keys.predict)
    parties = httpx.get(f"{door.url}/v1/parties", headers=_bearer(keys.predict), timeout=10)
    # Assert
    assert predicted.status_code == 200, predicted.text
    assert [p["sample_id"] for p in predicted.json()["predictions"]] == [1, 2]
    assert parties.status_code == 403
    assert _detail(parties) == "API key 'predict' lacks the 'admin' scope"


def test_the_admin_key_reads_the_parties_and_predicts(door: FrontDoor, keys: Keys) -> None:
    # Execute
    parties = httpx.get(f"{door.url}/v1/parties", headers=_bearer(keys.admin), timeout=10)
    predicted = _predict(door, keys.admin)
    anonymous = httpx.get(f"{door.url}/v1/parties", timeout=10)
    # Assert
    assert parties.status_code == 200 and len(parties.json()["parties"]) == 6
    assert predicted.status_code == 200
    assert anonymous.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"])
def test_probes_metrics_and_docs_stay_open(door: FrontDoor, path: str) -> None:
    # Execute
    response = httpx.get(f"{door.url}{path}", timeout=10)
    # Assert
    assert response.status_code == 200


def test_openapi_documents_the_bearer_scheme_on_the_guarded_operations_only(
    door: FrontDoor,
) -> None:
    # Execute
    spec = httpx.get(f"{door.url}/openapi.json", timeout=10).json()
    # Assert
    schemes = spec["components"]["securitySchemes"]
    assert schemes == {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": schemes["apiKey"]["description"],
        }
    }
    assert spec["paths"]["/v1/predict"]["post"]["security"] == [{"apiKey": []}]
    assert spec["paths"]["/v1/parties"]["get"]["security"] == [{"apiKey": []}]
    assert all(
        "security" not in spec["paths"][p]["get"] for p in ("/healthz", "/readyz", "/metrics")
    )
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert body["required"] == ["sample_ids"]
    assert {"401", "403", "413", "415", "422", "429"} <= set(
        spec["paths"]["/v1/predict"]["post"]["responses"]
    )


def test_over_its_rate_a_key_gets_429_with_retry_after_then_recovers(
    door: FrontDoor, keys: Keys
) -> None:
    # Prepare: rate 2/s, burst 4; cheap requests (refused for their media type after the key check)
    def send() -> httpx.Response:
        return _predict(
            door, keys.throttled_http, content=b"x", headers={"Content-Type": "text/plain"}
        )

    # Execute
    burst = [send() for _ in range(5)]
    wait = int(burst[-1].headers.get("retry-after", "0"))
    time.sleep(wait)
    after = send()
    # Assert
    assert [r.status_code for r in burst] == [415, 415, 415, 415, 429]
    assert wait == 1
    assert "over its rate of 2 requests/s" in _detail(burst[-1])
    assert after.status_code == 415


# --- bad input
# -------------------------------------------------------------------------------------------

JSON = {"Content-Type": "application/json"}
BAD_INPUT = [
    ("malformed JSON", b'{"sample_ids": [1, 2', JSON, 400, "malformed JSON body"),
    ("empty body", b"", JSON, 400, "request body is empty"),
    ("deep nesting", b"[" * 2000 + b"]" * 2000, JSON, 400, "malformed JSON body"),
    ("not UTF-8", b'{"sample_ids": [1], "defense": "\xff"}', JSON, 400, "malformed JSON body"),
    (
        "wrong type in list",
        b'{"sample_ids": [1, "2"]}',
        JSON,
        422,
        "sample_ids[1]: Input should be a valid integer",
    ),
    (
        "bool as id",
        b'{"sample_ids": [true]}',
        JSON,
        422,
        "sample_ids[0]: Input should be a valid integer",
    ),
    (
        "ids not a list",
        b'{"sample_ids": "1"}',
        JSON,
        422,
        "sample_ids: Input should be a valid list",
    ),
    ("missing ids", b'{"defense": "none"}', JSON, 422, "sample_ids: Field required"),
    (
        "extra field",
        b'{"sample_ids": [1], "colour": 1}',
        JSON,
        422,
        "colour: Extra inputs are not permitted",
    ),
    ("not an object", b"[1, 2]", JSON, 422, "Input should be a valid dictionary"),
    (
        "certify not bool",
        b'{"sample_ids": [1], "certify": "yes"}',
        JSON,
        422,
        "certify: Input should be a valid",
    ),
    ("empty ids", b'{"sample_ids": []}', JSON, 400, "sample_ids is empty"),
    ("duplicate ids", b'{"sample_ids": [4, 7, 4, 9, 7]}', JSON, 400, "duplicate sample ids: 4, 7"),
    ("unknown ids", b'{"sample_ids": [1, 99999, -3]}', JSON, 404, "unknown sample ids: 99999, -3"),
    (
        "unknown defense",
        b'{"sample_ids": [1], "defense": "magic\\nwand"}',
        JSON,
        400,
        "unknown defense 'magic\\nwand'",
    ),
    (
        "too many ids",
        f'{{"sample_ids": {list(range(MAX_IDS + 1))}}}'.encode(),
        JSON,
        413,
        "the limit is 50",
    ),
    (
        "text/plain",
        b'{"sample_ids": [1]}',
        {"Content-Type": "text/plain"},
        415,
        "must be application/json",
    ),
    (
        "form",
        b"sample_ids=1",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "must be application/json",
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "text"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_is_a_4xx_with_a_one_line_detail(
    door: FrontDoor, keys: Keys, body: bytes, headers: dict[str, str], status: int, text: str
) -> None:
    # Execute
    response = _predict(door, keys.predict, content=body, headers=headers)
    # Assert
    assert response.status_code == status, response.text
    assert text in _detail(response)


def test_the_unknown_defense_detail_names_the_known_ones(door: FrontDoor, keys: Keys) -> None:
    # Execute
    response = _predict(door, keys.predict, {"sample_ids": [1], "defense": "magic"})
    # Assert
    assert response.status_code == 400
    assert _detail(response) == f"unknown defense 'magic' (known: {', '.join(DEFENSES)})"


def test_a_missing_content_type_is_415(door: FrontDoor, keys: Keys) -> None:
    # Execute: httpx sends raw bytes without a Content-Type
    response = httpx.post(
        f"{door.url}/v1/predict", content=b'{"sample_ids": [1]}', headers=_bearer(keys.predict)
    )
    # Assert
    assert response.status_code == 415
    assert "not missing" in _detail(response)


def test_an_oversized_body_is_413_by_its_declared_length(door: FrontDoor, keys: Keys) -> None:
    # Prepare: valid JSON, one byte over the limit
    body = b'{"sample_ids": [1], "defense": "' + b"a" * MAX_BODY + b'"}'
    # Execute
    response = _predict(door, keys.predict, content=body, headers=JSON)
    # Assert
    assert response.status_code == 413
    assert (
        _detail(response)
        == f"request body of {len(body)} bytes exceeds the limit of {MAX_BODY} bytes"
    )


def test_an_oversized_chunked_body_is_413_without_reading_it_all(
    door: FrontDoor, keys: Keys
) -> None:
    # Prepare: no Content-Length (chunked), far more than the limit
    sent = []

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            sent.append(1)
            yield b" " * 1024

    # Execute
    response = _predict(door, keys.predict, content=chunks(), headers=JSON)
    # Assert
    assert response.status_code == 413
    assert _detail(response) == f"request body exceeds the limit of {MAX_BODY} bytes"


# --- gRPC
# ------------------------------------------------------------------------------------------------


def _grpc_predict(door: FrontDoor, metadata: tuple[tuple[str, str], ...]) -> Any:
    with grpc.insecure_channel(door.grpc) as channel:
        stub = fusion_pb2_grpc.FusionServiceStub(channel)
        return stub.Predict(
            predict_request_to_proto([3, 5], "none", False), timeout=30, metadata=metadata
        )


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer not-a-key"),), (("authorization", "Basic x"),)],
    ids=str,
)
def test_grpc_predict_without_a_valid_key_is_unauthenticated(
    door: FrontDoor, metadata: tuple
) -> None:
    # Execute
    with pytest.raises(grpc.RpcError) as caught:
        _grpc_predict(door, metadata)
    # Assert
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "API key" in caught.value.details() or "Bearer" in caught.value.details()


def test_grpc_predict_with_a_predict_key_answers_and_health_stays_open(
    door: FrontDoor, keys: Keys
) -> None:
    # Execute
    reply = _grpc_predict(door, (("authorization", f"Bearer {keys.predict}"),))
    with grpc.insecure_channel(door.grpc) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    # Assert
    assert [p.sample_id for p in predictions_from_proto(reply)] == [3, 5]
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_over_the_rate_is_resource_exhausted_with_retry_after(
    door: FrontDoor, keys: Keys
) -> None:
    # Prepare
    metadata = (("authorization", f"Bearer {keys.throttled_grpc}"),)
    # Execute: burst 4 spent, the fifth refused
    for _ in range(4):
        _grpc_predict(door, metadata)
    with pytest.raises(grpc.RpcError) as caught:
        _grpc_predict(door, metadata)
    # Assert
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(caught.value.trailing_metadata())["retry-after"] == "1"
