"""FastAPI front door: a thin adapter over :class:`FusionHandler`. Errors map to status in
grpcutil.

Security: ``POST /v1/predict`` needs an API key with scope ``predict``, ``GET /v1/parties`` and
the bundle operations under ``/v1/admin`` one with scope ``admin``. ``/healthz``, ``/readyz``,
``/metrics``, ``/docs`` and ``/openapi.json`` stay open: orchestrator probes and Prometheus
scrapers carry no keys, and none of them reveals data or costs more than a constant amount of
work. The key is checked before the body is read; the body is then read up to
``fusion.max_body_bytes`` (413 beyond), parsed and validated, each refusal a 4xx with a one-line
``detail``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from copur import __version__
from copur.errors import CopurError
from copur.roles.fusion.admin_http import admin_router
from copur.roles.fusion.handler import FusionHandler
from copur.roles.fusion.oip_http import oip_router
from copur.science.defenses import DEFENSES
from copur.transport.auth.guard import Authenticator
from copur.transport.auth.web import require
from copur.transport.grpcutil import SchemaMismatch, http_status
from copur.transport.webkit import (
    ERROR_RESPONSES,
    ErrorOut,
    install_error_handlers,
    read_json_body,
    validation_detail,
)

__all__ = ["PredictBody", "create_http_app"]

MAX_DEFENSE_CHARS = 64


class PredictBody(BaseModel):
    """The body of POST /v1/predict; unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid")

    sample_ids: list[StrictInt] = Field(
        description="Sample ids (the join key every party looks up)."
    )
    defense: str | None = Field(
        default=None, max_length=MAX_DEFENSE_CHARS, description=f"One of {', '.join(DEFENSES)}."
    )
    certify: StrictBool = Field(default=False, description="Also return the defense's certificate.")


class CertificateOut(BaseModel):
    """A defense's certificate of one prediction (``vote``: certified parties; ``smoothing``: a
    radius)."""

    kind: str
    certified_parties: int
    radius: float
    label: int


class PredictionOut(BaseModel):
    """One sample's prediction: label, probabilities, per-party scores, flagged and missing
    parties (with why each is missing, in the same order), and the bundle every block and model
    of the answer came from."""

    sample_id: int
    label: int
    probabilities: list[float]
    party_scores: list[float]
    flagged_parties: list[int]
    missing_parties: list[int]
    defense: str
    certificate: CertificateOut | None = None
    bundle_id: str
    missing_reasons: list[str]


class PredictResponse(BaseModel):
    """The answer of POST /v1/predict: one prediction per sample id, in request order."""

    predictions: list[PredictionOut]


_PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    404: {"model": ErrorOut, "description": "Unknown sample ids (the detail names them)."},
    503: {"model": ErrorOut, "description": "Too few parties answered (the detail names them)."},
}
_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    code: ERROR_RESPONSES[code] for code in (401, 403, 429)
}


def _body_doc(max_request_ids: int) -> dict[str, Any]:
    """The documented request body of POST /v1/predict: :class:`PredictBody`'s schema with the
    checks the handler makes on it (1..``max_request_ids`` distinct ids, a known defense), so that
    a body the schema accepts is never refused for its shape."""
    schema = PredictBody.model_json_schema()
    ids = schema["properties"]["sample_ids"]
    ids.update(minItems=1, maxItems=max_request_ids, uniqueItems=True)
    defense = schema["properties"]["defense"]
    for option in defense["anyOf"]:
        if option.get("type") == "string":
            option["enum"] = list(DEFENSES)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_METRICS_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The Prometheus text exposition format.",
        "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
    }
}


def _parse_predict(data: Any) -> PredictBody:
    try:
        return PredictBody.model_validate(data)
    except ValidationError as exc:
        raise SchemaMismatch(validation_detail(exc.errors())) from None


def create_http_app(handler: FusionHandler, *, auth: Authenticator | None) -> FastAPI:
    """The fusion center's FastAPI app over ``handler``. ``auth``: the keys every non-probe route
    demands; None (``auth.mode: none``, loopback only) leaves them open. Keyword and required:
    never open by omission."""
    app = FastAPI(
        title="CoPur fusion center",
        version=__version__,
        description="Robust collaborative inference: predictions over the parties' embeddings. "
        "Send an API key as `Authorization: Bearer <key>`: scope `predict` for predictions, "
        "`admin` for "
        "`/v1/parties` and the bundle operations under `/v1/admin`. Probes, metrics and these "
        "docs are open.",
    )
    install_error_handlers(app)
    make_schema = app.openapi
    made_for: list[str] = []

    def openapi() -> dict[str, Any]:
        # The document names the active bundle (the /v2 version): made again after a switch.
        active = handler.bundles.active.bundle_id
        if made_for != [active]:
            app.openapi_schema, made_for[:] = None, [active]
        return make_schema()

    app.openapi = openapi  # type: ignore[method-assign]
    app.include_router(oip_router(handler, auth=auth))  # /v2: the Open Inference Protocol
    app.include_router(admin_router(handler, auth=auth))  # /v1/admin: bundles, rolling upgrades
    max_body = handler.node.max_body_bytes

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        dependencies=require(auth, "predict"),
        responses=_PREDICT_ERRORS,
        openapi_extra=_body_doc(handler.node.max_request_ids),
    )
    async def predict(request: Request) -> dict[str, Any]:
        """Predict the samples' labels with the chosen defense; answers in request order."""
        started = time.perf_counter()
        defense = "invalid"
        try:
            body = _parse_predict(await read_json_body(request, max_body))
            defense = body.defense or handler.node.default_defense
            preds = await handler.predict(list(body.sample_ids), body.defense, body.certify)
        except CopurError as exc:
            handler.observe("http", defense, str(http_status(exc)), started)
            raise
        except Exception:  # a bug: counted as the 500 it becomes, so the error-rate alert sees it
            handler.observe("http", defense, "500", started)
            raise
        handler.observe("http", defense, "200", started)
        return {
            "predictions": [
                p.__dict__ | {"certificate": p.certificate.__dict__ if p.certificate else None}
                for p in preds
            ]
        }

    @app.get("/v1/parties", dependencies=require(auth, "admin"), responses=_ADMIN_ERRORS)
    async def parties() -> dict[str, Any]:
        """Every party's address, state, recent failures and flags (scope ``admin``)."""
        return {"parties": handler.parties(), "min_parties": handler.node.min_parties}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness (open: probes carry no key)."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: enough parties answer (open: probes carry no key)."""
        body = {
            "ready": handler.ready,
            "parties_up": handler.parties_up,
            "min_parties": handler.node.min_parties,
        }
        return JSONResponse(status_code=200 if handler.ready else 503, content=body)

    @app.get("/metrics", response_class=PlainTextResponse, responses=_METRICS_DOC)
    async def metrics() -> PlainTextResponse:
        """Prometheus metrics (open: scrapers carry no key; counts only, no request data)."""
        return PlainTextResponse(
            generate_latest(handler.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    return app
