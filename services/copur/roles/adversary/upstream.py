"""The adversary's gRPC client of the real party: the :class:`~copur.roles.adversary.proxy.Upstream`
its core forwards through."""

from __future__ import annotations

from typing import Any

import grpc

from copur.roles.adversary.proxy import UpstreamFailed
from copur.transport.grpcutil import MESSAGE_OPTIONS, RECONNECT_OPTIONS
from copur.transport.tls.credentials import TlsIdentity, channel
from copur.transport.topology import service_name
from copur_client.v1 import party_pb2_grpc

__all__ = ["GrpcUpstream"]


class GrpcUpstream:
    """PartyService at ``target`` (HOST:PORT) over one channel: with ``tls`` it presents ``tls``'s
    certificate and accepts only a server certificate for ``party-<party>`` (any name the CA signed
    for the target's host when ``party`` is None); None dials plaintext. Messages up to the
    cluster's limit; a restarted party is noticed within seconds (short reconnect backoff)."""

    def __init__(self, target: str, tls: TlsIdentity | None, *, party: int | None) -> None:
        self._target = target
        server_name = service_name("party", party) if party is not None else None
        options = [*MESSAGE_OPTIONS, *RECONNECT_OPTIONS]
        self._channel = channel(target, tls, server_name=server_name, options=options)
        self._stub = party_pb2_grpc.PartyServiceStub(self._channel)

    @property
    def target(self) -> str:
        """The upstream's address, as configured."""
        return self._target

    def call(self, method: str, request: Any, *, timeout: float) -> Any:
        """Run ``method`` with ``request`` within ``timeout`` seconds: the reply, or
        :class:`UpstreamFailed` carrying the status and details the call ended with."""
        try:
            return getattr(self._stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise UpstreamFailed(exc.code().name, exc.details() or "") from None

    def close(self) -> None:
        """Close the channel (calls in flight are cancelled)."""
        self._channel.close()
