"""Readiness probes used by containers and the launcher: gRPC health (plaintext or mTLS) and HTTP
GET."""

from __future__ import annotations

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


def probe_http(url: str, timeout: float = 2.0) -> bool:
    """True when GET ``url`` answers 2xx."""
    try:
        return httpx.get(url, timeout=timeout).is_success
    except httpx.HTTPError:
        return False
