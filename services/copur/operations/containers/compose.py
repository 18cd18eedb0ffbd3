"""A docker compose project on an :class:`~.engine.Engine`: bring-up that waits for every
healthcheck, files copied out of its containers, what it left behind, and the faults an operator
can inflict on one service's container: ``docker kill``/``start``, ``pause``/``unpause``, a
network disconnect and reconnect, a restart, and a lossy or rate-limited link made inside the
container's own network namespace (``nsenter`` with the host's ``iptables`` and ``tc``)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from copur.operations.containers.engine import (
    DockerError,
    Engine,
    compose_command,
    run_tool,
)

__all__ = ["ComposeProject", "Leftovers"]

PROJECT_LABEL = "com.docker.compose.project"


@dataclass(frozen=True, kw_only=True)
class Leftovers:
    """What a compose project still has on the engine: container, network and volume names."""

    containers: list[str]
    networks: list[str]
    volumes: list[str]

    def __bool__(self) -> bool:
        return bool(self.containers or self.networks or self.volumes)

    def __str__(self) -> str:
        parts = [
            f"{kind}: {', '.join(names)}"
            for kind, names in (
                ("containers", self.containers),
                ("networks", self.networks),
                ("volumes", self.volumes),
            )
            if names
        ]
        return "; ".join(parts) or "nothing"


@dataclass(kw_only=True)
class ComposeProject:
    """The compose project ``name`` of ``files`` (run from ``repo``) on ``engine``."""

    engine: Engine
    repo: Path
    name: str = "copur"
    files: Sequence[Path] = (Path("docker-compose.yml"),)

    def compose(self, *args: str, timeout: float = 300.0) -> str:
        """``docker compose -p NAME -f FILE... ARGS``; its stdout."""
        argv = [*compose_command(), "-p", self.name]
        for file in self.files:
            argv += ["-f", str(file)]
        out = run_tool(
            [*argv, *args], env=self.engine.env(), cwd=self.repo, timeout=timeout, check=True
        )
        return out.stdout

    @property
    def network(self) -> str:
        """The project's default network."""
        return f"{self.name}_default"

    def up(self, *, timeout: float = 600.0) -> None:
        """``up -d --wait``: every service started and healthy, the one-shot trainer completed
        successfully (compose fails otherwise). The image must exist (``--no-build``)."""
        self.compose("up", "-d", "--wait", "--no-build", timeout=timeout)

    def down(self) -> None:
        """``down -v --remove-orphans``: containers, the network and the named volumes."""
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=300)

    def state(self) -> list[dict[str, object]]:
        """``ps -a`` as JSON objects (Service, State, Health, ExitCode, ...)."""
        out = self.compose("ps", "-a", "--format", "json").strip()
        if not out:
            return []
        if out.startswith("["):
            return list(json.loads(out))
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def container(self, service: str) -> str:
        """The id of ``service``'s (only) container, running or not."""
        ids = self.compose("ps", "-a", "-q", service).split()
        if len(ids) != 1:
            raise DockerError(f"service {service}: expected one container, found {len(ids)}")
        return ids[0]

    def inspect(self, service: str, template: str) -> str:
        """``docker inspect -f TEMPLATE`` of ``service``'s container."""
        return self.engine.docker("inspect", "-f", template, self.container(service)).stdout.strip()

    def copy_out(self, service: str, source: str, dest: Path) -> Path:
        """Copy ``source`` (a folder) out of ``service``'s container to ``dest`` (replaced)."""
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.engine.docker("cp", f"{self.container(service)}:{source}", str(dest))
        return dest

    def leftovers(self) -> Leftovers:
        """The containers, networks and volumes labelled with this project on the engine."""
        label = f"label={PROJECT_LABEL}={self.name}"

        def names(*args: str) -> list[str]:
            return sorted(self.engine.docker(*args, "--filter", label).stdout.split())

        return Leftovers(
            containers=names("ps", "-a", "--format", "{{.Names}}"),
            networks=names("network", "ls", "--format", "{{.Name}}"),
            volumes=names("volume", "ls", "--format", "{{.Name}}"),
        )

    # --- faults on one service's container -----------------------------------------------------

    def docker_on(self, verb: str, service: str, *extra: str) -> None:
        """``docker VERB [EXTRA] CONTAINER`` (kill, start, pause, unpause, restart, ...)."""
        self.engine.docker(verb, *extra, self.container(service), timeout=120)

    def disconnect(self, service: str) -> None:
        """Take ``service``'s container off the project network (its peers can no longer reach
        it; the process keeps running)."""
        self.engine.docker("network", "disconnect", self.network, self.container(service))

    def connect(self, service: str) -> None:
        """Put ``service``'s container back on the project network under its service name."""
        self.engine.docker(
            "network", "connect", "--alias", service, self.network, self.container(service)
        )

    def _netns(self, service: str, *argv: str) -> str:
        pid = self.inspect(service, "{{.State.Pid}}")
        if pid in {"", "0"}:
            raise DockerError(f"service {service}: its container is not running")
        return run_tool(["nsenter", "-t", pid, "-n", *argv], env=None, timeout=30).stdout

    def interface(self, service: str) -> str:
        """The network interface of ``service``'s container on the project network (``eth0``
        at first; another name after a disconnect and reconnect)."""
        for line in self._netns(service, "ip", "-o", "link", "show").splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name != "lo":
                return name
        raise DockerError(f"service {service}: its container has no network interface")

    def lossy_link(self, service: str, *, loss: float) -> None:
        """Drop each packet in and out of ``service``'s container with probability ``loss``
        (iptables' statistic match, inside its network namespace)."""
        for chain in ("INPUT", "OUTPUT"):
            self._netns(service, *_loss_rule("-A", chain, loss))

    def heal_lossy_link(self, service: str, *, loss: float) -> None:
        """Remove the rules :meth:`lossy_link` added."""
        for chain in ("INPUT", "OUTPUT"):
            self._netns(service, *_loss_rule("-D", chain, loss))

    def slow_link(self, service: str, *, rate: str) -> None:
        """Limit what ``service``'s container sends to ``rate`` (``tc`` token bucket on its network
        interface, a queue of up to 10 s), so that large answers arrive late."""
        self._netns(
            service,
            *("tc", "qdisc", "add", "dev", self.interface(service), "root", "tbf"),
            *("rate", rate, "burst", "16kbit", "latency", "10s"),
        )

    def heal_slow_link(self, service: str) -> None:
        """Remove :meth:`slow_link`'s queue."""
        self._netns(service, "tc", "qdisc", "del", "dev", self.interface(service), "root")


def _loss_rule(action: str, chain: str, loss: float) -> list[str]:
    return [
        *("iptables", "-w", action, chain, "-m", "statistic", "--mode", "random"),
        *("--probability", f"{loss:.3f}", "-j", "DROP"),
    ]
