"""What the auth core raises. Each error carries the HTTP headers its answer must have; the
status codes (401, 403, 429 and their gRPC counterparts) are assigned in one place,
:mod:`copur.transport.grpcutil`."""

from __future__ import annotations

import math
from collections.abc import Mapping

from copur.errors import CopurError

__all__ = ["AuthError", "PermissionDenied", "RateLimited", "Unauthenticated"]


class AuthError(CopurError):
    """A request refused by authentication, authorisation or rate limiting (never the caller's
    input)."""

    @property
    def headers(self) -> Mapping[str, str]:
        """HTTP headers the refusal must carry."""
        return {}


class Unauthenticated(AuthError):
    """No API key, a malformed ``Authorization`` header, or a key that matches no entry (HTTP
    401)."""

    @property
    def headers(self) -> Mapping[str, str]:
        """``WWW-Authenticate: Bearer``: how to authenticate."""
        return {"WWW-Authenticate": "Bearer"}


class PermissionDenied(AuthError):
    """A valid key without the scope the operation needs (HTTP 403)."""


class RateLimited(AuthError):
    """A valid key over its request rate (HTTP 429); ``retry_after_s`` is when a token is
    available again."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait (at least 1), the value of the ``Retry-After`` header."""
        return max(1, math.ceil(self.retry_after_s))

    @property
    def headers(self) -> Mapping[str, str]:
        """``Retry-After``: whole seconds until the key may call again."""
        return {"Retry-After": str(self.retry_after)}
