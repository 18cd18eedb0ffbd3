"""The only module that touches protobuf: tensors, party descriptions and predictions to and from
the wire, and the Open Inference Protocol v2 messages (``inference.*``) to and from their
transport-free form.

The types themselves are in :mod:`copur_client.wire`. The ``inference`` stubs are imported on first
use, not with this module: tritonclient's own stubs hold the same ``inference.*`` names, and two
copies in one process's default descriptor pool refuse to load, so a program that imports this
module for ``copur.v1`` can still import ``tritonclient.grpc``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from copur_client.v1 import fusion_pb2, party_pb2, tensor_pb2
from copur_client.wire import (
    BundleRef,
    BundlesStatus,
    Certificate,
    OipInferRequest,
    OipInferResponse,
    OipModelMetadata,
    OipParam,
    OipRequestedOutput,
    OipServerMetadata,
    OipTensor,
    OipTensorMeta,
    PartyBundles,
    PartyInfo,
    Prediction,
    WireError,
)

if TYPE_CHECKING:
    from copur_client.oip import grpc_predict_v2_pb2 as oip_pb2

__all__ = [
    "SerdeError",
    "array_from_proto",
    "array_to_proto",
    "bundle_list_from_proto",
    "bundle_list_to_proto",
    "bundles_status_from_proto",
    "bundles_status_to_proto",
    "embed_request",
    "embed_response",
    "embed_response_from_proto",
    "oip_infer_request_from_proto",
    "oip_infer_request_to_proto",
    "oip_infer_response_from_proto",
    "oip_infer_response_to_proto",
    "oip_model_metadata_from_proto",
    "oip_model_metadata_to_proto",
    "oip_model_ready_to_proto",
    "oip_model_ref_from_proto",
    "oip_params_from_proto",
    "oip_server_live_to_proto",
    "oip_server_metadata_from_proto",
    "oip_server_metadata_to_proto",
    "oip_server_ready_to_proto",
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


def embed_request(sample_ids: Sequence[int], bundle_id: str = "") -> party_pb2.EmbedRequest:
    """An EmbedRequest for ``sample_ids`` by bundle ``bundle_id`` (empty: the party's current)."""
    return party_pb2.EmbedRequest(sample_ids=[int(i) for i in sample_ids], bundle_id=bundle_id)


def embed_response(
    embeddings: np.ndarray, party: int, bundle_id: str = ""
) -> party_pb2.EmbedResponse:
    """A party's answer: its (n, e) embeddings as a float32 tensor, its index and the bundle that
    produced them."""
    return party_pb2.EmbedResponse(
        embeddings=array_to_proto(embeddings), party=party, bundle_id=bundle_id
    )


def embed_response_from_proto(
    msg: party_pb2.EmbedResponse, *, what: str = "embeddings"
) -> tuple[np.ndarray, int]:
    """The (n, e) embeddings and the answering party's index of an EmbedResponse."""
    return array_from_proto(msg.embeddings, what=what), int(msg.party)


def party_info_to_proto(info: PartyInfo) -> party_pb2.PartyInfo:
    """A :class:`PartyInfo` as its message."""
    return party_pb2.PartyInfo(**{**info.__dict__, "bundles": list(info.bundles)})


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
        bundle_id=msg.bundle_id,
        bundles=tuple(msg.bundles),
    )


def bundle_list_to_proto(bundles: Sequence[BundleRef]) -> party_pb2.BundleList:
    """A party's bundles (current first) as a BundleList."""
    return party_pb2.BundleList(
        bundles=[party_pb2.HeldBundle(bundle_id=b.bundle_id, path=b.path) for b in bundles]
    )


def bundle_list_from_proto(msg: party_pb2.BundleList) -> list[BundleRef]:
    """A BundleList as :class:`BundleRef` objects, current first."""
    return [BundleRef(bundle_id=b.bundle_id, path=b.path) for b in msg.bundles]


def bundles_status_to_proto(status: BundlesStatus) -> fusion_pb2.BundlesStatus:
    """The fusion center's :class:`BundlesStatus` as its message."""

    def refs(items: Sequence[BundleRef]) -> list[fusion_pb2.BundleRef]:
        return [fusion_pb2.BundleRef(bundle_id=b.bundle_id, path=b.path) for b in items]

    return fusion_pb2.BundlesStatus(
        active=status.active,
        held=refs(status.held),
        history=refs(status.history),
        parties=[
            fusion_pb2.PartyBundles(party=p.party, bundles=list(p.bundles), state=p.state)
            for p in status.parties
        ],
    )


