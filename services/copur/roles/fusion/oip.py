"""The Open Inference Protocol v2 (KServe / Triton "v2") over the fusion handler, free of any
transport: the one model it serves, the checks that turn an inference request into the handler's
arguments, and the outputs that turn its predictions into a response. Both front doors (HTTP
``/v2``, gRPC ``inference.GRPCInferenceService``) are thin adapters over these functions; nothing
here does I/O.

The model ``copur`` takes one input, ``sample_ids`` (INT64, shape [N], flat data), and the request
parameters ``defense`` (string) and ``certify`` (bool). It answers ``label`` INT64 [N],
``probabilities`` FP32 [N, classes], ``party_scores`` FP32 [N, M], ``flagged`` and ``missing``
BOOL [N, M], and when certifying also ``certified_parties`` INT64 [N], ``certificate_radius``
FP32 [N] and ``certificate_label`` INT64 [N] (-1, 0.0 and -1 for a defense without a
certificate). ``certify`` adds the certificate outputs to the default set; naming a certificate
output certifies whatever ``certify`` says. The response parameters name the defense and, when
certifying, the certificate's kind. Every refusal is a domain error whose one line names what is
wrong."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from copur import __version__
from copur.science.bundle import Manifest
from copur.transport.grpcutil import InvalidRequest, NotFound
from copur_client.wire import (
    Certificate,
    OipInferRequest,
    OipInferResponse,
    OipModelMetadata,
    OipParam,
    OipRequestedOutput,
    OipServerMetadata,
    OipTensor,
    OipTensorMeta,
    Prediction,
)

__all__ = [
    "BINARY_DATA",
    "BINARY_DATA_OUTPUT",
    "BINARY_DATA_SIZE",
    "CERTIFICATE_OUTPUTS",
    "EXTENSIONS",
    "INPUT",
    "INPUT_DATATYPE",
    "MODEL_NAME",
    "OUTPUTS",
    "PLATFORM",
    "SERVER_NAME",
    "OipModel",
    "OipQuery",
    "Wanted",
    "bundle_version",
    "infer_response",
    "parse_infer",
    "server_metadata",
]

MODEL_NAME: Final = "copur"
"""The one model the fusion center serves over the protocol."""
PLATFORM: Final = "copur-fusion"
SERVER_NAME: Final = "copur-fusion"
INPUT: Final = "sample_ids"
INPUT_DATATYPE: Final = "INT64"
BINARY_DATA_SIZE: Final = "binary_data_size"
"""An input's parameter (HTTP binary extension): how many bytes after the JSON header hold it."""
BINARY_DATA_OUTPUT: Final = "binary_data_output"
"""A request parameter (HTTP binary extension): every output in binary form unless it says not."""
BINARY_DATA: Final = "binary_data"
"""A requested output's parameter (HTTP binary extension): this output in binary form or not."""
EXTENSIONS: Final = ("binary_tensor_data", "parameters")
"""What :func:`server_metadata` lists: binary tensors both ways over HTTP (Triton's
``binary_tensor_data``) and request parameters (``defense``, ``certify``)."""

OUTPUTS: Final = ("label", "probabilities", "party_scores", "flagged", "missing")
"""Every answer's outputs, in the order they are returned when a request names none."""
CERTIFICATE_OUTPUTS: Final = ("certified_parties", "certificate_radius", "certificate_label")
"""The certificate's outputs: answered by default with ``certify``, or when a request names them."""
_DATATYPE: Final = {
    "label": "INT64",
    "probabilities": "FP32",
    "party_scores": "FP32",
    "flagged": "BOOL",
    "missing": "BOOL",
    "certified_parties": "INT64",
    "certificate_radius": "FP32",
    "certificate_label": "INT64",
}
_LAYOUT: Final = {"INT64": "<i8", "FP32": "<f4", "BOOL": "|b1"}  # raw bytes: little-endian
_REQUEST_PARAMS: Final = {"defense": str, "certify": bool, BINARY_DATA_OUTPUT: bool}
_INPUT_PARAMS: Final = {BINARY_DATA_SIZE: int}
_OUTPUT_PARAMS: Final = {BINARY_DATA: bool}
_TYPE_NAMES: Final = {bool: "a bool", int: "an integer", str: "a string"}
_INT64: Final = (-(2**63), 2**63 - 1)
_NO_CERTIFICATE: Final = Certificate(kind="none")
_MAX_NAME: Final = 64  # a client's names are quoted up to this many characters


