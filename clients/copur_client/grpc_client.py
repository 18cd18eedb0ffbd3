"""gRPC client for ``copur.v1.FusionService/Predict``, raising the same exceptions as the HTTP
client."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc

from copur_client.errors import (
    BadRequest,
    CopurClientError,
    Forbidden,
    NotFound,
    RateLimited,
    ServerError,
    Timeout,
    Unauthorized,
    Unavailable,
)
from copur_client.http import API_KEY_ENV, resolve_key
from copur_client.retry import RetryPolicy
from copur_client.serde import predict_request_to_proto, predictions_from_proto
from copur_client.v1 import fusion_pb2_grpc
from copur_client.wire import Prediction

__all__ = ["GrpcFusionClient", "GrpcTls"]

_METHOD = "/copur.v1.FusionService/Predict"


def _retry_after(exc: grpc.RpcError) -> float | None:
    """The server's ``retry-after`` trailing metadata in seconds (set on rate-limit refusals),
    else None."""
    trailing = exc.trailing_metadata() if isinstance(exc, grpc.Call) else None
    for key, value in trailing or ():
        if key == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return 1.0
    return None


def _error_for(
    endpoint: str, code: grpc.StatusCode, details: str, retry_after: float | None = None
) -> CopurClientError:
    detail = f"{code.name}: {details or 'no details'}"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthorized(endpoint, detail, 401)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return Forbidden(endpoint, detail, 403)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after is not None:
        return RateLimited(endpoint, detail, 429, retry_after)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BadRequest(endpoint, detail, 400)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return BadRequest(endpoint, detail, 413)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(endpoint, detail, 404)
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(endpoint, detail, 503)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Timeout(endpoint, detail)
    return ServerError(endpoint, detail, 500)


@dataclass(frozen=True)
class GrpcTls:
    """mTLS to the fusion center's gRPC front door: the CA that signed the server's certificate,
    and this client's certificate and private key (PEM files, as ``copur certs init`` writes
    them). ``server_name``: the name the server's certificate must carry when it is not the
    host dialled (e.g. ``fusion``)."""

    ca: Path
    cert: Path
    key: Path
    server_name: str | None = None

    @classmethod
    def from_dir(
        cls, directory: str | Path, name: str = "client", server_name: str | None = None
    ) -> GrpcTls:
        """``DIR/ca.pem``, ``DIR/<name>.pem``, ``DIR/<name>-key.pem``."""
        folder = Path(directory)
        return cls(
            folder / "ca.pem", folder / f"{name}.pem", folder / f"{name}-key.pem", server_name
        )

    def credentials(self, endpoint: str) -> grpc.ChannelCredentials:
        """Channel credentials from the files; an unreadable file is a CopurClientError naming
        it."""
        pem = []
        for path in (self.ca, self.cert, self.key):
            try:
                pem.append(Path(path).read_bytes())
            except OSError as exc:
                raise CopurClientError(
                    endpoint, f"cannot read TLS file {path}: {exc.strerror}"
                ) from None
        return grpc.ssl_channel_credentials(
            root_certificates=pem[0], certificate_chain=pem[1], private_key=pem[2]
        )


TlsPaths = GrpcTls | tuple[str | Path, str | Path, str | Path]


def _open(target: str, tls: GrpcTls | None) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(target)
    options = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
    return grpc.secure_channel(target, tls.credentials(f"grpc {target} {_METHOD}"), options=options)


class GrpcFusionClient:
    """``FusionService/Predict`` on ``target`` (``host:port``): mTLS with ``tls`` (a
    :class:`GrpcTls` or a ``(ca, cert, key)`` tuple of paths), plaintext when None. Nothing is
    sent before the server's certificate is verified against the CA. ``api_key`` (default
    ``$COPUR_API_KEY``; ``""``: none) is sent as ``authorization: Bearer <key>`` metadata; a
    rate-limit refusal is retried ``rate_retries`` times after the wait the server asks."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 30.0,
        tls: TlsPaths | None = None,
        api_key: str | None = None,
        rate_retries: int = 2,
    ) -> None:
        self.target = target
        self.timeout = timeout
        bearer = resolve_key(api_key, API_KEY_ENV)
        self._metadata = (("authorization", f"Bearer {bearer}"),) if bearer else ()
        self.rate_retries = rate_retries
        self._policy = RetryPolicy(rate_retries=rate_retries)
        if isinstance(tls, tuple):
            ca, cert, key = tls
            tls = GrpcTls(Path(ca), Path(cert), Path(key))
        self._channel = _open(target, tls)
        self._stub = fusion_pb2_grpc.FusionServiceStub(self._channel)

    def predict(
        self, sample_ids: Iterable[int], *, defense: str | None = None, certify: bool = False
    ) -> list[Prediction]:
        """One :class:`Prediction` per id, in request order; ``defense=None`` is the server's
        default."""
        request = predict_request_to_proto(
            [operator.index(i) for i in sample_ids], defense or "", bool(certify)
        )

        def attempt() -> list[Prediction]:
            try:
                response = self._stub.Predict(
                    request, timeout=self.timeout, metadata=self._metadata
                )
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
                details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
                raise _error_for(
                    f"grpc {self.target} {_METHOD}", code, details or "", _retry_after(exc)
                ) from None
            return predictions_from_proto(response)

        return self._policy.call(attempt, retry_unavailable=False)

    def close(self) -> None:
        """Close the channel (also on leaving a ``with`` block)."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
