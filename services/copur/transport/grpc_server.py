"""The one way a role serves gRPC: :class:`GrpcServer` (a thread pool, for blocking servicers) and
:class:`AioGrpcServer` (asyncio), built from the same options with the same guarantees:

- messages up to :data:`~copur.transport.grpcutil.MAX_MESSAGE_BYTES` both ways;
- grpc.health.v1 answers NOT_SERVING for the server (``""``) and every named service until
  ``set_serving(True)``, and NOT_SERVING for good once ``stop`` begins;
- reflection lists the named services, health and reflection;
- with a :class:`~copur.transport.tls.credentials.TlsIdentity` it serves mTLS only (a caller without
  a certificate signed by its CA is refused in the handshake); None serves plaintext;
- the interceptors given run on every call, in order (the fusion center's API-key check);
- the address is bound when the server is built: one that cannot be bound is a one-line CopurError.

The servicers are added by the role (``add_XServicer_to_server(servicer, built.server)``) before
``start``."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent import futures
from typing import Any, Final

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from copur.errors import CopurError
from copur.transport.grpcutil import MESSAGE_OPTIONS
from copur.transport.tls.credentials import TlsIdentity, add_port

__all__ = [
    "AioGrpcServer",
    "GrpcServer",
    "aio_set_health",
    "host_port",
    "server_options",
    "set_health",
]

SERVING: Final = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING


def host_port(host: str, port: int) -> str:
    """``host:port`` as gRPC and logs write it: an IPv6 host in brackets (``[::1]:50051``)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def server_options(*, exclusive_port: bool = False) -> list[tuple[str, int]]:
    """The options every server of the cluster is built with: the message limits, and with
    ``exclusive_port`` no SO_REUSEPORT (a port another process holds is an error, never shared)."""
    return [*MESSAGE_OPTIONS, *([("grpc.so_reuseport", 0)] if exclusive_port else [])]


def set_health(health_servicer: health.HealthServicer, names: Sequence[str], serving: bool) -> None:
    """Health answers SERVING (or NOT_SERVING) for ``names`` from now on (ignored once shutting
    down)."""
    for name in names:
        health_servicer.set(name, SERVING if serving else NOT_SERVING)


async def aio_set_health(
    health_servicer: health.aio.HealthServicer,
    names: Sequence[str],
    serving: bool,
) -> None:
    """:func:`set_health` for the asyncio health servicer."""
    for name in names:
        await health_servicer.set(name, SERVING if serving else NOT_SERVING)


class _Built:
    """What both servers share once built: the bound port, the health servicer and the names it
    answers for."""

    def __init__(
        self,
        server: Any,
        health_servicer: Any,
        *,
        name: str,
        address: str,
        services: Sequence[str],
    ) -> None:
        self.name = name
        self.address = address
        self.services = tuple(services)
        self.server = server
        self.health = health_servicer
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        listed = (*self.services, reflection.SERVICE_NAME, health.SERVICE_NAME)
        reflection.enable_server_reflection(listed, server)

    def _bind(self, tls: TlsIdentity | None) -> int:
        port = add_port(self.server, self.address, tls)
        if port == 0:
            raise CopurError(f"{self.name}: cannot bind gRPC on {self.address}")
        return port

    @property
    def health_names(self) -> tuple[str, ...]:
        """The names health answers for: the whole server (``""``) and every named service."""
        return ("", *self.services)


class GrpcServer(_Built):
    """A thread-pool gRPC server on ``address`` (``HOST:PORT``; port 0 picks a free one, see
    ``.port``), serving ``services`` (full names, for health and reflection) with the module's
    guarantees. ``name`` names it in errors and its threads; ``workers``: the calls served at
    once."""

    def __init__(
        self,
        *,
        name: str,
        address: str,
        services: Sequence[str],
        tls: TlsIdentity | None = None,
        interceptors: Sequence[grpc.ServerInterceptor] = (),
        workers: int = 8,
        exclusive_port: bool = False,
    ) -> None:
        pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{name}-grpc")
        options = server_options(exclusive_port=exclusive_port)
        server = grpc.server(pool, interceptors=list(interceptors), options=options)
        servicer = health.HealthServicer()
        super().__init__(server, servicer, name=name, address=address, services=services)
        self.set_serving(False)
        self.port = self._bind(tls)

    def start(self) -> GrpcServer:
        """Serve calls (health still NOT_SERVING until :meth:`set_serving`); returns itself."""
        self.server.start()
        return self

    def set_serving(self, serving: bool) -> None:
        """What health answers for the server and its services from now on (ignored once
        stopping)."""
        set_health(self.health, self.health_names, serving)

    def stop(self, grace: float | None = 1.0) -> None:
        """Health NOT_SERVING for good, then stop: calls in flight get ``grace`` seconds to finish
        (None: all the time they need), new ones are refused; returns once the server has
        stopped."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or ``timeout`` seconds); True once it has stopped."""
        return bool(self.server.wait_for_termination(timeout))


class AioGrpcServer(_Built):
    """:class:`GrpcServer`'s asyncio twin, for ``async`` servicers: the same options and guarantees,
    its lifecycle methods are coroutines. Build it inside the event loop that will run it."""

    def __init__(
        self,
        *,
        name: str,
        address: str,
        services: Sequence[str],
        tls: TlsIdentity | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        exclusive_port: bool = False,
    ) -> None:
        options = server_options(exclusive_port=exclusive_port)
        server = grpc.aio.server(interceptors=list(interceptors), options=options)
        servicer = health.aio.HealthServicer()
        super().__init__(server, servicer, name=name, address=address, services=services)
        self.port = self._bind(tls)

    async def start(self) -> AioGrpcServer:
        """Serve calls (health NOT_SERVING until :meth:`set_serving`); returns itself."""
        await self.set_serving(False)  # the asyncio health servicer is set within the loop only
        await self.server.start()
        return self

    async def set_serving(self, serving: bool) -> None:
        """What health answers for the server and its services from now on (ignored once
        stopping)."""
        await aio_set_health(self.health, self.health_names, serving)

    async def stop(self, grace: float | None = 1.0) -> None:
        """Health NOT_SERVING for good, then stop: calls in flight get ``grace`` seconds to finish
        (None: all the time they need), new ones are refused; returns once the server has
        stopped."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until the server stops (or ``timeout`` seconds); True once it has stopped."""
        return bool(await self.server.wait_for_termination(timeout))