def _quote(name: str) -> str:
    return repr(name[:_MAX_NAME])


def bundle_version(manifest: Manifest) -> str:
    """The model version: the bundle's id (:attr:`Manifest.bundle_id`, 16 hex digits of the
    SHA-256 of its manifest, which holds every file's digest). Another training or calibration is
    another version; a rolling upgrade switches the version served."""
    return manifest.bundle_id


@dataclass(frozen=True, kw_only=True)
class OipModel:
    """The one model served: its name and version, the classes and parties its outputs are wide,
    the defense used when a request names none."""

    name: str = MODEL_NAME
    version: str
    num_classes: int
    num_parties: int
    default_defense: str

    @classmethod
    def from_manifest(cls, manifest: Manifest, *, default_defense: str) -> OipModel:
        """The model of a bundle: version by :func:`bundle_version`, widths from the manifest."""
        return cls(
            version=bundle_version(manifest),
            num_classes=manifest.num_classes,
            num_parties=manifest.num_parties,
            default_defense=default_defense,
        )

    def check(self, name: str, version: str = "") -> None:
        """NotFound (404, NOT_FOUND) unless ``name`` is this model and ``version`` is empty or
        its version."""
        if name != self.name:
            raise NotFound(f"unknown model {_quote(name)} (served: {self.name!r})")
        if version and version != self.version:
            raise NotFound(
                f"model {self.name!r} has no version {_quote(version)} (served: {self.version!r})"
            )

    def metadata(self) -> OipModelMetadata:
        """Inputs and outputs with datatypes and shapes; -1 is the variable batch dimension."""
        widths = {"probabilities": self.num_classes}
        widths |= {name: self.num_parties for name in ("party_scores", "flagged", "missing")}
        outputs = tuple(
            OipTensorMeta(
                name=name,
                datatype=_DATATYPE[name],
                shape=(-1, widths[name]) if name in widths else (-1,),
            )
            for name in (*OUTPUTS, *CERTIFICATE_OUTPUTS)
        )
        return OipModelMetadata(
            name=self.name,
            versions=(self.version,),
            platform=PLATFORM,
            inputs=(OipTensorMeta(name=INPUT, datatype=INPUT_DATATYPE, shape=(-1,)),),
            outputs=outputs,
        )


def server_metadata() -> OipServerMetadata:
    """The server's name, version (the package's) and the extensions it supports."""
    return OipServerMetadata(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)


@dataclass(frozen=True)
class Wanted:
    """An output to answer, and whether in binary form (HTTP only: gRPC answers every output as
    raw bytes)."""

    name: str
    binary: bool = False


@dataclass(frozen=True, kw_only=True)
class OipQuery:
    """A checked inference request: the handler's arguments (``sample_ids``, ``defense`` None for
    the server's default, ``certify``), the outputs to answer in their order (as often as asked),
    and the request's id."""

    sample_ids: list[int]
    defense: str | None
    certify: bool
    outputs: tuple[Wanted, ...]
    request_id: str


def _named(key: str, owner: str | None) -> str:
    """How a message names parameter ``key`` of the request (``owner`` None) or of a tensor."""
    return (
        f"request parameter {_quote(key)}"
        if owner is None
        else f"parameter {_quote(key)} of {owner}"
    )


