"""The images: an offline base image made from Debian's packages (``debootstrap`` + ``docker
import``, no registry needed), the wheelhouse every Python package of the image comes from, and
the project image built from ``deploy/docker/Dockerfile`` with nothing fetched during the build."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from copur.operations.containers.engine import DockerError, Engine, run_tool

__all__ = ["BASE_IMAGE", "IMAGE", "build_base_image", "build_image", "fill_wheelhouse"]

BASE_IMAGE = "copur-base:bookworm"
IMAGE = "copur:latest"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
WHEELHOUSE = Path("deploy/docker/wheelhouse")
DOCKERFILE = Path("deploy/docker/Dockerfile")


def build_base_image(
    engine: Engine,
    *,
    work_dir: Path,
    tag: str = BASE_IMAGE,
    mirror: str = DEBIAN_MIRROR,
    suite: str = "bookworm",
    say: Callable[[str], None] = print,
) -> float:
    """Make ``tag`` unless the engine has it: ``debootstrap --variant=minbase`` of ``suite`` with
    Python 3 and venv from ``mirror`` into a folder under ``work_dir``, imported as one layer.
    Returns the seconds spent (0 when the image was there)."""
    if engine.docker("image", "inspect", tag, check=False).returncode == 0:
        say(f"base image {tag}: present")
        return 0.0
    if shutil.which("debootstrap") is None:
        raise DockerError("debootstrap not found: `make docker-packages` installs it")
    started = time.monotonic()
    rootfs = work_dir / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    log = work_dir / "debootstrap.log"
    say(f"base image {tag}: debootstrap {suite} from {mirror} (log {log})")
    with log.open("wb") as sink:
        done = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                suite,
                str(rootfs),
                mirror,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        last = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(empty log)"]
        raise DockerError(f"debootstrap failed: {last[0]}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["docker", "import", "-", tag], stdin=tar.stdout, capture_output=True, env=engine.env()
    )
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    if imported.returncode != 0 or tar.returncode != 0:
        raise DockerError(f"docker import {tag} failed: {imported.stderr.decode().strip()}")
    seconds = time.monotonic() - started
    say(f"base image {tag}: imported in {seconds:.0f} s")
    return seconds


def fill_wheelhouse(
    repo: Path, *, wheelhouse: Path = WHEELHOUSE, say: Callable[[str], None] = print
) -> int:
    """Download every wheel the image installs (the client, the server's dependencies under
    constraints.txt, the build backend) into ``repo/wheelhouse`` with this machine's pip and its
    configuration (index, certificate, local wheel folder: the CPU build of torch). Returns the
    number of wheels there."""
    dest = repo / wheelhouse
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        "-c",
        "constraints.txt",
        "./clients",
        ".",
        "setuptools>=68",
        "wheel",
    ]
    run_tool(argv, env=None, cwd=repo, timeout=1800)
    count = len(list(dest.glob("*.whl")))
    say(f"wheelhouse {wheelhouse}: {count} wheels")
    return count


def build_image(
    engine: Engine,
    repo: Path,
    *,
    tag: str = IMAGE,
    base: str = BASE_IMAGE,
    log: Path,
    say: Callable[[str], None] = print,
) -> float:
    """``docker build`` of the project image from ``base`` with ``OFFLINE=1`` (every wheel from
    the wheelhouse), output in ``log``, each step echoed. Returns the seconds spent."""
    started = time.monotonic()
    argv = [
        "docker",
        "build",
        "-f",
        str(DOCKERFILE),
        "-t",
        tag,
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-arg",
        "OFFLINE=1",
        ".",
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as sink:
        proc = subprocess.Popen(
            argv,
            cwd=repo,
            env={**engine.env(), "DOCKER_BUILDKIT": "0"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            if line.startswith("Step "):
                say(f"  {line.rstrip()[:110]}")
        proc.wait()
    if proc.returncode != 0:
        last = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(empty log)"]
        raise DockerError(f"docker build {tag} failed: {last[0]} (log: {log})")
    seconds = time.monotonic() - started
    say(f"image {tag}: built in {seconds:.0f} s")
    return seconds
