"""The Open Inference Protocol v2 over HTTP: the ``/v2`` routes of the fusion center's FastAPI
app, a thin adapter over :mod:`copur.roles.fusion.oip` and the handler (``POST
/v2/models/copur/infer`` asks ``handler.predict`` as ``POST /v1/predict`` does).

Security: the metadata routes (``GET /v2``, ``GET /v2/models/{name}``) and inference need an API
key with scope ``predict``: the metadata describe the deployment (its version, the bundle's
widths) to callers who may predict, no one else. ``/v2/health/live``, ``/v2/health/ready`` and
``/v2/models/{name}/ready`` stay open like ``/healthz`` and ``/readyz``: probes carry no key and
learn one boolean.

Errors: every refusal on these routes, auth refusals included (with their ``WWW-Authenticate`` or
``Retry-After``), is the protocol's ``{"error": "<one line>"}`` with the status of the one mapping
(:func:`copur.transport.grpcutil.http_status`); ``/v1`` keeps ``{"detail": ...}``.

Binary tensors (Triton's ``binary_tensor_data`` extension, what ``tritonclient.http`` sends by
default): with the header ``Inference-Header-Content-Length: n`` the body is n bytes of JSON and
then each input's bytes, as many as its parameter ``binary_data_size`` says, in input order
(INT64 little-endian). Outputs come back binary when the request parameter
``binary_data_output`` or the output's ``binary_data`` parameter asks: the answer is then
``application/octet-stream`` with the same header, each such output's JSON carrying its
``binary_data_size``. The body is read up to ``fusion.max_body_bytes`` (413 beyond) in either
form; a JSON body may come without a Content-Type (tritonclient sends none)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from fastapi import APIRouter, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from copur.errors import CopurError
from copur.roles.fusion.handler import FusionHandler
from copur.roles.fusion.oip import (
    BINARY_DATA,
    BINARY_DATA_OUTPUT,
    BINARY_DATA_SIZE,
    CERTIFICATE_OUTPUTS,
    INPUT,
    INPUT_DATATYPE,
    OUTPUTS,
    infer_response,
    parse_infer,
    server_metadata,
)
from copur.science.defenses import DEFENSES
from copur.transport.auth.guard import Authenticator
from copur.transport.auth.web import require
from copur.transport.grpcutil import (
    InvalidRequest,
    SchemaMismatch,
    UnsupportedMediaType,
    http_status,
)
from copur.transport.webkit import (
    error_response,
    is_json_media,
    media_type,
    parse_json,
    read_body,
    validation_detail,
)
from copur_client.wire import OipInferRequest, OipInferResponse, OipRequestedOutput, OipTensor

__all__ = ["TRANSPORT", "OipRoute", "infer_body_schema", "oip_router"]

TRANSPORT: Final = "http-v2"
"""The ``transport`` label of the request metrics of ``POST /v2/models/{name}/infer``."""
HEADER: Final = "Inference-Header-Content-Length"
OCTET_STREAM: Final = "application/octet-stream"

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr


class OipRoute(APIRoute):
    """A route whose refusals are the protocol's error object: domain errors (the auth
    dependency's included) with the status of the one mapping, request validation errors as
    422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler of the route, its errors answered as ``{"error": "<one line>"}``."""
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await inner(request)
            except CopurError as exc:
                return error_response(exc, key="error")
            except RequestValidationError as exc:
                return JSONResponse(
                    status_code=422, content={"error": validation_detail(exc.errors())}
                )

        return handler


# -- the request body: parsed for JSON types here, judged by the core
# ---------------------------------------------------------------------------------------------
class _TensorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    datatype: StrictStr
    shape: list[StrictInt | StrictFloat]  # 2.0 is a JSON Schema integer: _integral reads it
    parameters: dict[str, Scalar] = Field(default_factory=dict)
    data: list[Any] | None = None


class _OutputIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    parameters: dict[str, Scalar] = Field(default_factory=dict)


class _InferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: StrictStr = ""
    parameters: dict[str, Scalar] = Field(default_factory=dict)
    inputs: list[_TensorIn]
    outputs: list[_OutputIn] = Field(default_factory=list)


def infer_body_schema(max_request_ids: int) -> dict[str, Any]:
    """What a JSON inference body may hold, as OpenAPI documents it, exactly: the parse refuses
    other JSON types (422), the core other names, datatypes, shapes (one that is not the data's
    length included) and parameters, the handler empty, duplicate or too many ids (400, 413); a
    body the schema accepts is refused only for unknown ids (404) or too few parties (503)."""
    return {
        "title": "InferenceRequest",
        "description": "The JSON form of an inference request for the model `copur` (the binary "
        f"form adds the header `{HEADER}` and `{BINARY_DATA_SIZE}` input parameters: see the "
        "operation).",
        "type": "object",
        "additionalProperties": False,
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string", "description": "Returned in the response."},
            "parameters": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "defense": {
                        "type": "string",
                        "enum": list(DEFENSES),
                        "description": "The defense to run (omitted: the server's default).",
                    },
                    "certify": {
                        "type": "boolean",
                        "description": "Add the certificate outputs to the default ones.",
                    },
                    BINARY_DATA_OUTPUT: {
                        "type": "boolean",
                        "description": "Every output in binary form unless it says otherwise.",
                    },
                },
            },
            "inputs": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "datatype", "shape", "data"],
                    "properties": {
                        "name": {"enum": [INPUT]},
                        "datatype": {"enum": [INPUT_DATATYPE]},
                        "shape": {"description": "[N]: the number of ids in `data`."},
                        "parameters": {"type": "object", "additionalProperties": False},
                        "data": {
                            "type": "array",
                            "uniqueItems": True,
                            "items": {
                                "type": "integer",
                                "minimum": -(2**63),
                                "maximum": 2**63 - 1,
                            },
                            "description": "The sample ids.",
                        },
                    },
                    # The shape is the data's length: one branch per N, as JSON Schema cannot
                    # compare two values.
                    "anyOf": [
                        {
                            "properties": {
                                "shape": {"const": [n]},
                                "data": {"minItems": n, "maxItems": n},
                            }
                        }
                        for n in range(1, max_request_ids + 1)
                    ],
                },
            },
            "outputs": {
                "type": "array",
                "description": f"Omitted or empty: {', '.join(OUTPUTS)} (and with certify "
                f"{', '.join(CERTIFICATE_OUTPUTS)}); else these, in this order, as often as "
                "named (a certificate output certifies).",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "enum": [*OUTPUTS, *CERTIFICATE_OUTPUTS]},
                        "parameters": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {BINARY_DATA: {"type": "boolean"}},
                        },
                    },
                },
            },
        },
    }


async def _read_infer(request: Request, max_bytes: int) -> OipInferRequest:
    """The request body as an inference request (model fields left for the path): JSON or, with
    the header, JSON and binary tensors; refusals as in the module docstring."""
    media = media_type(request)
    if media and not is_json_media(media) and media != OCTET_STREAM:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json or {OCTET_STREAM} (binary tensors), not {media}"
        )
    header = request.headers.get(HEADER)
    if media == OCTET_STREAM and header is None:
        raise InvalidRequest(f"a {OCTET_STREAM} body needs the header {HEADER}")
    body = await read_body(request, max_bytes)
    tail = b""
    if header is not None:
        length = header.strip()
        if not re.fullmatch(r"[0-9]{1,19}", length) or int(length) > len(body):
            raise InvalidRequest(
                f"{HEADER} {length[:24]!r} is not a length within the body's {len(body)} bytes"
            )
        body, tail = body[: int(length)], body[int(length) :]
    try:
        parsed = _InferIn.model_validate(parse_json(body))
    except ValidationError as exc:
        raise SchemaMismatch(validation_detail(exc.errors())) from None
    return _request_of(parsed, tail, binary=header is not None)


def _integral(values: list[Any]) -> list[Any]:
    """``values`` with every float that is an integer (JSON Schema's ``2.0``) read as an int;
    anything else as it is, for the core to judge."""
    return [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]


def _request_of(parsed: _InferIn, tail: bytes, *, binary: bool) -> OipInferRequest:
    inputs, offset = [], 0
    for tensor in parsed.inputs:
        raw = None
        shape = _integral(tensor.shape)
        if not all(type(d) is int for d in shape):
            raise InvalidRequest(
                f"input {tensor.name[:64]!r}: shape {repr(tensor.shape)[:64]} is not a list of "
                "integers"
            )
        if BINARY_DATA_SIZE in tensor.parameters:
            where = f"input {tensor.name[:64]!r}"
            if not binary:
                raise InvalidRequest(f"{where} has {BINARY_DATA_SIZE} but there is no {HEADER}")
            size = tensor.parameters[BINARY_DATA_SIZE]
            if type(size) is not int or size < 0:
                raise InvalidRequest(f"{where}: {BINARY_DATA_SIZE} is not a non-negative integer")
            if offset + size > len(tail):
                raise InvalidRequest(
                    f"{where}: {BINARY_DATA_SIZE} {size} runs past the {len(tail)} bytes of "
                    "binary data"
                )
            raw, offset = tail[offset : offset + size], offset + size
        inputs.append(
            OipTensor(
                name=tensor.name,
                datatype=tensor.datatype,
                shape=tuple(shape),
                parameters=dict(tensor.parameters),
                data=None if tensor.data is None else _integral(tensor.data),
                raw=raw,
            )
        )
    if offset != len(tail):
        raise InvalidRequest(f"{len(tail) - offset} bytes of binary data belong to no input")
    return OipInferRequest(
        model_name="",
        id=parsed.id,
        parameters=dict(parsed.parameters),
        inputs=tuple(inputs),
        outputs=tuple(
            OipRequestedOutput(name=o.name, parameters=dict(o.parameters)) for o in parsed.outputs
        ),
    )


def _answer(response: OipInferResponse) -> Response:
    """JSON, or the JSON header and the binary outputs' bytes when any output is binary."""
    outputs, raws = [], []
    for tensor in response.outputs:
        out: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if tensor.raw is not None:
            out["parameters"] = {BINARY_DATA_SIZE: len(tensor.raw)}
            raws.append(tensor.raw)
        else:
            out["data"] = tensor.data
        outputs.append(out)
    head: dict[str, Any] = {"model_name": response.model_name}
    head |= {"model_version": response.model_version} if response.model_version else {}
    head |= {"id": response.id} if response.id else {}
    head |= {"parameters": response.parameters, "outputs": outputs}
    # ASCII JSON: a request id may hold lone surrogates (JSON's "\ud800"), which UTF-8 cannot
    # encode; escaped, they go back as they came.
    header = json.dumps(head, separators=(",", ":"), allow_nan=False).encode()
    if not raws:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(raws), media_type=OCTET_STREAM, headers={HEADER: str(len(header))}
    )


