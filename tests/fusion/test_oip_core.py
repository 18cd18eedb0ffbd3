"""The Open Inference Protocol core (copur.roles.fusion.oip), without a server: the model's
name/version check and metadata, every refusal of parse_infer naming what is wrong, and the
outputs infer_response builds from predictions (order, datatypes, shapes, raw little-endian
bytes, float32-exact data, certificates)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from copur.roles.fusion.oip import (
    CERTIFICATE_OUTPUTS,
    OUTPUTS,
    OipModel,
    OipQuery,
    Wanted,
    bundle_version,
    infer_response,
    parse_infer,
    server_metadata,
)
from copur.science.bundle import Manifest
from copur.transport.grpcutil import InvalidRequest, NotFound
from copur_client.wire import (
    Certificate,
    OipInferRequest,
    OipRequestedOutput,
    OipTensor,
    Prediction,
)

MODEL = OipModel(version="abc123", num_classes=3, num_parties=4, default_defense="copur")


def _ids(
    data: Any = (1, 2, 3), *, shape: tuple[int, ...] | None = None, **kwargs: Any
) -> OipTensor:
    values = list(data) if data is not None else None
    fields: dict[str, Any] = {
        "name": "sample_ids",
        "datatype": "INT64",
        "shape": shape if shape is not None else (len(values or []),),
        "data": values,
    }
    return OipTensor(**(fields | kwargs))


def _request(**kwargs: Any) -> OipInferRequest:
    fields: dict[str, Any] = {"model_name": "copur", "inputs": (_ids(),)}
    return OipInferRequest(**(fields | kwargs))


def _prediction(sample_id: int, **kwargs: Any) -> Prediction:
    fields: dict[str, Any] = {
        "sample_id": sample_id,
        "label": sample_id % 3,
        "probabilities": [0.1, 0.2, 0.7],
        "party_scores": [0.5, 1.25, 3.0, 0.1],
        "flagged_parties": [2],
        "missing_parties": [0],
        "defense": "copur",
    }
    return Prediction(**(fields | kwargs))


# --- the model
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version", "text"),
    [
        ("resnet", "", "unknown model 'resnet' (served: 'copur')"),
        ("copur", "v9", "model 'copur' has no version 'v9' (served: 'abc123')"),
    ],
)
def test_another_model_or_version_is_not_found(name: str, version: str, text: str) -> None:
    # Execute / Assert
    with pytest.raises(NotFound) as caught:
        MODEL.check(name, version)
    assert str(caught.value) == text


def test_the_model_and_its_version_are_found() -> None:
    # Execute / Assert: no exception for the name alone or with its version
    MODEL.check("copur")
    MODEL.check("copur", "abc123")


def test_metadata_lists_the_input_and_every_output_with_variable_batch_dims() -> None:
    # Execute
    meta = MODEL.metadata()
    # Assert
    assert (meta.name, meta.versions, meta.platform) == ("copur", ("abc123",), "copur-fusion")
    assert [(t.name, t.datatype, t.shape) for t in meta.inputs] == [("sample_ids", "INT64", (-1,))]
    assert [(t.name, t.datatype, t.shape) for t in meta.outputs] == [
        ("label", "INT64", (-1,)),
        ("probabilities", "FP32", (-1, 3)),
        ("party_scores", "FP32", (-1, 4)),
        ("flagged", "BOOL", (-1, 4)),
        ("missing", "BOOL", (-1, 4)),
        ("certified_parties", "INT64", (-1,)),
        ("certificate_radius", "FP32", (-1,)),
        ("certificate_label", "INT64", (-1,)),
    ]


def test_server_metadata_lists_the_extensions_served() -> None:
    assert server_metadata().extensions == ("binary_tensor_data", "parameters")


def test_the_version_is_the_bundle_id() -> None:
    # Prepare: two manifests that differ in one file digest only
    a = Manifest.model_construct(files={"head.safetensors": "aa", "calibration.json": "bb"})
    b = Manifest.model_construct(files={"head.safetensors": "aa", "calibration.json": "cc"})
    # Execute / Assert: the bundle's id (16 hex digits), stable, different for another file
    assert bundle_version(a) == a.bundle_id and len(bundle_version(a)) == 16
    assert bundle_version(a) == bundle_version(Manifest.model_construct(files=dict(a.files)))
    assert bundle_version(a) != bundle_version(b)


# --- parse_infer: what is accepted
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tensor",
    [
        _ids([4, 8, 15]),
        _ids(None, shape=(3,), raw=np.array([4, 8, 15], dtype="<i8").tobytes()),
        _ids(
            None,
            shape=(3,),
            raw=np.array([4, 8, 15], dtype="<i8").tobytes(),
            parameters={"binary_data_size": 24},
        ),
    ],
    ids=["data", "raw", "raw with binary_data_size"],
)
def test_sample_ids_are_read_from_json_data_or_raw_bytes(tensor: OipTensor) -> None:
    # Execute
    query = parse_infer(_request(inputs=(tensor,)), MODEL)
    # Assert
    assert query.sample_ids == [4, 8, 15]
    assert all(type(i) is int for i in query.sample_ids)


def test_defaults_every_output_in_json_and_the_servers_defense() -> None:
    # Execute
    query = parse_infer(_request(id="req-7"), MODEL)
    # Assert
    assert query == OipQuery(
        sample_ids=[1, 2, 3],
        defense=None,
        certify=False,
        outputs=tuple(Wanted(name) for name in OUTPUTS),
        request_id="req-7",
    )


def test_certify_adds_the_certificate_outputs_and_binary_data_output_makes_all_binary() -> None:
    # Execute
    query = parse_infer(
        _request(parameters={"certify": True, "defense": "vote", "binary_data_output": True}),
        MODEL,
    )
    # Assert
    assert query.outputs == tuple(Wanted(n, True) for n in (*OUTPUTS, *CERTIFICATE_OUTPUTS))
    assert (query.defense, query.certify) == ("vote", True)


def test_requested_outputs_keep_their_order_and_their_own_binary_choice() -> None:
    # Prepare
    outputs = (
        OipRequestedOutput(name="missing", parameters={"binary_data": True}),
        OipRequestedOutput(name="label"),
        OipRequestedOutput(name="probabilities", parameters={"binary_data": False}),
    )
    # Execute
    query = parse_infer(_request(outputs=outputs, parameters={"binary_data_output": True}), MODEL)
    # Assert: the request's default (binary) applies where the output says nothing
    assert query.outputs == (
        Wanted("missing", True),
        Wanted("label", True),
        Wanted("probabilities", False),
    )


def test_an_output_named_twice_is_answered_twice_each_in_its_own_form() -> None:
    # Execute
    query = parse_infer(
        _request(
            outputs=(
                OipRequestedOutput(name="label"),
                OipRequestedOutput(name="label", parameters={"binary_data": True}),
            )
        ),
        MODEL,
    )
    # Assert
    assert query.outputs == (Wanted("label", False), Wanted("label", True))


@pytest.mark.parametrize("certify", [None, False])
def test_naming_a_certificate_output_certifies(certify: bool | None) -> None:
    # Prepare: `certify` absent or false; the request names a certificate output
    parameters = {} if certify is None else {"certify": certify}
    # Execute
    query = parse_infer(
        _request(parameters=parameters, outputs=(OipRequestedOutput(name="certificate_radius"),)),
        MODEL,
    )
    # Assert
    assert query.certify and query.outputs == (Wanted("certificate_radius"),)


# --- parse_infer: every refusal names what is wrong
# --------------------------------------------------------------------------------------------------

REFUSALS: dict[str, tuple[dict[str, Any], str]] = {
    "wrong datatype": (
        {"inputs": (_ids(datatype="FP32"),)},
        "input 'sample_ids': datatype 'FP32' is not INT64",
    ),
    "2-d shape": (
        {"inputs": (_ids([1, 2, 3, 4], shape=(2, 2)),)},
        "input 'sample_ids': shape [2, 2] is not [N]",
    ),
    "column shape": (
        {"inputs": (_ids([1, 2], shape=(2, 1)),)},
        "input 'sample_ids': shape [2, 1] is not [N]",
    ),
    "scalar shape": (
        {"inputs": (_ids([1], shape=()),)},
        "input 'sample_ids': shape [] is not [N]",
    ),
    "negative dim": (
        {"inputs": (_ids([1], shape=(-1,)),)},
        "input 'sample_ids': negative dimension in shape [-1]",
    ),
    "shape vs data": (
        {"inputs": (_ids([1, 2, 3], shape=(5,)),)},
        "input 'sample_ids': shape [5] holds 5 elements, data has 3",
    ),
    "raw length": (
        {"inputs": (_ids(None, shape=(2,), raw=b"\x00" * 12),)},
        "input 'sample_ids': 12 bytes of binary data, shape [2] of INT64 needs 16",
    ),
    "float element": (
        {"inputs": (_ids([1, 2.5]),)},
        "input 'sample_ids': element 1 (2.5) is not an INT64 integer",
    ),
    "bool element": (
        {"inputs": (_ids([True]),)},
        "input 'sample_ids': element 0 (True) is not an INT64 integer",
    ),
    "beyond int64": (
        {"inputs": (_ids([2**63]),)},
        "input 'sample_ids': element 0 (9223372036854775808) is not an INT64 integer",
    ),
    "nested data": (
        {"inputs": (_ids([[1], [2]]),)},
        "input 'sample_ids': element 0 ([1]) is not an INT64 integer",
    ),
    "no data": (
        {"inputs": (_ids(None, shape=(2,)),)},
        "input 'sample_ids' has no data",
    ),
    "data and raw": (
        {"inputs": (_ids([1], raw=b"\x01" + b"\x00" * 7),)},
        "input 'sample_ids' has both data and binary data",
    ),
    "unknown input": (
        {"inputs": (_ids(), _ids(name="image"))},
        "unknown input 'image' (the model's input is 'sample_ids')",
    ),
    "missing input": ({"inputs": ()}, "input 'sample_ids' is missing"),
    "input twice": ({"inputs": (_ids(), _ids())}, "input 'sample_ids' is given 2 times"),
    "unknown input parameter": (
        {"inputs": (_ids(parameters={"content_type": "np"}),)},
        "unknown parameter 'content_type' of input 'sample_ids' (known: binary_data_size)",
    ),
    "unknown request parameter": (
        {"parameters": {"defence": "copur"}},
        "unknown request parameter 'defence' (known: binary_data_output, certify, defense)",
    ),
    "certify as a string": (
        {"parameters": {"certify": "yes"}},
        "request parameter 'certify' must be a bool, not str",
    ),
    "empty defense": (
        {"parameters": {"defense": ""}},
        "request parameter 'defense' is empty (omit it for the default)",
    ),
    "defense as an int": (
        {"parameters": {"defense": 3}},
        "request parameter 'defense' must be a string, not int",
    ),
    "parameter of no known type": (
        {"parameters": {"certify": None}},
        "request parameter 'certify' holds no value of the protocol's types (bool, int64, string)",
    ),
    "unknown output": (
        {"outputs": (OipRequestedOutput(name="logits"),)},
        "unknown output 'logits' (known: label, probabilities, party_scores, flagged, missing, "
        "certified_parties, certificate_radius, certificate_label)",
    ),
    "unsupported output parameter": (
        {"outputs": (OipRequestedOutput(name="label", parameters={"classification": 3}),)},
        "unknown parameter 'classification' of output 'label' (known: binary_data)",
    ),
    "binary_data as an int": (
        {"outputs": (OipRequestedOutput(name="label", parameters={"binary_data": 1}),)},
        "parameter 'binary_data' of output 'label' must be a bool, not int",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_malformed_request_is_refused_naming_what_is_wrong(case: str) -> None:
    # Prepare
    fields, text = REFUSALS[case]
    # Execute / Assert
    with pytest.raises(InvalidRequest) as caught:
        parse_infer(_request(**fields), MODEL)
    assert str(caught.value) == text


def test_another_model_in_the_request_is_not_found() -> None:
    with pytest.raises(NotFound, match="unknown model 'other'"):
        parse_infer(_request(model_name="other"), MODEL)


def test_empty_ids_are_left_to_the_handler() -> None:
    # Execute: shape [0] with or without data is well formed here; the handler refuses it as it
    # refuses an empty /v1 request
    for tensor in (_ids([]), _ids(None, shape=(0,))):
        assert parse_infer(_request(inputs=(tensor,)), MODEL).sample_ids == []


# --- infer_response
# --------------------------------------------------------------------------------------------------


def test_outputs_as_json_data_are_flat_row_major_and_float32_exact() -> None:
    # Prepare
    preds = [_prediction(5), _prediction(7, flagged_parties=[], missing_parties=[1, 3])]
    query = parse_infer(_request(inputs=(_ids([5, 7]),)), MODEL)
    # Execute
    response = infer_response(query, preds, MODEL, all_raw=False)
    # Assert
    out = {t.name: t for t in response.outputs}
    assert [t.name for t in response.outputs] == list(OUTPUTS)
    assert all(t.raw is None for t in response.outputs)
    assert (out["label"].shape, out["label"].data) == ((2,), [2, 1])
    assert out["probabilities"].shape == (2, 3)
    assert out["probabilities"].data == np.float32([0.1, 0.2, 0.7] * 2).tolist()
    assert out["party_scores"].data == np.float32([0.5, 1.25, 3.0, 0.1] * 2).tolist()
    assert out["flagged"].data == [False, False, True, False] + [False] * 4
    assert out["missing"].data == [True, False, False, False, False, True, False, True]
    assert (response.model_name, response.model_version) == ("copur", "abc123")
    assert response.parameters == {"defense": "copur"}


def test_raw_outputs_are_little_endian_bytes_of_the_declared_datatype() -> None:
    # Prepare
    preds = [_prediction(5), _prediction(7)]
    query = parse_infer(_request(inputs=(_ids([5, 7]),)), MODEL)
    # Execute
    response = infer_response(query, preds, MODEL, all_raw=True)
    # Assert
    out = {t.name: t for t in response.outputs}
    assert all(t.data is None for t in response.outputs)
    assert out["label"].raw == np.array([2, 1], dtype="<i8").tobytes()
    assert out["probabilities"].raw == np.float32([[0.1, 0.2, 0.7]] * 2).astype("<f4").tobytes()
    assert out["flagged"].raw == bytes([0, 0, 1, 0, 0, 0, 1, 0])
    assert out["flagged"].shape == (2, 4) and out["missing"].datatype == "BOOL"


def test_only_the_binary_outputs_are_raw_over_http() -> None:
    # Prepare
    query = replace(
        parse_infer(_request(inputs=(_ids([5]),)), MODEL),
        outputs=(Wanted("label"), Wanted("probabilities", True), Wanted("label", True)),
    )
    # Execute
    response = infer_response(query, [_prediction(5)], MODEL, all_raw=False)
    # Assert
    assert [(t.name, t.raw is not None) for t in response.outputs] == [
        ("label", False),
        ("probabilities", True),
        ("label", True),
    ]


@pytest.mark.parametrize(
    ("certificate", "values", "kind"),
    [
        (Certificate(kind="vote", certified_parties=2, label=1), (2, 0.0, 1), "vote"),
        (Certificate(kind="smoothing", radius=0.75, label=2), (-1, 0.75, 2), "smoothing"),
        (None, (-1, 0.0, -1), "none"),
    ],
)
def test_certificate_outputs_and_kind(
    certificate: Certificate | None, values: tuple[int, float, int], kind: str
) -> None:
    # Prepare
    query = parse_infer(
        _request(inputs=(_ids([5]),), parameters={"certify": True, "defense": "vote"}), MODEL
    )
    # Execute
    response = infer_response(
        query, [_prediction(5, certificate=certificate, defense="vote")], MODEL, all_raw=False
    )
    # Assert
    out = {t.name: t.data for t in response.outputs}
    assert (
        out["certified_parties"],
        out["certificate_radius"],
        out["certificate_label"],
    ) == ([values[0]], [values[1]], [values[2]])
    assert response.parameters == {"defense": "vote", "certificate": kind}
