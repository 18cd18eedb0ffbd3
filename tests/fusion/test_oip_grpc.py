"""The Open Inference Protocol v2 over gRPC (``inference.GRPCInferenceService`` on the fusion
center's one gRPC server) against real parties, spoken by ``tritonclient.grpc``. tritonclient's
stubs and the fusion center's define the same protobuf names, which one process cannot hold, so
the client runs in a process of its own (``triton_grpc_probe.py``): one run per key setting, its
results checked by the tests below."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from google.protobuf.descriptor import Descriptor
from prometheus_client.parser import text_string_to_metric_families

from copur.roles.fusion.oip import bundle_version
from copur.science.bundle import Bundle
from copur_client.oip import grpc_predict_v2_pb2 as oip_pb2
from frontdoor import FrontDoor, serve_front_door

PROBE = Path(__file__).with_name("triton_grpc_probe.py")
IDS = [3, 250, 517, 1200, 1999]


def _messages(descriptors: dict[str, Descriptor], prefix: str = "") -> dict[str, Descriptor]:
    """Every message of the standard proto, nested ones as ``Outer.Inner`` (map entries aside)."""
    out: dict[str, Descriptor] = {}
    for name, message in descriptors.items():
        if message.GetOptions().map_entry:
            continue
        out[prefix + name] = message
        out |= _messages(dict(message.nested_types_by_name), f"{prefix}{name}.")
    return out


STANDARD = _messages(dict(oip_pb2.DESCRIPTOR.message_types_by_name))

CALLS: dict[str, dict[str, Any]] = {
    "live": {"op": "live"},
    "ready": {"op": "ready"},
    "model ready": {"op": "model_ready", "model": "copur"},
    "unknown model ready": {"op": "model_ready", "model": "resnet"},
    "server metadata": {"op": "server_metadata"},
    "model metadata": {"op": "model_metadata", "model": "copur"},
    "infer": {"op": "infer", "ids": IDS, "id": "r-1"},
    "column of ids": {"op": "infer", "ids": IDS, "shape": [len(IDS), 1]},
    "certify": {
        "op": "infer",
        "ids": IDS,
        "parameters": {"defense": "vote", "certify": True},
    },
    "subset": {"op": "infer", "ids": IDS, "outputs": ["flagged", "label"]},
    "wrong datatype": {"op": "infer", "ids": IDS, "datatype": "FP32"},
    "unknown model": {"op": "infer", "ids": IDS, "model": "resnet"},
    "unknown ids": {"op": "infer", "ids": [1, 99_999]},
    "empty ids": {"op": "infer", "ids": []},
    "unknown output": {"op": "infer", "ids": IDS, "outputs": ["logits"]},
    "no key": {"op": "infer", "ids": IDS, "auth": False},
    "fields": {"op": "fields", "messages": sorted(STANDARD)},
}
UNKEYED = ("live", "ready", "model ready", "server metadata", "model metadata", "infer")


def _probe(door: FrontDoor, key: str | None, names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    plan = {"url": door.grpc, "key": key, "calls": [CALLS[name] for name in names]}
    done = subprocess.run(
        [sys.executable, str(PROBE)],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(zip(names, json.loads(done.stdout), strict=True))


@pytest.fixture(scope="module")
def door(mfeat_bundle_dir: Path, api_keys: Any) -> Iterator[FrontDoor]:
    with serve_front_door(mfeat_bundle_dir, keys_file=api_keys.keys_file) as running:
        yield running


@pytest.fixture(scope="module")
def keyed(door: FrontDoor, api_keys: Any) -> dict[str, Any]:
    """Every call with the predict key."""
    return _probe(door, api_keys.predict, list(CALLS))


@pytest.fixture(scope="module")
def unkeyed(door: FrontDoor) -> dict[str, Any]:
    """The probes, the metadata and an inference without a key."""
    return _probe(door, None, UNKEYED)


@pytest.fixture(scope="module")
def v1(door: FrontDoor, api_keys: Any) -> dict[str, list[dict[str, Any]]]:
    """/v1/predict's answers for IDS, plain and with the vote certificate."""

    def predict(**body: Any) -> list[dict[str, Any]]:
        response = httpx.post(
            f"{door.url}/v1/predict",
            json={"sample_ids": IDS, **body},
            headers=api_keys.headers("predict"),
            timeout=120,
        )
        assert response.status_code == 200, response.text
        return list(response.json()["predictions"])

    return {"plain": predict(), "vote": predict(defense="vote", certify=True)}


def _ok(result: dict[str, Any]) -> Any:
    assert result["ok"], result
    return result["value"]


def test_the_standard_messages_match_tritonclients_field_for_field(
    keyed: dict[str, Any],
) -> None:
    # Prepare: tritonclient's grpc_service.proto holds the standard's messages (and more)
    theirs = _ok(keyed["fields"])
    # Assert: every message and field of ours is theirs with the same number, type and
    # cardinality (and the comparison covered the messages that carry fields)
    assert set(theirs) == set(STANDARD) and len(STANDARD) == 18
    compared = 0
    for name, message in STANDARD.items():
        ours = [[f.name, f.number, f.type, f.is_repeated] for f in message.fields]
        assert [f for f in ours if f not in theirs[name]] == [], name
        compared += len(ours)
    assert compared == 54


def test_probes_are_open(unkeyed: dict[str, Any]) -> None:
    assert _ok(unkeyed["live"]) is True
    assert _ok(unkeyed["ready"]) is True
    assert _ok(unkeyed["model ready"]) is True