# -- the answers, as OpenAPI documents them
# ---------------------------------------------------------------------------------------------
class OipErrorOut(BaseModel):
    """The protocol's error object: one line saying what is wrong."""

    error: str


class LiveOut(BaseModel):
    """Server live: the process answers."""

    live: bool


class ReadyOut(BaseModel):
    """Server ready: enough parties answer (200), or not (503)."""

    ready: bool


class ModelReadyOut(BaseModel):
    """Model ready: the model's name and whether it can answer now."""

    name: str
    ready: bool


class ServerMetadataOut(BaseModel):
    """The server's name, version and the protocol extensions it supports."""

    name: str
    version: str
    extensions: list[str]


class TensorMetaOut(BaseModel):
    """An input's or output's name, datatype and shape (-1: variable)."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadataOut(BaseModel):
    """The model's name, versions, platform, inputs and outputs."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetaOut]
    outputs: list[TensorMetaOut]


class OutputOut(BaseModel):
    """One output: flat row-major ``data``, or (binary) ``parameters.binary_data_size`` bytes
    after the JSON header."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, StrictBool | StrictInt | StrictFloat | StrictStr] | None = None
    data: list[StrictBool | StrictInt | StrictFloat] | None = None


class InferResponseOut(BaseModel):
    """An inference response: the model and version that answered, the request's id (when it
    had one), the defense (and certificate kind) in ``parameters``, the outputs."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, StrictBool | StrictInt | StrictFloat | StrictStr] | None = None
    outputs: list[OutputOut]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    why = {
        400: "Malformed request: bad JSON or binary framing, an unknown input, output or "
        "parameter, a wrong datatype or shape, data that do not fill the shape, empty or "
        "duplicate sample ids, an unknown defense (the error names it).",
        401: "No API key, or an invalid one (answer carries WWW-Authenticate: Bearer).",
        403: "The API key lacks the scope `predict`.",
        404: "Unknown model or version, or unknown sample ids (the error names them).",
        413: "Body over the size limit, or more sample ids than the limit.",
        415: "The body is neither JSON nor application/octet-stream.",
        422: "Well-formed JSON of the wrong JSON types (the error names the field).",
        429: "The API key is over its rate (answer carries Retry-After).",
        503: "Too few parties answered (the error names the missing ones).",
    }
    return {code: {"model": OipErrorOut, "description": why[code]} for code in codes}


