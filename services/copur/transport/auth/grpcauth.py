"""gRPC glue of the auth core: a server interceptor that demands ``authorization: Bearer <key>``
metadata on every method except health, reflection and the methods a server names open
(UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED with ``retry-after`` trailing metadata).
Methods not in ``scopes`` need ``admin``: new methods are closed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import grpc

from copur.transport.auth.errors import AuthError, RateLimited
from copur.transport.auth.guard import Authenticator
from copur.transport.auth.keys import Scope
from copur.transport.grpcutil import grpc_status

__all__ = ["OPEN_PREFIXES", "BearerInterceptor"]

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _metadata(details: grpc.HandlerCallDetails, key: str) -> str | None:
    for name, value in details.invocation_metadata or ():
        if name.lower() == key:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def _refusal(handler: grpc.RpcMethodHandler, exc: AuthError) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind that aborts with ``exc``'s status."""
    trailing = (("retry-after", str(exc.retry_after)),) if isinstance(exc, RateLimited) else ()

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc_status(exc), str(exc), trailing_metadata=trailing)

    async def abort_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc_status(exc), str(exc), trailing_metadata=trailing)
        yield  # pragma: no cover - abort raises

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort_stream)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort_stream)
    return grpc.unary_unary_rpc_method_handler(abort)


class BearerInterceptor(grpc.aio.ServerInterceptor):
    """Checks every call's ``authorization`` metadata with ``auth`` for the scope ``scopes`` maps
    its full method name to (``admin`` when unmapped); health, reflection and the full method
    names in ``open_methods`` (probes of another protocol) stay open: probes carry no key."""

    def __init__(
        self,
        auth: Authenticator,
        scopes: Mapping[str, Scope],
        *,
        open_methods: Collection[str] = (),
    ) -> None:
        self.auth = auth
        self.scopes = dict(scopes)
        self.open_methods = frozenset(open_methods)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """The call's own handler when its key may call the method (or the method is open), else one
        of the same kind that ends the call with the refusal's status."""
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_PREFIXES) or method in self.open_methods:
            return handler
        try:
            self.auth.authorize(
                _metadata(handler_call_details, "authorization"), self.scopes.get(method, "admin")
            )
        except AuthError as exc:
            return _refusal(handler, exc)
        return handler
