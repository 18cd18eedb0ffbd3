"""FastAPI glue of the auth core: route dependencies that enforce a scope and document the bearer
scheme in OpenAPI. Refusals are :class:`copur.transport.auth.AuthError` s, answered by the app's
domain-error handler (:func:`copur.transport.webkit.install_error_handlers`: 401 +
``WWW-Authenticate``, 403, 429 + ``Retry-After``)."""

from __future__ import annotations

from fastapi import Depends, Request, Security
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from copur.transport.auth.guard import Authenticator, Principal
from copur.transport.auth.keys import Scope

__all__ = ["BEARER", "require"]

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key: `Authorization: Bearer <key>` (create keys with `copur keys init` / "
    "`copur keys add`).",
)


def require(auth: Authenticator | None, scope: Scope) -> list[DependsParam]:
    """The ``dependencies=`` of a route that needs ``scope``: checks the ``Authorization`` header
    before the body is read (routes that take a body read it themselves, after this). ``auth``
    None (``auth.mode: none``, loopback only) adds nothing: the route is open and its OpenAPI
    names no security scheme."""
    if auth is None:
        return []

    def check(
        request: Request, _: HTTPAuthorizationCredentials | None = Security(BEARER)
    ) -> Principal:
        principal = auth.authorize(request.headers.get("authorization"), scope)
        request.state.principal = principal
        return principal

    return [Depends(check)]
