import numpy as np
import pytest

from copur_client.serde import (
    SerdeError,
    array_from_proto,
    array_to_proto,
    predictions_from_proto,
    predictions_to_proto,
)
from copur_client.v1 import tensor_pb2
from copur_client.wire import Certificate, Prediction


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
