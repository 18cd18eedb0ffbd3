"""What the FastAPI apps (fusion center, adversary control) share at their boundary: domain
errors as JSON ``{"detail": "<one line>"}`` (``{"error": ...}`` where a protocol says so) with the
status from :func:`copur.transport.grpcutil.http_status` (the one mapping), bounded body readers
(raw bytes, JSON), and FastAPI's list-shaped validation errors folded to one line."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from copur.errors import CopurError
from copur.transport.auth.errors import AuthError
from copur.transport.grpcutil import InvalidRequest, TooLarge, UnsupportedMediaType, http_status
from copur_client.wire import one_line

__all__ = [
    "ERROR_RESPONSES",
    "ErrorOut",
    "error_response",
    "install_error_handlers",
    "is_json_media",
    "media_type",
    "parse_json",
    "read_body",
    "read_json_body",
    "validation_detail",
]

MAX_DETAIL_CHARS = 300
"""An HTTP error detail is cut at this many characters."""


class ErrorOut(BaseModel):
    """Every error answer: one line saying what is wrong."""

    detail: str


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# Documented on the operations that can answer them (the body of each is an ErrorOut).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed input: invalid JSON, empty or duplicate sample ids, unknown defense."),
    401: _error("No API key, or an invalid one (answer carries WWW-Authenticate: Bearer)."),
    403: _error("The API key lacks the scope this operation needs."),
    413: _error("Body over the size limit, or more sample ids than the limit."),
    415: _error("The body is not application/json."),
    422: _error("Well-formed JSON of the wrong shape (the detail names the field)."),
    429: _error("The API key is over its rate (answer carries Retry-After)."),
}


def error_response(exc: CopurError, *, key: str = "detail") -> JSONResponse:
    """``exc`` as its HTTP answer: status from the one mapping, the one-line message under ``key``
    (``detail``; the Open Inference Protocol's routes say ``error``), the auth headers."""
    headers = dict(exc.headers) if isinstance(exc, AuthError) else None
    # A client's text quoted in a message may hold lone surrogates (JSON's "\ud800"), which UTF-8
    # cannot encode: they are written as escapes, never a 500.
    text = one_line(str(exc), MAX_DETAIL_CHARS).encode("utf-8", "backslashreplace").decode()
    return JSONResponse(status_code=http_status(exc), content={key: text}, headers=headers)


def _where(loc: Sequence[Any]) -> str:
    parts = list(loc[1:] if loc[:1] == ("body",) or loc[:1] == ["body"] else loc)
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_detail(errors: Sequence[Mapping[str, Any]]) -> str:
    """The first of pydantic's (or FastAPI's) ``errors()`` as one line, e.g.
    ``sample_ids[2]: Input should be a valid integer`` (``and N more`` when there are others)."""
    if not errors:
        return "invalid request"
    first = errors[0]
    where = _where(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    text = f"{where}: {msg}" if where else msg
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more)"
    return one_line(text, MAX_DETAIL_CHARS)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def install_error_handlers(app: FastAPI) -> None:
    """Domain errors -> :func:`error_response`; FastAPI's request validation errors -> 422 with
    one line; a 405 lists in ``Allow`` every method the path is served with."""

    @app.exception_handler(CopurError)
    async def _domain(request: Request, exc: CopurError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": validation_detail(exc.errors())})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # Starlette's 405 names the methods of the first route on the path only: a path served by
        # two routes (GET and POST) must list both in Allow (RFC 9110 15.5.6).
        if exc.status_code == 405:
            # Each method the path is served with: one that some route (or included router)
            # matches fully.
            allowed = [
                method
                for method in _METHODS
                if any(
                    route.matches({**request.scope, "method": method})[0] == Match.FULL
                    for route in app.router.routes
                )
            ]
            headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
            return JSONResponse({"detail": exc.detail}, status_code=405, headers=headers)
        return await http_exception_handler(request, exc)


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lowercase; "" when it has none."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json_media(media: str) -> bool:
    """True for ``application/json`` and the ``+json`` types."""
    return media == "application/json" or media.endswith("+json")


async def read_json_body(request: Request, max_bytes: int) -> Any:
    """The request's JSON body, parsed. Refuses, before parsing: a media type other than JSON
    (415), a declared or actual size over ``max_bytes`` (413; the body is never read past the
    limit); then an empty body, invalid JSON or absurd nesting (400). Every refusal is a
    domain error with a one-line message."""
    media = media_type(request)
    if not is_json_media(media):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {media or 'missing'}"
        )
    return parse_json(await read_body(request, max_bytes))


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request's body, whatever its media type: a declared or actual size over ``max_bytes``
    is a 413 (the body is never read past the limit), a Content-Length that is not a number a
    400."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise InvalidRequest("Content-Length is not a number")
        if int(declared) > max_bytes:
            raise TooLarge(
                f"request body of {int(declared)} bytes exceeds the limit of {max_bytes} bytes"
            )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise TooLarge(f"request body exceeds the limit of {max_bytes} bytes")
    return bytes(body)


def parse_json(body: bytes) -> Any:
    """``body`` parsed as JSON; an empty body, invalid JSON or absurd nesting is a 400 with one
    line."""
    if not body.strip():
        raise InvalidRequest("request body is empty (expected a JSON object)")
    try:
        return json.loads(body)
    except RecursionError:
        raise InvalidRequest("malformed JSON body: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidRequest(f"malformed JSON body: {one_line(str(exc), 120)}") from None
