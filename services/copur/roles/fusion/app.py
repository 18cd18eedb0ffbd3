"""Running the fusion center: load the bundle, start the handler, serve HTTP (uvicorn) and gRPC (the
one asyncio builder) in one event loop until told to stop."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

import uvicorn

from copur.errors import CopurError
from copur.roles.fusion.grpc_api import fusion_grpc_server
from copur.roles.fusion.handler import FusionHandler, FusionSettings
from copur.roles.fusion.http_api import create_http_app
from copur.roles.fusion.worker import Worker
from copur.science.bundle import load_bundle
from copur.science.device import resolve_device
from copur.transport.auth.guard import load_authenticator
from copur.transport.grpc_server import host_port
from copur.transport.lifecycle import stop_on_signals
from copur.transport.tls.credentials import https_for, identity_for
from copur.transport.topology import Topology, load_topology, service_name

__all__ = ["build_handler", "run_fusion", "serve_fusion"]

log = logging.getLogger("copur.roles.fusion")


def build_handler(topology: Topology) -> FusionHandler:
    """Load the bundle (verified) and the worker on ``cuda`` when present, else CPU; the party
    clients use the topology's ``tls`` (mTLS as ``fusion``, each peer's certificate checked by
    its service name; the bundle operations reach each party's own address, never an adversary
    slot)."""
    tls = identity_for(topology, service_name("fusion"))  # first: a missing certificate fails fast
    bundle = load_bundle(topology.bundle)
    if bundle.manifest.num_parties != topology.num_parties:
        raise CopurError(
            f"topology has {topology.num_parties} parties, bundle {topology.bundle} has "
            f"{bundle.manifest.num_parties}"
        )
    device = resolve_device(topology.fusion.device)
    targets = [topology.fusion_target(i) for i in range(topology.num_parties)]
    settings = FusionSettings(
        node=topology.fusion,
        targets=targets,
        tls=tls,
        peer_names=tuple(topology.fusion_peer(i) for i in range(topology.num_parties)),
        admin_targets=tuple(topology.party_address(i) for i in range(topology.num_parties)),
        admin_peer_names=tuple(service_name("party", i) for i in range(topology.num_parties)),
    )
    return FusionHandler(
        bundle=bundle,
        worker=Worker(bundle, device=device),
        settings=settings,
        make_worker=lambda b: Worker(b, device=device),
    )


async def run_fusion(topology: Topology, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set: HTTP on fusion.http_port (HTTPS with the ``fusion`` key pair
    unless the topology says plain HTTP, on loopback only), gRPC on fusion.grpc_port, both behind
    the topology's ``auth`` (keys loaded first: a missing or malformed keys file fails before
    anything binds). On ``stop``: gRPC health NOT_SERVING, both servers stopped (calls in flight get
    a second), then the handler and the worker. A port that cannot be bound is a CopurError naming
    it."""
    auth = load_authenticator(topology.auth.mode, topology.auth.keys_file)
    https = https_for(topology, service_name("fusion"))
    handler = build_handler(topology)
    host = topology.bind_host
    await handler.start()
    grpc_server = fusion_grpc_server(
        handler, host_port(host, topology.fusion.grpc_port), handler.settings.tls, auth=auth
    )
    await grpc_server.start()
    await grpc_server.set_serving(True)
    config = uvicorn.Config(
        create_http_app(handler, auth=auth),
        host=host,
        port=topology.fusion.http_port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        **(https.uvicorn_options() if https is not None else {}),
    )
    http = uvicorn.Server(config)
    serve = asyncio.create_task(http.serve())
    # Everything loaded so far (torch, the models, the web stack) lives as long as the process: move
    # it
    # out of the collector's reach, so a full collection scans only request garbage, not ~10^6
    # objects.
    gc.freeze()
    log.info(
        "event=fusion_ready %s=%s:%d grpc=%s:%d device=%s parties_up=%d",
        topology.http_scheme,
        host,
        topology.fusion.http_port,
        host,
        grpc_server.port,
        handler.worker.device,
        handler.parties_up,
    )
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({serve, stopper}, return_when=asyncio.FIRST_COMPLETED)
    http.should_exit = True
    await grpc_server.stop(1.0)
    await serve
    await handler.stop()
    handler.close()
    if not http.started:
        raise CopurError(f"fusion: cannot bind HTTP port {host}:{topology.fusion.http_port}")


def serve_fusion(config: str | Path) -> None:
    """``copur fusion --config FILE``: run :func:`run_fusion` until SIGINT / SIGTERM, then stop
    gracefully."""
    topology = load_topology(config)

    async def main() -> None:
        with stop_on_signals() as stop:
            await run_fusion(topology, stop)

    asyncio.run(main())
