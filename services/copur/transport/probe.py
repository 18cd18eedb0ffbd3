"""Readiness probes used by containers and the launcher: gRPC health (plaintext or mTLS) and HTTP
GET."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from copur.transport.tls.credentials import TlsIdentity, channel

__all__ = ["probe_grpc", "probe_http"]


def probe_grpc(target: str, timeout: float = 2.0, tls: TlsIdentity | None = None) -> bool:
    """True when the server at ``target`` reports SERVING on grpc.health.v1; with ``tls`` the probe
    presents that certificate (an mTLS server refuses a probe without one: False)."""
    try:
        with channel(target, tls) as chan:
            reply = health_pb2_grpc.HealthStub(chan).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def probe_http(url: str, timeout: float = 2.0, *, ca_file: str | Path | None = None) -> bool:
    """True when GET ``url`` answers 2xx; an ``https://`` server's certificate must verify against
    ``ca_file`` (the system's trust store when None): an untrusted server is not ready."""
    try:
        verify = True if ca_file is None else ssl.create_default_context(cafile=str(ca_file))
        return httpx.get(url, timeout=timeout, verify=verify).is_success
    except (httpx.HTTPError, OSError):  # OSError: ca_file unreadable (ssl.SSLError is one too)
        return False