def bundles_status_from_proto(msg: fusion_pb2.BundlesStatus) -> BundlesStatus:
    """A BundlesStatus message as a :class:`BundlesStatus`."""
    return BundlesStatus(
        active=msg.active,
        held=[BundleRef(bundle_id=b.bundle_id, path=b.path) for b in msg.held],
        history=[BundleRef(bundle_id=b.bundle_id, path=b.path) for b in msg.history],
        parties=[
            PartyBundles(party=p.party, bundles=list(p.bundles), state=p.state) for p in msg.parties
        ],
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
        msg.missing_reasons.extend(p.missing_reasons)
        msg.bundle_id = p.bundle_id
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
            bundle_id=p.bundle_id,
            missing_reasons=list(p.missing_reasons),
        )
        for p in msg.predictions
    ]


# -- the Open Inference Protocol v2 (package ``inference``) --------------------------------------

# The InferTensorContents field that holds each datatype's elements (FP16, BF16: raw bytes only).
_CONTENTS_FIELD_OF: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_CONTENTS_FIELDS = tuple(dict.fromkeys(_CONTENTS_FIELD_OF.values()))


def _oip() -> ModuleType:
    """The generated ``inference`` messages, imported on first use (see the module docstring)."""
    from copur_client.oip import grpc_predict_v2_pb2

    return grpc_predict_v2_pb2


def oip_params_from_proto(params: Mapping[str, Any]) -> dict[str, OipParam]:
    """An ``InferParameter`` map as plain values; a parameter that holds none of the protocol's
    choices (bool, int64, string; e.g. a Triton client's double) is None."""
    out: dict[str, OipParam] = {}
    for key, value in params.items():
        choice = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, choice) if choice else None
    return out


def _params_to_proto(target: Any, params: Mapping[str, OipParam]) -> None:
    for key, value in params.items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int) and -(2**63) <= value < 2**63:
            target[key].int64_param = value
        elif isinstance(value, str):
            target[key].string_param = value
        else:
            raise SerdeError(f"parameter {key!r}: {value!r} is not a bool, an int64 or a string")


