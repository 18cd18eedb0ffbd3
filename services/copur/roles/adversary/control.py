"""The adversary's HTTP control endpoint: read and switch the policy live, probes and metrics.

Security: ``GET`` and ``PUT /v1/policy`` need an API key with scope ``admin`` (the same keys file as
the fusion center's); ``/healthz``, ``/readyz``, ``/metrics`` and the docs stay open for probes and
scrapers. The key is checked before the body is read.

It depends on the adversary only through :class:`PolicyControl` (the core implements it), so it
imports no server and no server imports it but the app that wires them."""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError

from copur import __version__
from copur.errors import CopurError
from copur.roles.adversary.policy import ParamValue, Policy, policy_error
from copur.transport.auth.guard import Authenticator
from copur.transport.auth.web import require
from copur.transport.grpcutil import SchemaMismatch
from copur.transport.webkit import ERROR_RESPONSES, install_error_handlers, read_json_body

__all__ = ["MAX_POLICY_BYTES", "PolicyControl", "PolicyStatus", "Probe", "control_api"]

MAX_POLICY_BYTES = 64 * 1024


class PolicyControl(Protocol):
    """What the control endpoint needs of an adversary: read the policy and counts (``status``: the
    fields of :class:`PolicyStatus`), put a policy in force (``set_policy``: CopurError, one line,
    when refused, leaving the policy unchanged) and say whether it is ready (``readiness``: (ready,
    reason))."""

    def status(self) -> dict[str, Any]:
        """The policy in force, the party attacked and the counts: the fields of
        :class:`PolicyStatus`."""
        ...

    def set_policy(self, policy: Policy) -> Policy:
        """Put ``policy`` in force and return the previous one; CopurError (nothing changed) if
        refused."""
        ...

    def readiness(self) -> tuple[bool, str | None]:
        """(True, None) when ready to serve, else (False, the reason)."""
        ...


class PolicyStatus(BaseModel):
    """The policy in force, the party attacked (None until known), the counts so far, and the
    donor sample ids whose blocks the policy sends (``mimic``: its donor, resolved from
    ``donor_class`` when given by class; ``sia``: the donors of every class; empty for other
    attacks)."""

    attack: str
    params: dict[str, ParamValue]
    party: int | None
    calls: int
    corrupted: int
    donors: list[int] = []


class Probe(BaseModel):
    """A probe's answer: ``ok`` / ``ready`` / ``not ready``, and why when not ready."""

    status: str
    reason: str | None = None


_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    code: ERROR_RESPONSES[code] for code in (401, 403, 429)
}
_PUT_ERRORS: dict[int | str, dict[str, Any]] = {
    **_AUTH_ERRORS,
    **{code: ERROR_RESPONSES[code] for code in (400, 413, 415)},
    422: {
        "model": ERROR_RESPONSES[422]["model"],
        "description": "refused policy (the detail names why)",
    },
}
_POLICY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": Policy.model_json_schema()}},
    }
}


def control_api(
    adversary: PolicyControl,
    *,
    auth: Authenticator | None,
    registry: CollectorRegistry,
) -> FastAPI:
    """The FastAPI app of one adversary (OpenAPI at ``/docs``): ``/v1/policy`` behind ``auth``
    (scope ``admin``; None leaves it open), the probes, and ``/metrics`` from ``registry``. ``auth``
    is keyword and required: never open by omission."""
    api = FastAPI(title="copur adversary control", version=__version__)
    install_error_handlers(api)
    admin = require(auth, "admin")

    @api.get("/v1/policy", response_model=PolicyStatus, dependencies=admin, responses=_AUTH_ERRORS)
    def get_policy() -> PolicyStatus:
        return PolicyStatus(**adversary.status())

    @api.put(
        "/v1/policy",
        response_model=PolicyStatus,
        dependencies=admin,
        responses=_PUT_ERRORS,
        openapi_extra=_POLICY_DOC,
    )
    async def put_policy(request: Request) -> PolicyStatus:
        data = await read_json_body(request, MAX_POLICY_BYTES)
        try:
            policy = Policy.model_validate(data)
        except ValidationError as exc:
            raise SchemaMismatch(policy_error(exc.errors())) from None
        try:
            adversary.set_policy(policy)
        except CopurError as exc:
            raise SchemaMismatch(str(exc)) from None
        return PolicyStatus(**adversary.status())

    @api.get("/healthz", response_model=Probe)
    def healthz() -> Probe:
        return Probe(status="ok")

    @api.get("/readyz", response_model=Probe, responses={503: {"model": Probe}})
    def readyz() -> JSONResponse:
        ready, reason = adversary.readiness()
        body = Probe(status="ready" if ready else "not ready", reason=reason)
        return JSONResponse(
            status_code=200 if ready else 503, content=body.model_dump(exclude_none=True)
        )

    @api.get("/metrics", response_class=Response)
    def metrics() -> Response:
        return Response(content=generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return api
