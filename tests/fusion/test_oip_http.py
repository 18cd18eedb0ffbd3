"""The Open Inference Protocol v2 over HTTP (``/v2``) against a real fusion center over real
parties, spoken by a client nobody here wrote (``tritonclient.http``): open probes, metadata
behind the ``predict`` key, inference with binary and JSON tensors giving what ``/v1/predict``
gives, certificates, requested outputs, and every refusal as the protocol's ``{"error": ...}``
with the status of the one mapping. Raw ``httpx`` for what tritonclient cannot send (broken
binary framing, wrong media types, bodies over the limit)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as th
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from copur.roles.fusion.oip import bundle_version
from copur.science.bundle import Bundle
from copur.science.defenses import DEFENSES
from frontdoor import FrontDoor, serve_front_door

MAX_IDS = 50
MAX_BODY = 16_384
IDS = [3, 250, 517, 1200, 1999]
HEADER = "Inference-Header-Content-Length"
INFER = "/v2/models/copur/infer"


@pytest.fixture(scope="module")
def door(mfeat_bundle_dir: Path, api_keys: Any) -> Iterator[FrontDoor]:
    with serve_front_door(
        mfeat_bundle_dir,
        keys_file=api_keys.keys_file,
        max_request_ids=MAX_IDS,
        max_body_bytes=MAX_BODY,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def triton(door: FrontDoor) -> Iterator[th.InferenceServerClient]:
    client = th.InferenceServerClient(door.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def key(api_keys: Any) -> Callable[[], dict[str, str]]:
    """The predict key as tritonclient sends headers: a new dict per call, since
    ``tritonclient.http`` writes its ``Inference-Header-Content-Length`` into the dict it is
    given (a reused dict carries a stale length into the next call)."""
    return lambda: {"authorization": api_keys.headers("predict")["Authorization"]}


def _v1(door: FrontDoor, api_keys: Any, ids: list[int], **body: Any) -> httpx.Response:
    return httpx.post(
        f"{door.url}/v1/predict",
        json={"sample_ids": ids, **body},
        headers=api_keys.headers("predict"),
        timeout=120,
    )


def _input(
    ids: list[int] | np.ndarray, *, binary: bool = True, datatype: str = "INT64", shape: Any = None
) -> th.InferInput:
    array = np.asarray(ids).astype(th.triton_to_np_dtype(datatype))
    if shape is not None:
        array = array.reshape(shape)
    tensor = th.InferInput("sample_ids", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def _outputs(names: list[str], *, binary: bool) -> list[th.InferRequestedOutput]:
    return [th.InferRequestedOutput(name, binary_data=binary) for name in names]


def _masks(predictions: list[dict[str, Any]], key: str) -> np.ndarray:
    out = np.zeros((len(predictions), 6), dtype=bool)
    for row, p in enumerate(predictions):
        out[row, p[key]] = True
    return out


def _error(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"], response.text
    return str(body["error"])


# --- probes and metadata
# --------------------------------------------------------------------------------------------------


def test_probes_are_open_and_say_ready(door: FrontDoor, mfeat_bundle: Bundle) -> None:
    # Prepare: a client without a key
    client = th.InferenceServerClient(door.url.removeprefix("http://"))
    version = bundle_version(mfeat_bundle.manifest)
    # Execute / Assert
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("copur") and client.is_model_ready("copur", version)
    assert not client.is_model_ready("resnet")
    assert httpx.get(f"{door.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{door.url}/v2/health/ready").json() == {"ready": True}
    ready = httpx.get(f"{door.url}/v2/models/copur/ready")
    assert (ready.status_code, ready.json()) == (200, {"name": "copur", "ready": True})
    client.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/resnet/ready"),
        ("GET", "/v2/models/resnet"),
        ("POST", "/v2/models/resnet/infer"),
        ("GET", "/v2/models/resnet/versions/1"),
    ],
)
def test_an_unknown_model_is_404_with_the_protocols_error_object(
    door: FrontDoor, api_keys: Any, method: str, path: str
) -> None:
    # Execute
    response = httpx.request(
        method,
        f"{door.url}{path}",
        headers=api_keys.headers("predict"),
        json={"inputs": []} if method == "POST" else None,
    )
    # Assert
    assert response.status_code == 404
    assert _error(response) == "unknown model 'resnet' (served: 'copur')"


def test_server_metadata_needs_a_key(
    triton: th.InferenceServerClient, key: Callable[[], dict[str, str]]
) -> None:
    # Execute
    with pytest.raises(InferenceServerException) as refused:
        triton.get_server_metadata()
    meta = triton.get_server_metadata(headers=key())
    # Assert
    assert refused.value.status() == "401"
    assert "missing API key" in str(refused.value.message())
    assert meta["name"] == "copur-fusion"
    assert meta["extensions"] == ["binary_tensor_data", "parameters"]


def test_model_metadata_lists_inputs_outputs_and_the_bundles_version(
    triton: th.InferenceServerClient, key: Callable[[], dict[str, str]], mfeat_bundle: Bundle
) -> None:
    # Prepare
    version = bundle_version(mfeat_bundle.manifest)
    # Execute
    meta = triton.get_model_metadata("copur", headers=key())
    versioned = triton.get_model_metadata("copur", model_version=version, headers=key())
    with pytest.raises(InferenceServerException) as wrong:
        triton.get_model_metadata("copur", model_version="7", headers=key())
    # Assert
    assert meta == versioned
    assert (meta["name"], meta["versions"], meta["platform"]) == (
        "copur",
        [version],
        "copur-fusion",
    )
    assert meta["inputs"] == [{"name": "sample_ids", "datatype": "INT64", "shape": [-1]}]
    shapes = {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]}
    assert shapes == {
        "label": ("INT64", [-1]),
        "probabilities": ("FP32", [-1, 10]),
        "party_scores": ("FP32", [-1, 6]),
        "flagged": ("BOOL", [-1, 6]),
        "missing": ("BOOL", [-1, 6]),
        "certified_parties": ("INT64", [-1]),
        "certificate_radius": ("FP32", [-1]),
        "certificate_label": ("INT64", [-1]),
    }
    assert wrong.value.status() == "404"
    assert wrong.value.message() == f"model 'copur' has no version '7' (served: '{version}')"


# --- inference
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary_out", [True, False], ids=["binary outputs", "json outputs"])
@pytest.mark.parametrize("binary_in", [True, False], ids=["binary input", "json input"])
def test_infer_answers_what_v1_predict_answers(
    door: FrontDoor,
    api_keys: Any,
    triton: th.InferenceServerClient,
    key: Callable[[], dict[str, str]],
    binary_in: bool,
    binary_out: bool,
) -> None:
    # Prepare
    want = _v1(door, api_keys, IDS).json()["predictions"]
    outputs = (
        None
        if binary_out
        else _outputs(
            ["label", "probabilities", "party_scores", "flagged", "missing"], binary=False
        )
    )
    # Execute
    result = triton.infer(
        "copur", [_input(IDS, binary=binary_in)], outputs=outputs, request_id="r-1", headers=key()
    )
    # Assert
    response = result.get_response()
    sizes = [o.get("parameters", {}).get("binary_data_size") for o in response["outputs"]]
    assert all(sizes) if binary_out else not any(sizes)
    assert (response["id"], response["parameters"]) == ("r-1", {"defense": "copur"})
    assert result.as_numpy("label").tolist() == [p["label"] for p in want]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(IDS), 10)
    np.testing.assert_allclose(probabilities, [p["probabilities"] for p in want], atol=1e-6)
    np.testing.assert_allclose(
        result.as_numpy("party_scores"), [p["party_scores"] for p in want], atol=1e-5
    )
    np.testing.assert_array_equal(result.as_numpy("flagged"), _masks(want, "flagged_parties"))
    np.testing.assert_array_equal(result.as_numpy("missing"), _masks(want, "missing_parties"))


def test_the_versioned_infer_route_answers_the_same(
    triton: th.InferenceServerClient, key: Callable[[], Any], mfeat_bundle: Bundle
) -> None:
    # Execute
    plain = triton.infer("copur", [_input(IDS)], headers=key())
    versioned = triton.infer(
        "copur",
        [_input(IDS)],
        model_version=bundle_version(mfeat_bundle.manifest),
        headers=key(),
    )
    with pytest.raises(InferenceServerException) as wrong:
        triton.infer("copur", [_input(IDS)], model_version="7", headers=key())
    # Assert
    assert versioned.as_numpy("label").tolist() == plain.as_numpy("label").tolist()
    assert wrong.value.status() == "404"
    assert wrong.value.message().startswith("model 'copur' has no version '7'")


def test_certify_answers_the_vote_certificate_of_v1(
    door: FrontDoor,
    api_keys: Any,
    triton: th.InferenceServerClient,
    key: Callable[[], dict[str, str]],
) -> None:
    # Prepare
    want = _v1(door, api_keys, IDS, defense="vote", certify=True).json()["predictions"]
    # Execute
    result = triton.infer(
        "copur", [_input(IDS)], parameters={"defense": "vote", "certify": True}, headers=key()
    )
    # Assert
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names[-3:] == ["certified_parties", "certificate_radius", "certificate_label"]
    assert result.get_response()["parameters"] == {"defense": "vote", "certificate": "vote"}
    assert result.as_numpy("label").tolist() == [p["label"] for p in want]
    assert result.as_numpy("certified_parties").tolist() == [
        p["certificate"]["certified_parties"] for p in want
    ]
    assert result.as_numpy("certificate_label").tolist() == [
        p["certificate"]["label"] for p in want
    ]
    assert result.as_numpy("certificate_radius").tolist() == [0.0] * len(IDS)


def test_only_the_requested_outputs_come_back_in_the_requested_order(
    triton: th.InferenceServerClient, key: Callable[[], dict[str, str]]
) -> None:
    # Execute
    result = triton.infer(
        "copur",
        [_input(IDS)],
        outputs=[
            th.InferRequestedOutput("missing"),
            th.InferRequestedOutput("label", binary_data=False),
        ],
        headers=key(),
    )
    # Assert
    outputs = result.get_response()["outputs"]
    assert [o["name"] for o in outputs] == ["missing", "label"]
    assert "data" in outputs[1] and "data" not in outputs[0]
    assert result.as_numpy("probabilities") is None
    assert result.as_numpy("missing").shape == (len(IDS), 6)


def test_naming_a_certificate_output_certifies(
    door: FrontDoor, api_keys: Any, triton: th.InferenceServerClient, key: Callable[[], Any]
) -> None:
    # Prepare
    want = _v1(door, api_keys, IDS, defense="vote", certify=True).json()["predictions"]
    # Execute: no `certify` parameter, one certificate output named
    result = triton.infer(
        "copur",
        [_input(IDS)],
        outputs=[th.InferRequestedOutput("certified_parties")],
        parameters={"defense": "vote"},
        headers=key(),
    )
    # Assert
    assert [o["name"] for o in result.get_response()["outputs"]] == ["certified_parties"]
    assert result.get_response()["parameters"] == {"defense": "vote", "certificate": "vote"}
    assert result.as_numpy("certified_parties").tolist() == [
        p["certificate"]["certified_parties"] for p in want
    ]


BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    "wrong datatype": (
        {"inputs": [_input(IDS, datatype="FP32")]},
        "400",
        "input 'sample_ids': datatype 'FP32' is not INT64",
    ),
    "unknown model": ({"model_name": "resnet"}, "404", "unknown model 'resnet' (served: 'copur')"),
    "unknown ids": (
        {"inputs": [_input([1, 99_999])]},
        "404",
        "unknown sample ids: 99999 (known: 0..1999)",
    ),
    "empty ids": ({"inputs": [_input([])]}, "400", "sample_ids is empty"),
    "column of ids": (
        {"inputs": [_input(IDS, shape=(len(IDS), 1))]},
        "400",
        "input 'sample_ids': shape [5, 1] is not [N]",
    ),
    "too many ids": (
        {"inputs": [_input(list(range(MAX_IDS + 1)))]},
        "413",
        f"{MAX_IDS + 1} sample ids in one request; the limit is {MAX_IDS}",
    ),
    "unknown output": (
        {"outputs": [th.InferRequestedOutput("logits")]},
        "400",
        "unknown output 'logits' (known: label, probabilities, party_scores, flagged, missing, "
        "certified_parties, certificate_radius, certificate_label)",
    ),
    "certify as a string": (
        {"parameters": {"certify": "yes"}},
        "400",
        "request parameter 'certify' must be a bool, not str",
    ),
    "unknown defense": (
        {"parameters": {"defense": "magic"}},
        "400",
        f"unknown defense 'magic' (known: {', '.join(DEFENSES)})",
    ),
    "classification extension": (
        {"outputs": [th.InferRequestedOutput("label", class_count=3)]},
        "400",
        "unknown parameter 'classification' of output 'label' (known: binary_data)",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_request_is_refused_with_the_protocols_error(
    triton: th.InferenceServerClient, key: Callable[[], dict[str, str]], case: str
) -> None:
    # Prepare
    call, status, message = BAD[case]
    args: dict[str, Any] = {"model_name": "copur", "inputs": [_input(IDS)], **call}
    # Execute
    with pytest.raises(InferenceServerException) as refused:
        triton.infer(headers=key(), **args)
    # Assert
    assert (refused.value.status(), refused.value.message()) == (status, message)


def test_empty_ids_get_the_same_refusal_as_v1(
    door: FrontDoor,
    api_keys: Any,
    triton: th.InferenceServerClient,
    key: Callable[[], dict[str, str]],
) -> None:
    # Execute
    v1 = _v1(door, api_keys, [])
    with pytest.raises(InferenceServerException) as v2:
        triton.infer("copur", [_input([])], headers=key())
    # Assert
    assert (v2.value.status(), v2.value.message()) == (str(v1.status_code), v1.json()["detail"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2"),
        ("GET", "/v2/models/copur"),
        ("GET", "/v2/models/copur/versions/1"),
        ("POST", INFER),
        ("POST", "/v2/models/copur/versions/1/infer"),
    ],
)
def test_without_a_key_every_guarded_v2_route_is_401_with_the_error_object(
    door: FrontDoor, method: str, path: str
) -> None:
    # Execute
    response = httpx.request(
        method, f"{door.url}{path}", json={"inputs": []} if method == "POST" else None
    )
    # Assert: the protocol's object, the bearer challenge; /v1 keeps FastAPI's `detail`
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert _error(response).startswith("missing API key")
    v1 = httpx.post(f"{door.url}/v1/predict", json={"sample_ids": [1]})
    assert v1.status_code == 401 and set(v1.json()) == {"detail"}


def test_tritonclient_without_a_key_is_401(triton: th.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as refused:
        triton.infer("copur", [_input(IDS)])
    assert refused.value.status() == "401"
    assert refused.value.message().startswith("missing API key")


# --- framing, media types, limits (what tritonclient cannot get wrong)
# --------------------------------------------------------------------------------------------------


def _binary_body(ids: list[int], *, size: int | None = None, extra: bytes = b"") -> bytes:
    raw = np.asarray(ids, dtype="<i8").tobytes()
    head = {
        "inputs": [
            {
                "name": "sample_ids",
                "datatype": "INT64",
                "shape": [len(ids)],
                "parameters": {"binary_data_size": len(raw) if size is None else size},
            }
        ]
    }
    return json.dumps(head).encode() + raw + extra


def _head_length(body: bytes) -> str:
    return str(body.index(b"}]}") + 3)


FRAMING: dict[str, tuple[dict[str, Any], int, str]] = {
    "header past the body": (
        {"content": b'{"inputs": []}', "headers": {HEADER: "999"}},
        400,
        "Inference-Header-Content-Length '999' is not a length within the body's 14 bytes",
    ),
    "header not a number": (
        {"content": b'{"inputs": []}', "headers": {HEADER: "ten"}},
        400,
        "Inference-Header-Content-Length 'ten' is not a length within the body's 14 bytes",
    ),
    "header of a digit int() refuses": (
        {"content": b'{"inputs": []}', "headers": {HEADER: b"\xb2"}},  # "\u00b2".isdigit() is True
        400,
        "Inference-Header-Content-Length '\u00b2' is not a length within the body's 14 bytes",
    ),
    "binary_data_size past the bytes": (
        {"content": _binary_body([1, 2], size=24)},
        400,
        "input 'sample_ids': binary_data_size 24 runs past the 16 bytes of binary data",
    ),
    "bytes no input claims": (
        {"content": _binary_body([1, 2], extra=b"\x00" * 8)},
        400,
        "8 bytes of binary data belong to no input",
    ),
    "binary_data_size without the header": (
        {"content": _binary_body([1, 2]).split(b"}]}")[0] + b"}]}", "no_header": True},
        400,
        "input 'sample_ids' has binary_data_size but there is no Inference-Header-Content-Length",
    ),
    "octet-stream without the header": (
        {
            "content": b'{"inputs": []}',
            "headers": {"content-type": "application/octet-stream"},
            "no_header": True,
        },
        400,
        "a application/octet-stream body needs the header Inference-Header-Content-Length",
    ),
    "another media type": (
        {"content": b"ids=1", "headers": {"content-type": "text/plain"}, "no_header": True},
        415,
        "Content-Type must be application/json or application/octet-stream (binary tensors), "
        "not text/plain",
    ),
    "malformed JSON": (
        {"content": b'{"inputs": [', "no_header": True},
        400,
        "malformed JSON body: Expecting value: line 1 column 13 (char 12)",
    ),
    "wrong JSON types": (
        {
            "content": b'{"inputs": [{"name": "sample_ids", "datatype": "INT64", "shape": "2"}]}',
            "no_header": True,
        },
        422,
        "inputs[0].shape: Input should be a valid list",
    ),
    "fractional shape": (
        {
            "content": b'{"inputs": [{"name": "sample_ids", "datatype": "INT64", "shape": [2.5], '
            b'"data": [1, 2]}]}',
            "no_header": True,
        },
        400,
        "input 'sample_ids': shape [2.5] is not a list of integers",
    ),
    "lone surrogate as an id": (
        {
            "content": b'{"inputs": [{"name": "sample_ids", "datatype": "INT64", "shape": [1], '
            b'"data": ["\\ud800"]}]}',
            "no_header": True,
        },
        400,
        "input 'sample_ids': element 0 ('\\ud800') is not an INT64 integer",
    ),
    "over the body limit": (
        {"content": b" " * (MAX_BODY + 1), "no_header": True},
        413,
        f"request body of {MAX_BODY + 1} bytes exceeds the limit of {MAX_BODY} bytes",
    ),
}


@pytest.mark.parametrize("case", list(FRAMING))
def test_broken_framing_media_types_and_sizes_are_refused(
    door: FrontDoor, api_keys: Any, case: str
) -> None:
    # Prepare
    spec, status, message = FRAMING[case]
    content: bytes = spec["content"]
    headers = {**api_keys.headers("predict"), **spec.get("headers", {})}
    if not spec.get("no_header") and HEADER not in headers:
        headers[HEADER] = _head_length(content)
    # Execute
    response = httpx.post(f"{door.url}{INFER}", content=content, headers=headers)
    # Assert
    assert (response.status_code, _error(response)) == (status, message)


def test_a_json_body_needs_no_content_type_and_binary_framing_works_by_hand(
    door: FrontDoor, api_keys: Any
) -> None:
    # Prepare
    body = _binary_body([4, 8])
    # Execute
    plain = httpx.post(
        f"{door.url}{INFER}",
        content=json.dumps(
            {"inputs": [{"name": "sample_ids", "datatype": "INT64", "shape": [2], "data": [4, 8]}]}
        ).encode(),
        headers=api_keys.headers("predict"),
    )
    framed = httpx.post(
        f"{door.url}{INFER}",
        content=body,
        headers={**api_keys.headers("predict"), HEADER: _head_length(body)},
    )
    # Assert: the same labels; JSON answers unless binary was asked
    assert plain.status_code == framed.status_code == 200
    assert plain.headers["content-type"] == "application/json"

    def label(response: httpx.Response) -> Any:
        return next(o for o in response.json()["outputs"] if o["name"] == "label")["data"]

    assert label(plain) == label(framed) and len(label(plain)) == 2


def _json_ids(data: list[Any], shape: list[Any], **extra: Any) -> bytes:
    tensor = {"name": "sample_ids", "datatype": "INT64", "shape": shape, "data": data}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def test_integers_written_as_floats_are_integers_as_json_schema_says(
    door: FrontDoor, api_keys: Any
) -> None:
    # Execute: 2.0 and 4.0 are integers to JSON Schema (what OpenAPI documents), so they are ids
    as_floats = httpx.post(
        f"{door.url}{INFER}",
        content=_json_ids([4.0, 8], [2.0]),
        headers=api_keys.headers("predict"),
    )
    as_ints = httpx.post(
        f"{door.url}{INFER}", content=_json_ids([4, 8], [2]), headers=api_keys.headers("predict")
    )
    # Assert
    assert as_floats.status_code == as_ints.status_code == 200, as_floats.text
    assert as_floats.json()["outputs"] == as_ints.json()["outputs"]


def test_a_request_id_with_a_lone_surrogate_comes_back_as_sent(
    door: FrontDoor, api_keys: Any
) -> None:
    # Prepare: JSON may escape a lone surrogate, which UTF-8 cannot encode
    body = _json_ids([4], [1]).replace(b'{"inputs"', b'{"id": "r\\ud800", "inputs"')
    # Execute
    response = httpx.post(f"{door.url}{INFER}", content=body, headers=api_keys.headers("predict"))
    # Assert: escaped on the way back, never a 500
    assert response.status_code == 200
    assert b'"id":"r\\ud800"' in response.content
    assert response.json()["id"] == "r\ud800"


# --- observability and the OpenAPI document
# --------------------------------------------------------------------------------------------------


def _requests(door: FrontDoor) -> dict[tuple[str, str, str], float]:
    text = httpx.get(f"{door.url}/metrics").text
    return {
        (s.labels["transport"], s.labels["defense"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "copur_requests"
        for s in family.samples
        if s.name == "copur_requests_total"
    }


def test_every_v2_inference_is_counted_with_its_transport_and_status(
    door: FrontDoor, triton: th.InferenceServerClient, key: Callable[[], dict[str, str]]
) -> None:
    # Prepare
    before = _requests(door)
    # Execute: one answer, one unknown model
    triton.infer("copur", [_input(IDS)], headers=key())
    with pytest.raises(InferenceServerException):
        triton.infer("resnet", [_input(IDS)], headers=key())
    after = _requests(door)
    # Assert
    for labels in (("http-v2", "copur", "200"), ("http-v2", "invalid", "404")):
        assert after.get(labels, 0) - before.get(labels, 0) == 1, labels


def test_openapi_documents_the_v2_routes_their_errors_and_their_keys(door: FrontDoor) -> None:
    # Execute
    doc = httpx.get(f"{door.url}/openapi.json").json()
    # Assert
    paths = doc["paths"]
    infer = paths["/v2/models/{model_name}/infer"]["post"]
    assert set(infer["responses"]) == {
        "200",
        "400",
        "401",
        "403",
        "404",
        "413",
        "415",
        "422",
        "429",
        "503",
    }
    assert set(infer["responses"]["200"]["content"]) == {
        "application/json",
        "application/octet-stream",
    }
    assert infer["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OipErrorOut"
    }
    body = infer["requestBody"]["content"]["application/json"]["schema"]
    # one branch per number of ids, so that a body the schema accepts has a shape that fits
    branches = body["properties"]["inputs"]["items"]["anyOf"]
    assert [
        (b["properties"]["shape"]["const"], b["properties"]["data"]["maxItems"]) for b in branches
    ] == [([n], n) for n in range(1, MAX_IDS + 1)]
    assert "/v2/models/{model_name}/versions/{model_version}/infer" not in paths
    assert "security" in infer and "security" in paths["/v2"]["get"]
    assert "security" not in paths["/v2/health/ready"]["get"]
    assert "security" not in paths["/v2/models/{model_name}/ready"]["get"]
    assert set(paths["/v2/health/ready"]["get"]["responses"]) == {"200", "503"}