def _param(params: Mapping[str, OipParam], key: str, kind: type, owner: str | None) -> Any:
    """``params[key]`` when it is of ``kind`` (bool is not an integer here), None when absent."""
    if key not in params:
        return None
    value = params[key]
    if value is None:
        raise InvalidRequest(
            f"{_named(key, owner)} holds no value of the protocol's types (bool, int64, string)"
        )
    if type(value) is not kind:
        raise InvalidRequest(
            f"{_named(key, owner)} must be {_TYPE_NAMES[kind]}, not {type(value).__name__}"
        )
    return value


def _known(params: Mapping[str, OipParam], known: Mapping[str, type], owner: str | None) -> None:
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InvalidRequest(
            f"unknown {_named(unknown[0], owner)} (known: {', '.join(sorted(known))})"
        )


def _elements(tensor: OipTensor, count: int, where: str) -> list[int]:
    if tensor.data is not None and tensor.raw is not None:
        raise InvalidRequest(f"{where} has both data and binary data")
    if tensor.raw is not None:
        size = count * 8
        if len(tensor.raw) != size:
            raise InvalidRequest(
                f"{where}: {len(tensor.raw)} bytes of binary data, shape {list(tensor.shape)} "
                f"of {INPUT_DATATYPE} needs {size}"
            )
        return [int(v) for v in np.frombuffer(tensor.raw, dtype="<i8")]
    if tensor.data is None:
        if count == 0:
            return []
        raise InvalidRequest(f"{where} has no data")
    values = tensor.data
    for k, value in enumerate(values):
        if type(value) is not int or not _INT64[0] <= value <= _INT64[1]:
            raise InvalidRequest(
                f"{where}: element {k} ({repr(value)[:24]}) is not an {INPUT_DATATYPE} integer"
            )
    if len(values) != count:
        raise InvalidRequest(
            f"{where}: shape {list(tensor.shape)} holds {count} elements, data has {len(values)}"
        )
    return values


def _sample_ids(inputs: Sequence[OipTensor]) -> list[int]:
    where = f"input {INPUT!r}"
    unknown = [t.name for t in inputs if t.name != INPUT]
    if unknown:
        raise InvalidRequest(f"unknown input {_quote(unknown[0])} (the model's input is {INPUT!r})")
    if not inputs:
        raise InvalidRequest(f"{where} is missing")
    if len(inputs) > 1:
        raise InvalidRequest(f"{where} is given {len(inputs)} times")
    tensor = inputs[0]
    _known(tensor.parameters, _INPUT_PARAMS, where)
    _param(tensor.parameters, BINARY_DATA_SIZE, int, where)
    if tensor.datatype != INPUT_DATATYPE:
        raise InvalidRequest(f"{where}: datatype {_quote(tensor.datatype)} is not {INPUT_DATATYPE}")
    shape = list(tensor.shape)
    if any(d < 0 for d in shape):
        raise InvalidRequest(f"{where}: negative dimension in shape {shape}")
    if len(shape) != 1:
        raise InvalidRequest(f"{where}: shape {shape[:8]} is not [N]")
    return _elements(tensor, shape[0], where)


def _outputs(
    wanted: Sequence[OipRequestedOutput], certify: bool, binary_default: bool
) -> tuple[Wanted, ...]:
    if not wanted:
        names = (*OUTPUTS, *CERTIFICATE_OUTPUTS) if certify else OUTPUTS
        return tuple(Wanted(name, binary_default) for name in names)
    out = []
    for output in wanted:
        name = output.name
        if name not in _DATATYPE:
            known = ", ".join((*OUTPUTS, *CERTIFICATE_OUTPUTS))
            raise InvalidRequest(f"unknown output {_quote(name)} (known: {known})")
        _known(output.parameters, _OUTPUT_PARAMS, f"output {name!r}")
        as_binary = _param(output.parameters, BINARY_DATA, bool, f"output {name!r}")
        out.append(Wanted(name, binary_default if as_binary is None else as_binary))
    return tuple(out)


