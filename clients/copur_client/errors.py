"""What the client raises: one exception family, each message one line naming the endpoint and
the detail."""

from __future__ import annotations

from copur_client.wire import one_line

__all__ = [
    "AuthError",
    "BadRequest",
    "CopurClientError",
    "Forbidden",
    "NotFound",
    "RateLimited",
    "ServerError",
    "Timeout",
    "TlsError",
    "Unauthorized",
    "Unavailable",
]


class CopurClientError(Exception):
    """A call to the fusion center or the adversary control endpoint failed.

    ``endpoint`` names the call (``POST http://host:8080/v1/predict`` or ``grpc host:50051
    .../Predict``), ``detail`` is the server's one-line explanation (or the transport's),
    ``status`` the HTTP status (for gRPC, the HTTP status its code stands for) or None when no
    answer came."""

    def __init__(self, endpoint: str, detail: str, status: int | None = None) -> None:
        self.endpoint = endpoint
        self.detail = one_line(detail)
        self.status = status
        where = f"{endpoint} -> {status}" if status is not None else endpoint
        super().__init__(f"{where}: {self.detail}")


class BadRequest(CopurClientError):
    """The server refused the request (4xx: bad input, schema, too many ids); retrying will not
    help."""


class NotFound(BadRequest):
    """Unknown sample ids or path (404)."""


class AuthError(BadRequest):
    """The server refused the API key (401) or its scope (403); retrying with the same key will
    not help."""


class Unauthorized(AuthError):
    """401: no API key, or one the server does not know (pass ``api_key=`` or set
    ``COPUR_API_KEY``)."""


class Forbidden(AuthError):
    """403: the API key lacks the scope (``admin`` operations: pass ``admin_key=`` or set
    ``COPUR_ADMIN_KEY``)."""


class RateLimited(CopurClientError):
    """429: the API key is over its rate; ``retry_after_s`` is what the server asked the client
    to wait."""

    def __init__(
        self, endpoint: str, detail: str, status: int | None = 429, retry_after_s: float = 1.0
    ) -> None:
        super().__init__(endpoint, detail, status)
        self.retry_after_s = retry_after_s


class Unavailable(CopurClientError):
    """The server could not serve now (503: too few parties) or could not be reached at all."""


class ServerError(CopurClientError):
    """Any other server-side failure (5xx other than 503) or an answer the client cannot read."""


class Timeout(CopurClientError):
    """No answer within the client's timeout."""


class TlsError(CopurClientError):
    """The server's certificate did not verify (not signed by the trusted CA, or not for the host
    dialled), the CA file cannot be read, or the server does not speak TLS: never retried, since
    retrying the same server cannot help."""