@pytest.mark.parametrize("call", ["server metadata", "model metadata", "infer"])
def test_metadata_and_inference_need_a_key(unkeyed: dict[str, Any], call: str) -> None:
    result = unkeyed[call]
    assert not result["ok"]
    assert result["status"] == "StatusCode.UNAUTHENTICATED"
    assert result["message"].startswith("missing API key")


def test_metadata_with_a_key(keyed: dict[str, Any], mfeat_bundle: Bundle) -> None:
    # Execute
    server = _ok(keyed["server metadata"])
    model = _ok(keyed["model metadata"])
    # Assert (MessageToJson renders int64 as strings)
    assert server["extensions"] == ["binary_tensor_data", "parameters"]
    assert model["versions"] == [bundle_version(mfeat_bundle.manifest)]
    assert model["inputs"] == [{"name": "sample_ids", "datatype": "INT64", "shape": ["-1"]}]
    assert [(o["name"], o["shape"]) for o in model["outputs"]][:3] == [
        ("label", ["-1"]),
        ("probabilities", ["-1", "10"]),
        ("party_scores", ["-1", "6"]),
    ]


def test_infer_answers_what_v1_predict_answers(
    keyed: dict[str, Any], v1: dict[str, list[dict[str, Any]]]
) -> None:
    # Prepare
    want = v1["plain"]
    # Execute
    got = _ok(keyed["infer"])
    # Assert
    out = got["outputs"]
    assert got["order"] == ["label", "probabilities", "party_scores", "flagged", "missing"]
    assert got["parameters"] == {"defense": "copur"}
    assert out["label"] == {
        "datatype": "INT64",
        "shape": [len(IDS)],
        "value": [p["label"] for p in want],
    }
    assert out["probabilities"]["shape"] == [len(IDS), 10]
    np.testing.assert_allclose(
        out["probabilities"]["value"], [p["probabilities"] for p in want], atol=1e-6
    )
    np.testing.assert_allclose(
        out["party_scores"]["value"], [p["party_scores"] for p in want], atol=1e-5
    )
    for key, name in (("flagged_parties", "flagged"), ("missing_parties", "missing")):
        assert out[name]["datatype"] == "BOOL"
        assert [np.flatnonzero(row).tolist() for row in out[name]["value"]] == [
            p[key] for p in want
        ]


def test_the_request_id_and_model_version_come_back(
    keyed: dict[str, Any], mfeat_bundle: Bundle
) -> None:
    got = _ok(keyed["infer"])
    assert (got["id"], got["model_version"]) == ("r-1", bundle_version(mfeat_bundle.manifest))


def test_certify_answers_the_vote_certificate_of_v1(
    keyed: dict[str, Any], v1: dict[str, list[dict[str, Any]]]
) -> None:
    # Execute
    got = _ok(keyed["certify"])
    want = v1["vote"]
    # Assert
    assert got["parameters"] == {"defense": "vote", "certificate": "vote"}
    assert got["order"][-3:] == ["certified_parties", "certificate_radius", "certificate_label"]
    out = got["outputs"]
    assert out["label"]["value"] == [p["label"] for p in want]
    assert out["certified_parties"]["value"] == [
        p["certificate"]["certified_parties"] for p in want
    ]
    assert out["certificate_label"]["value"] == [p["certificate"]["label"] for p in want]


def test_only_the_requested_outputs_come_back_in_order(keyed: dict[str, Any]) -> None:
    got = _ok(keyed["subset"])
    assert got["order"] == ["flagged", "label"]
    assert got["outputs"]["flagged"]["shape"] == [len(IDS), 6]


@pytest.mark.parametrize(
    ("call", "status", "message"),
    [
        (
            "wrong datatype",
            "INVALID_ARGUMENT",
            "input 'sample_ids': datatype 'FP32' is not INT64",
        ),
        ("unknown model", "NOT_FOUND", "unknown model 'resnet' (served: 'copur')"),
        ("unknown model ready", "NOT_FOUND", "unknown model 'resnet' (served: 'copur')"),
        ("unknown ids", "NOT_FOUND", "unknown sample ids: 99999 (known: 0..1999)"),
        ("empty ids", "INVALID_ARGUMENT", "sample_ids is empty"),
        ("column of ids", "INVALID_ARGUMENT", "input 'sample_ids': shape [5, 1] is not [N]"),
        ("unknown output", "INVALID_ARGUMENT", "unknown output 'logits' (known: label, "),
        ("no key", "UNAUTHENTICATED", "missing API key"),
    ],
)
def test_a_bad_call_ends_with_the_status_of_the_one_mapping(
    keyed: dict[str, Any], call: str, status: str, message: str
) -> None:
    result = keyed[call]
    assert not result["ok"]
    assert result["status"] == f"StatusCode.{status}"
    assert result["message"].startswith(message)


def test_grpc_v2_calls_are_counted_under_their_transport(
    keyed: dict[str, Any], door: FrontDoor
) -> None:
    # Prepare: what the keyed run did past the key check (the call without a key never reached
    # the servicer; the unkeyed run was refused before it too)
    assert keyed
    # Execute
    text = httpx.get(f"{door.url}/metrics").text
    counts = {
        (s.labels["defense"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "copur_requests"
        for s in family.samples
        if s.name == "copur_requests_total" and s.labels["transport"] == "grpc-v2"
    }
    # Assert
    assert counts == {
        ("copur", "OK"): 2,  # infer, subset
        ("vote", "OK"): 1,  # certify
        ("invalid", "NOT_FOUND"): 1,  # unknown model
        ("invalid", "INVALID_ARGUMENT"): 3,  # wrong datatype, column of ids, unknown output
        ("copur", "NOT_FOUND"): 1,  # unknown ids
        ("copur", "INVALID_ARGUMENT"): 1,  # empty ids (the handler's refusal)
    }
