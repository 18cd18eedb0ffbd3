"""Shared gRPC plumbing: the message limits, the one mapping from domain errors to HTTP and gRPC
status, and aborting a call with it. Serving gRPC (health, reflection, mTLS) is
:mod:`copur.transport.grpc_server`."""

from __future__ import annotations

from typing import Final, NoReturn

import grpc

from copur.errors import CopurError
from copur.transport.auth.errors import PermissionDenied, RateLimited, Unauthenticated

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MESSAGE_OPTIONS",
    "RECONNECT_OPTIONS",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "SchemaMismatch",
    "TooLarge",
    "Unavailable",
    "UnsupportedMediaType",
    "abort",
    "abort_with",
    "grpc_status",
    "http_status",
]

MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
"""The largest message any server or channel of the cluster sends or receives."""
MESSAGE_OPTIONS: Final[list[tuple[str, int]]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
"""Server or channel options: messages up to :data:`MAX_MESSAGE_BYTES` both ways."""
RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
"""Channel options of a client that must notice a restarted server soon. gRPC's default reconnect
backoff grows toward 120 s: a party back after a minute's outage stayed missing for another 17 s
(measured)."""


class InvalidRequest(CopurError):
    """Malformed input from a caller."""


class NotFound(CopurError):
    """Something the request names does not exist: sample ids, a model or its version (the
    message names them)."""


class TooLarge(CopurError):
    """A request over the size limits."""


class Unavailable(CopurError):
    """Not enough of the cluster answered to serve the request."""


class Conflict(CopurError):
    """A request that the service's state refuses: a bundle it does not hold, a bundle slot that is
    full, the active bundle dropped, too few parties serving a bundle to switch to it."""


class UnsupportedMediaType(CopurError):
    """A request body that is not of the media type the operation reads (JSON)."""


class SchemaMismatch(CopurError):
    """Well-formed input of the wrong shape: a missing field, a wrong type (the message names the
    field)."""


# The one mapping from domain errors to transport status; any other CopurError is the caller's
# fault.
_STATUS: dict[type[CopurError], tuple[int, grpc.StatusCode]] = {
    NotFound: (404, grpc.StatusCode.NOT_FOUND),
    TooLarge: (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    Unavailable: (503, grpc.StatusCode.UNAVAILABLE),
    Conflict: (409, grpc.StatusCode.FAILED_PRECONDITION),
    UnsupportedMediaType: (415, grpc.StatusCode.INVALID_ARGUMENT),
    SchemaMismatch: (422, grpc.StatusCode.INVALID_ARGUMENT),
    Unauthenticated: (401, grpc.StatusCode.UNAUTHENTICATED),
    PermissionDenied: (403, grpc.StatusCode.PERMISSION_DENIED),
    RateLimited: (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
}
_DEFAULT = (400, grpc.StatusCode.INVALID_ARGUMENT)


def _status(exc: CopurError) -> tuple[int, grpc.StatusCode]:
    return next((s for t, s in _STATUS.items() if isinstance(exc, t)), _DEFAULT)


def http_status(exc: CopurError) -> int:
    """The HTTP status of ``exc``: its class's entry in the one mapping, 400 for any other domain
    error."""
    return _status(exc)[0]


def grpc_status(exc: CopurError) -> grpc.StatusCode:
    """The gRPC status of ``exc``: its class's entry in the one mapping, INVALID_ARGUMENT
    otherwise."""
    return _status(exc)[1]


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    """End a (sync) gRPC call with ``code`` and ``details``; never returns (``context.abort``
    raises)."""
    context.abort(code, details)
    raise AssertionError("grpc context.abort returned")  # pragma: no cover - abort raises


def abort_with(context: grpc.ServicerContext, exc: CopurError) -> NoReturn:
    """End a (sync) gRPC call with the status that ``exc`` maps to and its message as the
    details."""
    abort(context, grpc_status(exc), str(exc))
