import re
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from copur_client.serde import (
    SerdeError,
    array_from_proto,
    array_to_proto,
    oip_infer_request_from_proto,
    oip_infer_request_to_proto,
    oip_infer_response_from_proto,
    oip_infer_response_to_proto,
    oip_model_metadata_from_proto,
    oip_model_metadata_to_proto,
    oip_server_metadata_from_proto,
    oip_server_metadata_to_proto,
    predictions_from_proto,
    predictions_to_proto,
)
from copur_client.v1 import tensor_pb2
from copur_client.wire import (
    Certificate,
    OipInferRequest,
    OipInferResponse,
    OipModelMetadata,
    OipRequestedOutput,
    OipServerMetadata,
    OipTensor,
    OipTensorMeta,
    Prediction,
)


def test_tensor_round_trip_is_exact_little_endian_float32() -> None:
    x = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)

    msg = array_to_proto(x)

    assert msg.dtype == "float32" and list(msg.shape) == [5, 16] and len(msg.data) == 5 * 16 * 4
    assert msg.data[:4] == x[0, 0].astype("<f4").tobytes()
    assert np.array_equal(array_from_proto(msg), x)


@pytest.mark.parametrize(
    ("msg", "text"),
    [
        (
            tensor_pb2.Tensor(data=b"\x00" * 12, shape=[2, 2], dtype="float32"),
            "12 bytes do not hold",
        ),
        (tensor_pb2.Tensor(data=b"\x00" * 16, shape=[2, 2], dtype="float64"), "dtype 'float64'"),
        (tensor_pb2.Tensor(data=b"", shape=[-1, 0], dtype="float32"), "negative dimension"),
        # dims whose int64 product wraps to 0 (it once passed the length check, then numpy's reshape
        # raised)
        (tensor_pb2.Tensor(data=b"", shape=[2**32, 2**32], dtype="float32"), "0 bytes do not hold"),
        (
            tensor_pb2.Tensor(data=b"", shape=[0, 2**62, 2**62], dtype="float32"),
            "cannot be decoded",
        ),
        (tensor_pb2.Tensor(data=b"", shape=[0] * 70, dtype="float32"), "cannot be decoded"),
    ],
)
def test_malformed_tensors_are_refused(msg: tensor_pb2.Tensor, text: str) -> None:
    with pytest.raises(SerdeError, match=text):
        array_from_proto(msg, what="party 2 embeddings")


def test_prediction_round_trip_with_and_without_certificate() -> None:
    preds = [
        Prediction(
            sample_id=7,
            label=3,
            probabilities=[0.25, 0.75],
            party_scores=[0.5, 1.5],
            flagged_parties=[1],
            missing_parties=[0],
            defense="copur",
        ),
        Prediction(
            sample_id=9,
            label=-1,
            probabilities=[0.5, 0.5],
            party_scores=[0.0, 0.0],
            flagged_parties=[],
            missing_parties=[],
            defense="vote",
            certificate=Certificate(kind="vote", certified_parties=1, label=1),
        ),
    ]

    back = predictions_from_proto(predictions_to_proto(preds))

    assert back == preds


# --- the Open Inference Protocol v2 (package ``inference``)
# --------------------------------------------------------------------------------------------------


def _oip_request(**kwargs: Any) -> OipInferRequest:
    fields: dict[str, Any] = {
        "model_name": "copur",
        "model_version": "v1",
        "id": "r-1",
        "parameters": {"defense": "vote", "certify": True, "depth": 3},
        "inputs": (OipTensor(name="sample_ids", datatype="INT64", shape=(2, 1), data=[[4], [9]]),),
        "outputs": (
            OipRequestedOutput(name="label", parameters={"binary_data": False}),
            OipRequestedOutput(name="flagged"),
        ),
    }
    return OipInferRequest(**(fields | kwargs))


def test_oip_request_round_trip_with_contents_flattens_the_data() -> None:
    # Prepare
    request = _oip_request()
    # Execute
    msg = oip_infer_request_to_proto(request)
    back = oip_infer_request_from_proto(msg)
    # Assert: the contents field of INT64, the parameters' own choices, data flat (row-major)
    assert list(msg.inputs[0].contents.int64_contents) == [4, 9] and not msg.raw_input_contents
    assert msg.parameters["certify"].WhichOneof("parameter_choice") == "bool_param"
    assert msg.parameters["depth"].WhichOneof("parameter_choice") == "int64_param"
    assert back == replace(request, inputs=(replace(request.inputs[0], data=[4, 9]),))


