"""Real clusters for the tests that launch processes: the shipped topology
(``deploy/cluster.yaml``) with the test's bundle, free loopback ports and the test's fusion
settings, with plaintext gRPC and no API keys, which the topology allows on loopback only:
these tests exercise faults and load, not the security layer (tested on its own)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from copur.operations.launcher import Cluster
from copur.transport.topology import load_topology

__all__ = [
    "DEPLOYED",
    "SCENARIOS",
    "alive",
    "free_ports",
    "running_cluster",
    "start_cluster",
    "wait_for",
    "write_topology",
]

DEPLOYED = Path(__file__).resolve().parents[1] / "deploy" / "cluster.yaml"
SCENARIOS = DEPLOYED.parent / "cluster-scenarios.yaml"  # every party behind an adversary slot
START_TIMEOUT_S = 240.0  # every process imports torch; on a busy 2-core machine that takes a while


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports free right now."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def write_topology(
    folder: Path,
    bundle: Path,
    *,
    fusion: Mapping[str, Any] | None = None,
    base: Path = DEPLOYED,
) -> Path:
    """``folder/cluster.yaml``: ``base`` (deploy/cluster.yaml) with ``bundle``, fresh loopback
    ports, the adversaries' policy ``none``, ``fusion`` overriding the fusion section, plaintext
    gRPC and no API keys."""
    raw = yaml.safe_load(base.read_text())
    adversaries = raw.get("adversaries") or []
    ports = iter(free_ports(len(raw["parties"]) + 2 * len(adversaries) + 2))
    raw.update(bundle=str(bundle), bind_host="127.0.0.1", hostnames="local")
    raw.pop("data_dir", None)
    raw["parties"] = [dict(p, port=next(ports)) for p in raw["parties"]]
    raw["adversaries"] = [
        dict(a, port=next(ports), control_port=next(ports), policy="none") for a in adversaries
    ]
    raw["fusion"] = {
        **(raw.get("fusion") or {}),
        "http_port": next(ports),
        "grpc_port": next(ports),
        **(fusion or {}),
    }
    raw["tls"], raw["auth"] = {"mode": "plaintext"}, {"mode": "none"}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cluster.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def start_cluster(
    folder: Path, bundle: Path, *, fusion: Mapping[str, Any] | None = None
) -> Cluster:
    """Start the cluster of :func:`write_topology` (logs in ``folder/logs``) and wait until it is
    ready."""
    path = write_topology(folder, bundle, fusion=fusion)
    cluster = Cluster(load_topology(path, env={}), config_path=path, log_dir=folder / "logs")
    return cluster.start(timeout=START_TIMEOUT_S)


@contextmanager
def running_cluster(
    folder: Path, bundle: Path, *, fusion: Mapping[str, Any] | None = None
) -> Iterator[Cluster]:
    """:func:`start_cluster`, stopped (every process) on the way out."""
    cluster = start_cluster(folder, bundle, fusion=fusion)
    try:
        yield cluster
    finally:
        cluster.stop()


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.1) -> float:
    """Poll ``check()`` until truthy; the seconds it took. AssertionError naming ``what`` after
    ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - started
