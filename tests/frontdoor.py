"""A real fusion center in this process for front-door tests: the six mfeat parties as in-process
gRPC servers, and :func:`copur.roles.fusion.run_fusion` (bundle, handler, worker, HTTP and gRPC
front doors, the topology's ``auth``) on its own event loop in a thread, plaintext gRPC on
loopback; the HTTP front door plain, or HTTPS with the ``fusion`` key pair of ``https_dir``."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from clusterkit import free_ports
from copur.roles.fusion import run_fusion
from copur.roles.party import PartyApp, PartyCore
from copur.transport.topology import Topology

__all__ = ["FrontDoor", "serve_front_door"]


@dataclass(frozen=True)
class FrontDoor:
    url: str
    grpc: str
    topology: Topology
    ca: Path | None = None  # the CA that verifies an https:// url


@contextmanager
def serve_front_door(
    bundle_dir: Path,
    *,
    keys_file: Path | None,
    num_parties: int = 6,
    https_dir: Path | None = None,
    **fusion: object,
) -> Iterator[FrontDoor]:
    """Parties and fusion center up and ready (``keys_file`` None: ``auth.mode none``; with
    ``https_dir``, ``copur certs init`` output, HTTPS); stopped on exit."""
    parties = [
        PartyApp(core=PartyCore.from_bundle(bundle_dir, i)).start() for i in range(num_parties)
    ]
    http_port, grpc_port = free_ports(2)
    auth = {"mode": "none"} if keys_file is None else {"mode": "keys", "keys_file": str(keys_file)}
    topology = Topology.model_validate(
        {
            "bundle": str(bundle_dir),
            "parties": [{"index": i, "port": p.port} for i, p in enumerate(parties)],
            "fusion": {"http_port": http_port, "grpc_port": grpc_port, "max_delay_ms": 1, **fusion},
            "tls": {"mode": "plaintext"}
            if https_dir is None
            else {"mode": "plaintext", "http": "https", "dir": str(https_dir)},
            "auth": auth,
        }
    )
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            loop.run_until_complete(run_fusion(topology, stop))
        except BaseException as exc:  # reported by the waiting test
            failure.append(exc)

    thread = threading.Thread(target=serve, name="fusion-under-test", daemon=True)
    thread.start()
    scheme = "http" if https_dir is None else "https"
    url = f"{scheme}://127.0.0.1:{http_port}"
    ca = None if https_dir is None else https_dir / "ca.pem"
    try:
        deadline = time.monotonic() + 120
        while not _ready(url, ca):
            assert not failure, f"fusion center failed: {failure[0]!r}"
            assert time.monotonic() < deadline, "fusion center not ready after 120 s"
            time.sleep(0.1)
        yield FrontDoor(url=url, grpc=f"127.0.0.1:{grpc_port}", topology=topology, ca=ca)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
        for party in parties:
            party.stop(0)


def _ready(url: str, ca: Path | None) -> bool:
    verify = True if ca is None else ssl.create_default_context(cafile=str(ca))
    try:
        return httpx.get(f"{url}/readyz", timeout=1, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False