def test_oip_request_round_trip_with_raw_contents() -> None:
    # Prepare
    raw = np.array([4, 9], dtype="<i8").tobytes()
    tensor = OipTensor(name="sample_ids", datatype="INT64", shape=(2,), raw=raw)
    request = _oip_request(inputs=(tensor,))
    # Execute
    msg = oip_infer_request_to_proto(request)
    back = oip_infer_request_from_proto(msg)
    # Assert
    assert list(msg.raw_input_contents) == [raw] and not msg.inputs[0].HasField("contents")
    assert back == request


def test_an_oip_parameter_of_no_known_choice_reads_as_none() -> None:
    # Prepare: an InferParameter with none of bool, int64, string set (a Triton client's double
    # arrives so: its field number is unknown to the standard message)
    msg = oip_infer_request_to_proto(_oip_request(parameters={}))
    msg.parameters["certify"].SetInParent()
    # Execute / Assert
    assert oip_infer_request_from_proto(msg).parameters == {"certify": None}


def _contradiction(kind: str) -> Any:
    msg = oip_infer_request_to_proto(_oip_request())
    tensor = msg.inputs[0]
    if kind == "two contents fields":
        tensor.contents.fp32_contents.append(1.0)
    elif kind == "another datatype's field":
        tensor.datatype = "FP32"
    elif kind == "contents and raw":
        msg.raw_input_contents.append(b"\x00" * 16)
    elif kind == "raw count":
        tensor.ClearField("contents")
        msg.raw_input_contents.extend([b"\x00" * 16, b"\x00" * 16])
    return msg


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("two contents fields", "contents in more than one field (int64_contents, fp32_contents)"),
        ("another datatype's field", "contents in int64_contents, but datatype 'FP32' is held in"),
        ("contents and raw", "both contents and raw contents"),
        ("raw count", "2 raw contents for 1 inputs"),
    ],
)
def test_oip_contents_that_contradict_themselves_are_refused(kind: str, text: str) -> None:
    with pytest.raises(SerdeError, match=re.escape(text)):
        oip_infer_request_from_proto(_contradiction(kind))


def test_oip_response_raw_is_all_or_nothing() -> None:
    # Prepare: one raw output, one as data
    outputs = (
        OipTensor(name="label", datatype="INT64", shape=(1,), raw=b"\x01" + b"\x00" * 7),
        OipTensor(name="flagged", datatype="BOOL", shape=(1, 2), data=[True, False]),
    )
    # Execute / Assert
    with pytest.raises(SerdeError, match=re.escape("raw contents for some tensors only (1 of 2)")):
        oip_infer_response_to_proto(OipInferResponse(model_name="copur", outputs=outputs))


def test_oip_response_round_trip() -> None:
    # Prepare
    response = OipInferResponse(
        model_name="copur",
        model_version="v1",
        id="r-1",
        parameters={"defense": "copur"},
        outputs=(
            OipTensor(name="label", datatype="INT64", shape=(1,), raw=b"\x01" + b"\x00" * 7),
            OipTensor(name="flagged", datatype="BOOL", shape=(1, 2), raw=b"\x01\x00"),
        ),
    )
    # Execute
    msg = oip_infer_response_to_proto(response)
    # Assert
    assert list(msg.raw_output_contents) == [b"\x01" + b"\x00" * 7, b"\x01\x00"]
    assert oip_infer_response_from_proto(msg) == response


def test_oip_metadata_round_trip() -> None:
    # Prepare
    model = OipModelMetadata(
        name="copur",
        versions=("v1",),
        platform="copur-fusion",
        inputs=(OipTensorMeta(name="sample_ids", datatype="INT64", shape=(-1,)),),
        outputs=(OipTensorMeta(name="probabilities", datatype="FP32", shape=(-1, 10)),),
    )
    server = OipServerMetadata(name="copur-fusion", version="0.1.0", extensions=("parameters",))
    # Execute / Assert
    assert oip_model_metadata_from_proto(oip_model_metadata_to_proto(model)) == model
    assert oip_server_metadata_from_proto(oip_server_metadata_to_proto(server)) == server