def _flat(data: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for item in data:
        out.extend(_flat(item) if isinstance(item, list | tuple) else [item])
    return out


def _contents_to_proto(target: Any, tensor: OipTensor, *, what: str) -> None:
    if tensor.data is None:
        return
    field = _CONTENTS_FIELD_OF.get(tensor.datatype)
    if field is None:
        raise SerdeError(
            f"{what} {tensor.name!r}: datatype {tensor.datatype!r} has no contents field"
        )
    try:
        getattr(target.contents, field).extend(_flat(tensor.data))
    except (TypeError, ValueError) as exc:
        raise SerdeError(f"{what} {tensor.name!r}: data do not fit {field} ({exc})") from None


def _contents_from_proto(
    tensor: Any, raw: bytes | None, *, what: str
) -> tuple[list[Any] | None, bytes | None]:
    filled = [f for f in _CONTENTS_FIELDS if len(getattr(tensor.contents, f))]
    if len(filled) > 1:
        raise SerdeError(
            f"{what} {tensor.name!r}: contents in more than one field ({', '.join(filled)})"
        )
    if filled and raw is not None:
        raise SerdeError(f"{what} {tensor.name!r}: both contents and raw contents")
    if not filled:
        return None, raw
    expected = _CONTENTS_FIELD_OF.get(tensor.datatype)
    if filled[0] != expected:
        held = f"held in {expected}" if expected else "held in raw contents only"
        raise SerdeError(
            f"{what} {tensor.name!r}: contents in {filled[0]}, but datatype "
            f"{tensor.datatype[:16]!r} is {held}"
        )
    return list(getattr(tensor.contents, filled[0])), None


def _raws(tensors: Sequence[OipTensor], *, what: str) -> list[bytes]:
    """Every tensor's raw bytes, or none: the protocol's raw contents are all-or-nothing."""
    raws = [t.raw for t in tensors if t.raw is not None]
    if raws and len(raws) != len(tensors):
        raise SerdeError(
            f"{what}s: raw contents for some tensors only ({len(raws)} of {len(tensors)})"
        )
    return raws


def _tensor_from_proto(msg: Any, raw: bytes | None, *, what: str) -> OipTensor:
    data, raw = _contents_from_proto(msg, raw, what=what)
    return OipTensor(
        name=msg.name,
        datatype=msg.datatype,
        shape=tuple(int(d) for d in msg.shape),
        parameters=oip_params_from_proto(msg.parameters),
        data=data,
        raw=raw,
    )


def _raw_for(raws: Sequence[bytes], count: int, *, what: str) -> list[bytes | None]:
    if raws and len(raws) != count:
        raise SerdeError(f"{len(raws)} raw contents for {count} {what}s")
    return list(raws) if raws else [None] * count


def oip_infer_request_from_proto(msg: oip_pb2.ModelInferRequest) -> OipInferRequest:
    """A ModelInferRequest in its transport-free form; each input's elements are its contents
    field or its entry of ``raw_input_contents``. SerdeError when they contradict each other
    (contents in two fields, or in the field of another datatype, raw and contents together, a
    raw entry count other than the input count); whether the elements fit the shape is the
    receiver's check."""
    raws = _raw_for(list(msg.raw_input_contents), len(msg.inputs), what="input")
    return OipInferRequest(
        model_name=msg.model_name,
        model_version=msg.model_version,
        id=msg.id,
        parameters=oip_params_from_proto(msg.parameters),
        inputs=tuple(
            _tensor_from_proto(t, raw, what="input")
            for t, raw in zip(msg.inputs, raws, strict=True)
        ),
        outputs=tuple(
            OipRequestedOutput(name=o.name, parameters=oip_params_from_proto(o.parameters))
            for o in msg.outputs
        ),
    )


def oip_infer_request_to_proto(request: OipInferRequest) -> oip_pb2.ModelInferRequest:
    """An inference request as its message: raw bytes in ``raw_input_contents`` (every input or
    none), data in the contents field of each input's datatype."""
    pb = _oip()
    msg = pb.ModelInferRequest(
        model_name=request.model_name, model_version=request.model_version, id=request.id
    )
    _params_to_proto(msg.parameters, request.parameters)
    msg.raw_input_contents.extend(_raws(request.inputs, what="input"))
    for tensor in request.inputs:
        item = msg.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        _params_to_proto(item.parameters, tensor.parameters)
        _contents_to_proto(item, tensor, what="input")
    for output in request.outputs:
        _params_to_proto(msg.outputs.add(name=output.name).parameters, output.parameters)
    return msg


def oip_infer_response_to_proto(response: OipInferResponse) -> oip_pb2.ModelInferResponse:
    """An inference response as its message: raw bytes in ``raw_output_contents`` (every output or
    none: what tritonclient reads), data in the contents field of each output's datatype."""
    pb = _oip()
    msg = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    _params_to_proto(msg.parameters, response.parameters)
    msg.raw_output_contents.extend(_raws(response.outputs, what="output"))
    for tensor in response.outputs:
        item = msg.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        _params_to_proto(item.parameters, tensor.parameters)
        _contents_to_proto(item, tensor, what="output")
    return msg


def oip_infer_response_from_proto(msg: oip_pb2.ModelInferResponse) -> OipInferResponse:
    """A ModelInferResponse in its transport-free form (SerdeError as for requests)."""
    raws = _raw_for(list(msg.raw_output_contents), len(msg.outputs), what="output")
    return OipInferResponse(
        model_name=msg.model_name,
        model_version=msg.model_version,
        id=msg.id,
        parameters=oip_params_from_proto(msg.parameters),
        outputs=tuple(
            _tensor_from_proto(t, raw, what="output")
            for t, raw in zip(msg.outputs, raws, strict=True)
        ),
    )


def oip_model_ref_from_proto(msg: Any) -> tuple[str, str]:
    """(name, version) of a ModelReadyRequest or ModelMetadataRequest; version "" when not given."""
    return msg.name, msg.version


def oip_server_live_to_proto(live: bool) -> oip_pb2.ServerLiveResponse:
    """A ServerLiveResponse."""
    return _oip().ServerLiveResponse(live=live)


def oip_server_ready_to_proto(ready: bool) -> oip_pb2.ServerReadyResponse:
    """A ServerReadyResponse."""
    return _oip().ServerReadyResponse(ready=ready)


def oip_model_ready_to_proto(ready: bool) -> oip_pb2.ModelReadyResponse:
    """A ModelReadyResponse."""
    return _oip().ModelReadyResponse(ready=ready)


def oip_server_metadata_to_proto(meta: OipServerMetadata) -> oip_pb2.ServerMetadataResponse:
    """A ServerMetadataResponse."""
    return _oip().ServerMetadataResponse(
        name=meta.name, version=meta.version, extensions=list(meta.extensions)
    )


def oip_server_metadata_from_proto(msg: oip_pb2.ServerMetadataResponse) -> OipServerMetadata:
    """A ServerMetadataResponse as :class:`OipServerMetadata`."""
    return OipServerMetadata(name=msg.name, version=msg.version, extensions=tuple(msg.extensions))


def oip_model_metadata_to_proto(meta: OipModelMetadata) -> oip_pb2.ModelMetadataResponse:
    """A ModelMetadataResponse."""
    pb = _oip()
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=meta.name,
        versions=list(meta.versions),
        platform=meta.platform,
        inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.inputs],
        outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.outputs],
    )


def oip_model_metadata_from_proto(msg: oip_pb2.ModelMetadataResponse) -> OipModelMetadata:
    """A ModelMetadataResponse as :class:`OipModelMetadata`."""

    def meta(t: Any) -> OipTensorMeta:
        return OipTensorMeta(name=t.name, datatype=t.datatype, shape=tuple(t.shape))

    return OipModelMetadata(
        name=msg.name,
        versions=tuple(msg.versions),
        platform=msg.platform,
        inputs=tuple(meta(t) for t in msg.inputs),
        outputs=tuple(meta(t) for t in msg.outputs),
    )
