"""The shipped topologies, docker compose and the Kubernetes manifests all put the front doors
behind API keys: the topology's ``auth`` section, the keys reaching the fusion center and the
adversary, the Makefile creating them before `make demo` / `make perf`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from copur.transport.topology import load_topology

REPO = Path(__file__).resolve().parents[2]
KEYS_IN_CONTAINERS = "/certs/api-keys.json"


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-scenarios.yaml"])
def test_shipped_topologies_demand_keys_from_runs_certs(name: str) -> None:
    # Execute
    topology = load_topology(REPO / "deploy" / name, env={})
    # Assert
    assert (topology.auth.mode, topology.auth.keys_file) == ("keys", "runs/certs/api-keys.json")


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def test_compose_writes_the_keys_once_and_both_roles_read_them() -> None:
    # Prepare
    services = _compose()
    # Execute
    trainer = " ".join(services["trainer"]["command"])
    adversary = [str(c) for c in services["adversary-1"]["command"]]
    fusions = {name: services[name]["environment"] for name in ("fusion", "fusion-gpu")}
    # Assert
    assert "test -f /certs/api-keys.json || copur keys init /certs" in trainer
    assert adversary[adversary.index("--api-keys-file") + 1] == KEYS_IN_CONTAINERS
    for env in fusions.values():
        assert env["COPUR_API_KEYS_FILE"] == KEYS_IN_CONTAINERS
        topology = load_topology(
            REPO / "deploy" / "cluster.yaml", env={k: str(v) for k, v in env.items()}
        )
        assert topology.auth.keys_file == KEYS_IN_CONTAINERS


def _container(file: str) -> dict[str, Any]:
    deployment = next(
        d
        for d in yaml.safe_load_all((REPO / "deploy" / "k8s" / file).read_text())
        if d["kind"] == "Deployment"
    )
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("file", ["fusion.yaml", "adversary.yaml"])
def test_kubernetes_pods_read_the_keys_from_the_certs_secret(file: str) -> None:
    # Execute
    env = {e["name"]: e for e in _container(file).get("env", [])}
    # Assert
    ref = env["COPUR_API_KEYS"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("copur-certs", "api-keys.json")


def test_make_demo_and_perf_create_the_keys_first() -> None:
    # Prepare
    text = (REPO / "Makefile").read_text()
    certs = re.search(r"^CERTS\s*\?=\s*(\S+)", text, re.M)
    # Execute
    rules = {
        m.group(1): m.group(2).split() for m in re.finditer(r"^([\w$()/.-]+):(.*)$", text, re.M)
    }
    # Assert
    assert certs is not None and certs.group(1) == "runs/certs"
    assert "$(CERTS)/api-keys.json" in rules["demo"] and "$(CERTS)/api-keys.json" in rules["perf"]
    assert (
        "$(BIN)/copur keys init $(CERTS)"
        in text.split("$(CERTS)/api-keys.json: | install", 1)[1].splitlines()[1]
    )