_AUTH = (401, 403, 429)
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The outputs; application/octet-stream (JSON header, then the binary "
        f"outputs' bytes; header {HEADER}) when any output is asked in binary form.",
        "content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
    },
    **_errors(400, *_AUTH, 404, 413, 415, 422, 503),
}


def _ready_doc(model: type[BaseModel], *codes: int) -> dict[int | str, dict[str, Any]]:
    return {503: {"model": model, "description": "Not ready: too few parties answer."}} | _errors(
        *codes
    )


def oip_router(handler: FusionHandler, *, auth: Authenticator | None) -> APIRouter:
    """The ``/v2`` routes over ``handler``. ``auth``: the keys inference and metadata demand
    (scope ``predict``); None (``auth.mode: none``, loopback only) leaves them open. Every
    inference call is counted and timed with transport :data:`TRANSPORT`."""
    router = APIRouter(route_class=OipRoute, tags=["Open Inference Protocol v2"])
    model = handler.oip_model  # the active bundle's, called at each request
    guarded = require(auth, "predict")
    max_body = handler.node.max_body_bytes

    # Documented as the one name and version served: any other is a 404 (FastAPI does not check
    # these enums; the model does, answering the protocol's error object). The version is the
    # active bundle's when the document is made (create_http_app makes it again after a switch).
    def name_path() -> Any:
        return Path(description="The model: `copur`.", json_schema_extra={"enum": [model().name]})

    def _version_enum(schema: dict[str, Any]) -> None:
        schema["enum"] = [model().version]

    def version_path() -> Any:
        return Path(
            description="The model's version: the active bundle's id (its metadata list it).",
            json_schema_extra=_version_enum,
        )

    @router.get("/v2/health/live", response_model=LiveOut)
    async def server_live() -> dict[str, bool]:
        """Server live (open: probes carry no key)."""
        return {"live": True}

    @router.get("/v2/health/ready", response_model=ReadyOut, responses=_ready_doc(ReadyOut))
    async def server_ready() -> JSONResponse:
        """Server ready: enough parties answer (open: probes carry no key)."""
        return JSONResponse(
            status_code=200 if handler.ready else 503, content={"ready": handler.ready}
        )

    @router.get(
        "/v2", response_model=ServerMetadataOut, dependencies=guarded, responses=_errors(*_AUTH)
    )
    async def server_meta() -> dict[str, Any]:
        """Server metadata: name, version, supported extensions (scope ``predict``)."""
        meta = server_metadata()
        return {"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)}

    def metadata(name: str, version: str) -> dict[str, Any]:
        model().check(name, version)
        meta = model().metadata()
        tensors = {
            key: [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in group]
            for key, group in (("inputs", meta.inputs), ("outputs", meta.outputs))
        }
        return {
            "name": meta.name,
            "versions": list(meta.versions),
            "platform": meta.platform,
            **tensors,
        }

    meta_doc: dict[str, Any] = {
        "response_model": ModelMetadataOut,
        "dependencies": guarded,
        "responses": _errors(*_AUTH, 404),
    }

    @router.get("/v2/models/{model_name}", **meta_doc)
    async def model_meta(model_name: str = name_path()) -> dict[str, Any]:
        """Model metadata: inputs, outputs, datatypes and shapes (scope ``predict``)."""
        return metadata(model_name, "")

    @router.get("/v2/models/{model_name}/versions/{model_version}", **meta_doc)
    async def model_version_meta(
        model_name: str = name_path(), model_version: str = version_path()
    ) -> dict[str, Any]:
        """Model metadata of one version (scope ``predict``)."""
        return metadata(model_name, model_version)

    def model_ready(name: str, version: str) -> JSONResponse:
        model().check(name, version)
        body = {"name": model().name, "ready": handler.ready}
        return JSONResponse(status_code=200 if handler.ready else 503, content=body)

    ready_doc: dict[str, Any] = {
        "response_model": ModelReadyOut,
        "responses": _ready_doc(ModelReadyOut, 404),
    }

    @router.get("/v2/models/{model_name}/ready", **ready_doc)
    async def model_ready_any(model_name: str = name_path()) -> JSONResponse:
        """Model ready (open: probes carry no key)."""
        return model_ready(model_name, "")

    @router.get("/v2/models/{model_name}/versions/{model_version}/ready", **ready_doc)
    async def model_version_ready(
        model_name: str = name_path(), model_version: str = version_path()
    ) -> JSONResponse:
        """Model ready, one version (open: probes carry no key)."""
        return model_ready(model_name, model_version)

    async def infer(request: Request, name: str, version: str) -> Response:
        started = time.perf_counter()
        defense = "invalid"
        try:
            model().check(name, version)
            body = await _read_infer(request, max_body)
            query = parse_infer(
                OipInferRequest(
                    model_name=name,
                    model_version=version,
                    id=body.id,
                    parameters=body.parameters,
                    inputs=body.inputs,
                    outputs=body.outputs,
                ),
                model(),
            )
            defense = query.defense or model().default_defense
            preds = await handler.predict(query.sample_ids, query.defense, query.certify)
        except CopurError as exc:
            handler.observe(TRANSPORT, defense, str(http_status(exc)), started)
            raise
        except Exception:  # a bug: counted as the 500 it becomes, so the error-rate alert sees it
            handler.observe(TRANSPORT, defense, "500", started)
            raise
        handler.observe(TRANSPORT, defense, "200", started)
        return _answer(infer_response(query, preds, model(), all_raw=False))

    infer_doc: dict[str, Any] = {
        "response_model": InferResponseOut,
        "dependencies": guarded,
        "responses": _INFER_RESPONSES,
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": infer_body_schema(handler.node.max_request_ids)}
                },
            }
        },
    }

    @router.post("/v2/models/{model_name}/infer", **infer_doc)
    async def model_infer(request: Request, model_name: str = name_path()) -> Response:
        """Inference: the labels, probabilities, party scores, flagged and missing parties (and
        certificates) of the sample ids (scope ``predict``). JSON, or Triton's binary tensors:
        header `Inference-Header-Content-Length` = the JSON's length, then each input's
        `binary_data_size` bytes. Also served, the same in every respect, at
        `/v2/models/copur/versions/{version}/infer`."""
        return await infer(request, model_name, "")

    # The same operation, body and answers as the route above, so not listed again in OpenAPI: the
    # body's exact schema (one branch per number of ids) makes every listed inference operation
    # cost a schemathesis run a thousand cases.
    @router.post(
        "/v2/models/{model_name}/versions/{model_version}/infer",
        **infer_doc,
        include_in_schema=False,
    )
    async def model_version_infer(
        request: Request,
        model_name: str = name_path(),
        model_version: str = version_path(),
    ) -> Response:
        """Inference on one version of the model (scope ``predict``)."""
        return await infer(request, model_name, model_version)

    return router