def parse_infer(request: OipInferRequest, model: OipModel) -> OipQuery:
    """The handler's arguments and the answer's shape for ``request``, or the first thing wrong
    with it: NotFound for another model or version; InvalidRequest naming an unknown, mistyped
    or empty parameter, an unknown, missing or repeated input, a datatype other than INT64, a
    shape other than [N], data that are not a flat list of INT64 integers or do not fill the
    shape, or an unknown output. The sample ids themselves (empty, duplicates, unknown, too
    many) are the handler's to judge, as for ``/v1/predict``."""
    model.check(request.model_name, request.model_version)
    params = request.parameters
    _known(params, _REQUEST_PARAMS, None)
    defense = _param(params, "defense", str, None)
    if defense == "":
        raise InvalidRequest("request parameter 'defense' is empty (omit it for the default)")
    certify = bool(_param(params, "certify", bool, None))
    binary_default = bool(_param(params, BINARY_DATA_OUTPUT, bool, None))
    sample_ids = _sample_ids(request.inputs)
    outputs = _outputs(request.outputs, certify, binary_default)
    return OipQuery(
        sample_ids=sample_ids,
        defense=defense,
        certify=certify or any(w.name in CERTIFICATE_OUTPUTS for w in outputs),
        outputs=outputs,
        request_id=request.id,
    )


def _arrays(predictions: Sequence[Prediction], model: OipModel) -> dict[str, np.ndarray]:
    n, m = len(predictions), model.num_parties
    flagged = np.zeros((n, m), dtype=bool)
    missing = np.zeros((n, m), dtype=bool)
    for row, p in enumerate(predictions):
        flagged[row, p.flagged_parties] = True
        missing[row, p.missing_parties] = True
    certs = [p.certificate or _NO_CERTIFICATE for p in predictions]
    return {
        "label": np.array([p.label for p in predictions], dtype=np.int64),
        "probabilities": np.array([p.probabilities for p in predictions], dtype=np.float32).reshape(
            n, model.num_classes
        ),
        "party_scores": np.array([p.party_scores for p in predictions], dtype=np.float32).reshape(
            n, m
        ),
        "flagged": flagged,
        "missing": missing,
        "certified_parties": np.array([c.certified_parties for c in certs], dtype=np.int64),
        "certificate_radius": np.array([c.radius for c in certs], dtype=np.float32),
        "certificate_label": np.array([c.label for c in certs], dtype=np.int64),
    }


def infer_response(
    query: OipQuery, predictions: Sequence[Prediction], model: OipModel, *, all_raw: bool
) -> OipInferResponse:
    """The response to ``query`` from the handler's ``predictions`` (one per sample id, in
    order): the asked outputs in the asked order, each as ``raw`` little-endian bytes when
    ``all_raw`` (gRPC) or asked in binary form, else as a flat row-major ``data`` list of Python
    numbers (FP32 values exactly the float32 ones); parameters ``defense`` and, when
    certifying, ``certificate`` (``vote``, ``smoothing`` or ``none``)."""
    arrays = _arrays(predictions, model)
    outputs = []
    for wanted in query.outputs:
        name = wanted.name
        array = arrays[name]
        datatype = _DATATYPE[name]
        raw = all_raw or wanted.binary
        outputs.append(
            OipTensor(
                name=name,
                datatype=datatype,
                shape=tuple(int(d) for d in array.shape),
                raw=np.ascontiguousarray(array, dtype=_LAYOUT[datatype]).tobytes() if raw else None,
                data=None if raw else array.ravel().tolist(),
            )
        )
    parameters: dict[str, OipParam] = {
        "defense": predictions[0].defense if predictions else model.default_defense
    }
    if query.certify:
        kinds = {(p.certificate or _NO_CERTIFICATE).kind for p in predictions}
        parameters["certificate"] = kinds.pop() if len(kinds) == 1 else "none"
    # The version that answered: the bundle the predictions name (a switch may have happened
    # since the request was checked against the model).
    answered = predictions[0].bundle_id if predictions and predictions[0].bundle_id else ""
    return OipInferResponse(
        model_name=model.name,
        model_version=answered or model.version,
        id=query.request_id,
        parameters=parameters,
        outputs=tuple(outputs),
    )
