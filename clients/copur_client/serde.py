"""The only module that touches protobuf: tensors, party descriptions and predictions to and from
the wire.

The types themselves are in :mod:`copur_client.wire`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from copur_client.v1 import fusion_pb2, party_pb2, tensor_pb2
from copur_client.wire import Certificate, PartyInfo, Prediction, WireError

__all__ = [
    "SerdeError",
    "array_from_proto",
    "array_to_proto",
    "embed_request",
    "embed_response",
    "embed_response_from_proto",
    "party_info_from_proto",
    "party_info_to_proto",
    "predict_request_from_proto",
    "predict_request_to_proto",
    "predictions_from_proto",
    "predictions_to_proto",
]

_LE_F32 = np.dtype("<f4")


class SerdeError(WireError):
    """A message does not decode into what it claims (dtype, shape, byte length)."""


def array_to_proto(array: np.ndarray) -> tensor_pb2.Tensor:
    """Pack a float array as little-endian float32 bytes with its shape."""
    packed = np.ascontiguousarray(array, dtype=_LE_F32)
    return tensor_pb2.Tensor(data=packed.tobytes(), shape=list(packed.shape), dtype="float32")


def array_from_proto(tensor: tensor_pb2.Tensor, *, what: str = "tensor") -> np.ndarray:
    """Decode a Tensor; wrong dtype, negative dims or a byte length that does not match the shape
    are refused."""
    if tensor.dtype != "float32":
        raise SerdeError(f"{what}: dtype '{tensor.dtype}' is not float32")
    shape = tuple(int(d) for d in tensor.shape)
    if any(d < 0 for d in shape):
        raise SerdeError(f"{what}: negative dimension in shape {shape}")
    expected = (
        math.prod(shape) * 4
    )  # exact: an int64 product of absurd dims wraps (to 0, passing the check)
    if len(tensor.data) != expected:
        raise SerdeError(
            f"{what}: {len(tensor.data)} bytes do not hold a float32 tensor of shape {shape}"
        )
    try:
        values = np.frombuffer(tensor.data, dtype=_LE_F32).reshape(shape)
    except ValueError as exc:  # numpy's own limits: too many dims, an empty array of absurd extent
        raise SerdeError(f"{what}: shape {shape} cannot be decoded ({exc})") from None
    return values.astype(np.float32)


def embed_request(sample_ids: Sequence[int]) -> party_pb2.EmbedRequest:
    """An EmbedRequest for ``sample_ids``."""
    return party_pb2.EmbedRequest(sample_ids=[int(i) for i in sample_ids])


def embed_response(embeddings: np.ndarray, party: int) -> party_pb2.EmbedResponse:
    """A party's answer: its (n, e) embeddings as a float32 tensor and its index."""
    return party_pb2.EmbedResponse(embeddings=array_to_proto(embeddings), party=party)


def embed_response_from_proto(
    msg: party_pb2.EmbedResponse, *, what: str = "embeddings"
) -> tuple[np.ndarray, int]:
    """The (n, e) embeddings and the answering party's index of an EmbedResponse."""
    return array_from_proto(msg.embeddings, what=what), int(msg.party)


def party_info_to_proto(info: PartyInfo) -> party_pb2.PartyInfo:
    """A :class:`PartyInfo` as its message."""
    return party_pb2.PartyInfo(**info.__dict__)


def party_info_from_proto(msg: party_pb2.PartyInfo) -> PartyInfo:
    """A PartyInfo message as a :class:`PartyInfo`."""
    return PartyInfo(
        index=msg.index,
        name=msg.name,
        feature_dim=msg.feature_dim,
        emb_dim=msg.emb_dim,
        dataset=msg.dataset,
        num_samples=msg.num_samples,
        num_parties=msg.num_parties,
    )


def predict_request_to_proto(
    sample_ids: Sequence[int], defense: str, certify: bool
) -> fusion_pb2.PredictRequest:
    """A PredictRequest; an empty ``defense`` asks for the server's default."""
    return fusion_pb2.PredictRequest(sample_ids=list(sample_ids), defense=defense, certify=certify)


def predict_request_from_proto(msg: fusion_pb2.PredictRequest) -> tuple[list[int], str, bool]:
    """(sample ids, defense, certify) of a PredictRequest."""
    return list(msg.sample_ids), msg.defense, msg.certify


def predictions_to_proto(predictions: Sequence[Prediction]) -> fusion_pb2.PredictResponse:
    """Predictions as a PredictResponse, the certificate only where there is one."""
    out = fusion_pb2.PredictResponse()
    for p in predictions:
        msg = out.predictions.add()
        msg.sample_id, msg.label, msg.defense = p.sample_id, p.label, p.defense
        msg.probabilities.extend(p.probabilities)
        msg.party_scores.extend(p.party_scores)
        msg.flagged_parties.extend(p.flagged_parties)
        msg.missing_parties.extend(p.missing_parties)
        if p.certificate is not None:
            msg.certificate.CopyFrom(fusion_pb2.Certificate(**p.certificate.__dict__))
    return out


def predictions_from_proto(msg: fusion_pb2.PredictResponse) -> list[Prediction]:
    """A PredictResponse as :class:`Prediction` objects, in order."""
    return [
        Prediction(
            sample_id=p.sample_id,
            label=p.label,
            probabilities=list(p.probabilities),
            party_scores=list(p.party_scores),
            flagged_parties=list(p.flagged_parties),
            missing_parties=list(p.missing_parties),
            defense=p.defense,
            certificate=Certificate(
                kind=p.certificate.kind,
                certified_parties=p.certificate.certified_parties,
                radius=p.certificate.radius,
                label=p.certificate.label,
            )
            if p.HasField("certificate")
            else None,
        )
        for p in msg.predictions
    ]
