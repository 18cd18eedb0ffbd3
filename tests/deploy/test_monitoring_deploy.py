"""The monitoring deployment: Prometheus and Grafana in docker-compose.yml (profile
``monitoring`` only: the default ``docker compose up``, which the offline container tests run,
starts neither) and in deploy/k8s/monitoring (its own kustomization, valid Kubernetes offline,
scraping every fusion pod of deploy/k8s with only the CA certificate of the Secret copur-certs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from copur.operations.containers.engine import compose_command
from copur.transport.topology import load_topology
from promkit import PROMETHEUS_DIR, REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
K8S = REPO / "deploy" / "k8s"
MONITORING = K8S / "monitoring"
TOPOLOGY = load_topology(REPO / "deploy" / "cluster.yaml", env={})
K8S_VERSIONS = ("1.28", kubernetes_validate.latest_version())
SERVICES = {"prometheus": "prom/prometheus", "grafana": "grafana/grafana"}

Doc = dict[str, Any]


def _compose() -> dict[str, Doc]:
    services: dict[str, Doc] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return services


def _manifest_files() -> list[Path]:
    return sorted(p for p in MONITORING.glob("*.yaml") if p.name != "kustomization.yaml")


def _documents() -> list[tuple[str, Doc]]:
    return [
        (f"{path.name}#{i}", doc)
        for path in _manifest_files()
        for i, doc in enumerate(yaml.safe_load_all(path.read_text()))
        if doc
    ]


DOCUMENTS = _documents()


def _objects(kind: str, folder: Path = MONITORING) -> dict[str, Doc]:
    docs = [
        d
        for p in sorted(folder.glob("*.yaml"))
        if p.name != "kustomization.yaml"
        for d in yaml.safe_load_all(p.read_text())
        if d
    ]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _compose_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_command(), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


# --- docker compose
# ------------------------------------------------------------------------------------


def test_compose_config_with_the_monitoring_profile_is_valid() -> None:
    # Execute
    checked = _compose_run("--profile", "monitoring", "config", "-q")

    # Assert
    assert checked.returncode == 0, checked.stderr


def test_a_plain_compose_up_starts_no_monitoring_service() -> None:
    # Execute
    plain = _compose_run("config", "--services")
    monitoring = _compose_run("--profile", "monitoring", "config", "--services")

    # Assert
    assert plain.returncode == 0 and monitoring.returncode == 0, plain.stderr + monitoring.stderr
    assert not set(SERVICES) & set(plain.stdout.split())
    assert set(SERVICES) <= set(monitoring.stdout.split())


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_compose_monitoring_services_are_pinned_and_local(name: str) -> None:
    # Prepare
    service = _compose()[name]

    # Execute
    image, _, tag = service["image"].partition(":")
    ports = [str(p) for p in service.get("ports", [])]

    # Assert: a fixed tag, only the monitoring profile, published on loopback only
    assert image == SERVICES[name]
    assert tag and tag != "latest"
    assert service["profiles"] == ["monitoring"]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports)
    assert "build" not in service


def test_compose_published_host_ports_do_not_clash_with_the_cluster() -> None:
    # Execute
    published = [str(p).split(":")[-2] for s in _compose().values() for p in s.get("ports", [])]

    # Assert
    assert len(published) == len(set(published)), sorted(published)


def test_compose_prometheus_scrapes_the_fusion_service_over_https() -> None:
    # Prepare
    services = _compose()
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())

    # Execute
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "copur-fusion"]
    (target,) = [t for group in job["static_configs"] for t in group["targets"]]
    host, port = target.rsplit(":", 1)

    # Assert: the fusion service on the topology's HTTP port; the CA from the certs volume (ro)
    assert host == "fusion" and int(port) == TOPOLOGY.fusion.http_port
    assert str(TOPOLOGY.fusion.http_port) in [str(p) for p in services["fusion"]["expose"]]
    assert job["scheme"] == "https"
    assert "certs:/certs:ro" in services["prometheus"]["volumes"]
    assert services["prometheus"]["user"].split(":")[0] == "10001", "the owner of /certs (0700)"


# --- Kubernetes
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("where", "doc"), DOCUMENTS, ids=[w for w, _ in DOCUMENTS])
def test_manifest_is_valid_against_the_kubernetes_schema(
    where: str, doc: Doc, version: str
) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_manifest_and_pins_the_images() -> None:
    # Prepare
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    containers = [
        c
        for d in _objects("Deployment").values()
        for c in d["spec"]["template"]["spec"]["containers"]
    ]

    # Execute
    pins = {i["name"]: i["newTag"] for i in kustomization["images"]}
    used = dict(c["image"].split(":", 1) for c in containers)

    # Assert
    assert sorted(kustomization["resources"]) == sorted(p.name for p in _manifest_files())
    assert used == pins
    assert set(used) == set(SERVICES.values())


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl on PATH")
def test_kustomize_builds_the_monitoring_directory() -> None:
    # Execute
    built = subprocess.run(
        ["kubectl", "kustomize", str(MONITORING)], capture_output=True, text=True, timeout=120
    )

    # Assert
    assert built.returncode == 0, built.stderr
    objects = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(built.stdout) if d}
    assert objects == {(d["kind"], d["metadata"]["name"]) for _, d in DOCUMENTS}


def test_every_object_is_labelled_and_the_names_do_not_clash_with_the_cluster() -> None:
    # Prepare
    cluster = {
        (d["kind"], d["metadata"]["name"])
        for p in sorted(K8S.glob("*.yaml"))
        if p.name != "kustomization.yaml"
        for d in yaml.safe_load_all(p.read_text())
        if d
    }

    # Execute
    ours = [(d["kind"], d["metadata"]["name"]) for _, d in DOCUMENTS]

    # Assert
    assert len(ours) == len(set(ours))
    assert not set(ours) & cluster
    for where, doc in DOCUMENTS:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "copur", where
        assert labels["app.kubernetes.io/component"] in {"prometheus", "grafana"}, where


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_monitoring_pods_run_as_non_root_with_resources_and_probes(name: str) -> None:
    # Prepare
    deployment = _objects("Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]

    # Execute
    (container,) = pod["containers"]
    service = _objects("Service")[name]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    # Assert
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][bound].keys()
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    assert service["spec"]["selector"].items() <= pod_labels(deployment).items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)


def pod_labels(deployment: Doc) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def test_prometheus_gets_the_ca_certificate_and_no_key() -> None:
    # Prepare
    pod = _objects("Deployment")["prometheus"]["spec"]["template"]["spec"]

    # Execute
    secrets = [v["secret"] for v in pod["volumes"] if "secret" in v]

    # Assert
    assert secrets == [
        {
            "secretName": "copur-certs",
            "defaultMode": 0o444,
            "items": [{"key": "ca.pem", "path": "ca.pem"}],
        }
    ]


def test_the_headless_service_finds_every_fusion_pod_on_its_http_port() -> None:
    # Prepare
    fusion = _objects("Deployment", K8S)["fusion"]
    headless = _objects("Service")["fusion-metrics"]
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus-k8s.yml").read_text())

    # Execute
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "copur-fusion"]
    (sd,) = job["dns_sd_configs"]
    fusion_ports = {
        p["containerPort"] for p in fusion["spec"]["template"]["spec"]["containers"][0]["ports"]
    }

    # Assert: every pod (not ready ones too) of the fusion Deployment, on the topology's HTTP port
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert headless["spec"]["selector"].items() <= pod_labels(fusion).items()
    assert sd["names"] == [headless["metadata"]["name"]] and sd["type"] == "A"
    assert sd["port"] == TOPOLOGY.fusion.http_port in fusion_ports
    assert job["scheme"] == "https" and job["tls_config"]["server_name"] == "fusion"
