"""The fusion center's bundle operations over HTTP (``/v1/admin/bundles``, scope ``admin``): a
thin adapter over :class:`~copur.roles.fusion.bundles.BundleSet`, the twin of the gRPC
``FusionAdmin`` service. Every answer is the bundles' status; every refusal a one-line ``detail``
(404 no bundle at the path or no such party, 409 a bundle or state that refuses it, 503 a party
unreachable)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from copur.roles.fusion.handler import FusionHandler
from copur.transport.auth.guard import Authenticator
from copur.transport.auth.web import require
from copur.transport.grpcutil import SchemaMismatch
from copur.transport.webkit import ERROR_RESPONSES, ErrorOut, read_json_body, validation_detail

__all__ = ["admin_router"]

BundleId = Annotated[str, Path(min_length=1, max_length=64, description="A bundle id.")]


class BundlePath(BaseModel):
    """A bundle's folder, as the service that loads it sees it (the same path on every host of a
    compose or Kubernetes cluster: under the mounted bundles folder)."""

    model_config = ConfigDict(extra="forbid")

    path: StrictStr = Field(min_length=1, max_length=4096, description="The bundle's folder.")


def _number(value: Any) -> Any:
    """JSON numbers only (a boolean or a string is refused); an integral float is an int."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON number")
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[StrictInt, BeforeValidator(_number)]
JsonFloat = Annotated[StrictFloat, BeforeValidator(_number)]


class ActivateBody(BaseModel):
    """When to switch: once ``quorum`` parties (0: all) serve the bundle, waiting up to
    ``wait_s``."""

    model_config = ConfigDict(extra="forbid")

    quorum: JsonInt = Field(default=0, ge=0, le=1_000_000, description="Parties needed; 0: all.")
    wait_s: JsonFloat = Field(default=10.0, ge=0, le=600, description="How long to wait for them.")


class BundleRefOut(BaseModel):
    """A bundle by id and the path it was loaded from."""

    bundle_id: str
    path: str


class PartyBundlesOut(BaseModel):
    """What a party holds (current first) and its state at the fusion center."""

    party: int
    bundles: list[str]
    state: str


class BundlesOut(BaseModel):
    """The active bundle, every one held (active first), the ones served before (latest first)
    and each party's bundles."""

    active: str
    held: list[BundleRefOut]
    history: list[BundleRefOut]
    parties: list[PartyBundlesOut]


T = TypeVar("T", bound=BaseModel)
MAX_BODY_BYTES = 64 * 1024


async def _body(request: Request, model: type[T], *, optional: bool = False) -> T:
    """The request's JSON body as ``model``, read after the key was checked (the route's
    dependency): 415 / 413 / 400 / 422 with one line, as ``/v1/predict`` answers them. With
    ``optional``, an empty body is the model's defaults."""
    if optional and not await request.body():
        return model()
    data = await read_json_body(request, MAX_BODY_BYTES)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SchemaMismatch(validation_detail(exc.errors())) from None


def _body_doc(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """The documented JSON request body of ``model`` (the route reads it itself)."""
    schema = model.model_json_schema()
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": required, "content": content}}


def _doc(**codes: str) -> dict[int | str, dict[str, Any]]:
    docs: dict[int | str, dict[str, Any]] = {c: ERROR_RESPONSES[c] for c in (401, 403, 422, 429)}
    for code, text in codes.items():
        docs[int(code[1:])] = {"model": ErrorOut, "description": text}
    return docs


def admin_router(handler: FusionHandler, *, auth: Authenticator | None) -> APIRouter:
    """``/v1/admin/bundles`` and the party relays, each needing scope ``admin``."""
    router = APIRouter(prefix="/v1/admin", dependencies=require(auth, "admin"), tags=["admin"])
    bundles = handler.bundles
    last = handler.num_parties - 1
    party_doc = f"A party's index (0..{last})."

    def out(status: Any) -> dict[str, Any]:
        return dataclasses.asdict(status)

    @router.get("/bundles", response_model=BundlesOut, responses=_doc())
    async def get_bundles() -> dict[str, Any]:
        """The bundles held, the active one, the history and what each party holds."""
        return out(bundles.status())

    body_errors: dict[int | str, dict[str, Any]] = {c: ERROR_RESPONSES[c] for c in (400, 413, 415)}

    @router.post(
        "/bundles",
        response_model=BundlesOut,
        responses=body_errors
        | _doc(
            s404="No bundle at the path.",
            s409="Not a usable bundle for this cluster, or two held already.",
        ),
        openapi_extra=_body_doc(BundlePath),
    )
    async def load(request: Request) -> dict[str, Any]:
        """Load the bundle at ``path`` beside the active one (nothing changes when held)."""
        body = await _body(request, BundlePath)
        return out(await bundles.load(body.path))

    @router.post(
        "/bundles/{bundle_id}/activate",
        response_model=BundlesOut,
        responses=body_errors
        | _doc(
            s409="Not held, a quorum over the number of parties, or too few parties serve it "
            "within wait_s.",
        ),
        openapi_extra=_body_doc(ActivateBody, required=False),
    )
    async def activate(bundle_id: BundleId, request: Request) -> dict[str, Any]:
        """Switch every batch that starts from now on to the bundle, once enough parties serve
        it; answers after the batches on the old one have finished (no body: all parties,
        10 s)."""
        b = await _body(request, ActivateBody, optional=True)
        return out(await bundles.activate(bundle_id, quorum=b.quorum, wait_s=b.wait_s))

    @router.delete(
        "/bundles/{bundle_id}",
        response_model=BundlesOut,
        responses=_doc(s409="Not held, or the active one."),
    )
    async def drop(bundle_id: BundleId) -> dict[str, Any]:
        """Drop a held bundle that is not the active one."""
        return out(await bundles.drop(bundle_id))

    party_errors = {
        "s409": "The party refused (a bad bundle, two held, not held, the last one).",
        "s503": "The party could not be reached.",
    }

    @router.post(
        "/parties/{party}/bundles",
        response_model=BundlesOut,
        responses=body_errors | _doc(**party_errors),
        openapi_extra=_body_doc(BundlePath),
    )
    async def party_load(
        request: Request, party: int = Path(ge=0, le=last, description=party_doc)
    ) -> dict[str, Any]:
        """Have party ``party`` load the bundle at ``path`` (on its host) beside its current."""
        body = await _body(request, BundlePath)
        return out(await bundles.relay_load(party, body.path))

    @router.delete(
        "/parties/{party}/bundles/{bundle_id}",
        response_model=BundlesOut,
        responses=_doc(**party_errors),
    )
    async def party_drop(
        bundle_id: BundleId, party: int = Path(ge=0, le=last, description=party_doc)
    ) -> dict[str, Any]:
        """Have party ``party`` drop a bundle it holds."""
        return out(await bundles.relay_drop(party, bundle_id))

    return router
