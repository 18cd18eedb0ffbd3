"""deploy/k8s agrees with the topology file (deploy/cluster.yaml) and is valid Kubernetes,
checked offline.

Every manifest document is validated against the strict Kubernetes JSON schemas that the
kubernetes-validate package ships (no network), for an old-but-supported minor and the newest one
it has."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from copur.transport.topology import Topology, load_topology, service_name

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
TOPOLOGY_FILE = REPO / "deploy" / "cluster.yaml"
TOPOLOGY = load_topology(TOPOLOGY_FILE, env={})

# Native gRPC probes are GA since 1.27; 1.28 is the oldest minor we promise, latest_version() the
# newest shipped.
K8S_VERSIONS = ("1.28", kubernetes_validate.latest_version())
IMAGE = "copur:latest"
BUNDLE = "/bundle/mfeat"
CERTS = "/certs"
CERTS_SECRET = "copur-certs"
FUSION_ENV = {
    "COPUR_HOSTNAMES": "service",
    "COPUR_BIND_HOST": "0.0.0.0",
    "COPUR_BUNDLE": BUNDLE,
    "COPUR_TLS_DIR": CERTS,
}
TRAINER_COMMAND = (
    f"test -f {BUNDLE}/calibration.json || copur train --dataset mfeat --out {BUNDLE} --no-progress"
)

Doc = dict[str, Any]


def _manifest_files() -> list[Path]:
    return sorted(
        p for p in K8S.iterdir() if p.suffix in {".yaml", ".yml"} and p.name != "kustomization.yaml"
    )


def _load_documents() -> list[tuple[str, Doc]]:
    docs = []
    for path in _manifest_files():
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                docs.append((f"{path.name}#{i}", doc))
    return docs


DOCUMENTS = _load_documents()


def _objects(kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for _, d in DOCUMENTS if d["kind"] == kind}


def _flag(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def _main_container(deployment: Doc) -> Doc:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: expected one container"
    return containers[0]


def _port_number(container: Doc, port: int | str) -> int:
    """A probe's / Service's target port as a number: a number, or the name of one of the
    container's ports."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"port name {port!r} is not declared by container {container['name']}"
    return named[port]


def _container_ports(container: Doc) -> set[int]:
    return {p["containerPort"] for p in container.get("ports", [])}


def _exec_probe_target(probe: Doc) -> int | None:
    """The port of an exec `copur probe --grpc 127.0.0.1:PORT ...` probe; None for any other
    probe."""
    command = probe.get("exec", {}).get("command", [])
    if command[:2] != ["copur", "probe"] or "--grpc" not in command:
        return None
    return int(_flag(command, "--grpc").rsplit(":", 1)[1])


def _grpc_probe_ports(container: Doc) -> dict[str, int]:
    """Probe kind -> port, for gRPC health probes: exec `copur probe --grpc` (mTLS) or native
    gRPC."""
    out = {}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind, {})
        port = probe["grpc"]["port"] if "grpc" in probe else _exec_probe_target(probe)
        if port is not None:
            out[kind] = port
    return out


def _http_probe(container: Doc, kind: str) -> tuple[str, int]:
    assert kind in container, f"{container['name']} has no {kind}"
    get = container[kind].get("httpGet")
    assert get is not None, f"{container['name']}: {kind} is not an HTTP GET"
    return get["path"], _port_number(container, get["port"])


def _service_ports(service: Doc) -> dict[int, int | str]:
    return {p["port"]: p.get("targetPort", p["port"]) for p in service["spec"]["ports"]}


def _selected_deployments(service: Doc) -> list[str]:
    selector = service["spec"]["selector"]
    return [
        name
        for name, dep in _objects("Deployment").items()
        if selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    ]


def _check_service_matches(name: str, expected_ports: set[int]) -> None:
    services, deployments = _objects("Service"), _objects("Deployment")
    assert name in services, f"no Service {name}"
    assert name in deployments, f"no Deployment {name}"
    service = services[name]
    assert _selected_deployments(service) == [name], (
        f"Service {name} must select exactly Deployment {name}'s pods"
    )
    container = _main_container(deployments[name])
    ports = _service_ports(service)
    assert set(ports) == expected_ports
    for port, target in ports.items():
        assert _port_number(container, target) == port, (
            f"Service {name} port {port} targets {target}"
        )


def _expected_roles(topology: Topology) -> set[str]:
    parties = {service_name("party", p.index) for p in topology.parties}
    adversaries = {service_name("adversary", a.party) for a in topology.adversaries}
    return parties | adversaries | {service_name("fusion")}


# --- schemas
# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("where", "doc"), DOCUMENTS, ids=[w for w, _ in DOCUMENTS])
def test_manifest_is_valid_against_the_kubernetes_schema(
    where: str, doc: Doc, version: str
) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_rejects_an_unknown_field() -> None:
    # Prepare: a real manifest with a misspelt field
    deployment = copy.deepcopy(_objects("Deployment")["fusion"])
    deployment["spec"]["replica"] = 2

    # Execute / Assert
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_there_are_manifests_and_every_document_is_a_kubernetes_object() -> None:
    assert len(DOCUMENTS) >= 2 * len(_expected_roles(TOPOLOGY))
    for where, doc in DOCUMENTS:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), where
        assert doc["metadata"].get("name"), where


# --- kustomize
# -----------------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_file() -> None:
    # Prepare
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())

    # Execute
    listed = kustomization.get("resources", [])
    on_disk = [p.name for p in _manifest_files()]

    # Assert
    assert kustomization["apiVersion"].startswith("kustomize.config.k8s.io/")
    assert kustomization["kind"] == "Kustomization"
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    assert sorted(listed) == sorted(on_disk)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl on PATH")
def test_kustomize_builds_the_directory() -> None:
    # Execute
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=120
    )

    # Assert
    assert built.returncode == 0, built.stderr
    objects = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(built.stdout) if d}
    assert objects == {(d["kind"], d["metadata"]["name"]) for _, d in DOCUMENTS}


# --- labels, names
# ------------------------------------------------------------------------------------


def test_every_object_is_labelled_and_names_are_unique_per_kind() -> None:
    seen: set[tuple[str, str]] = set()
    for where, doc in DOCUMENTS:
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "copur", where
        assert labels.get("app.kubernetes.io/component"), where
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in seen, f"{key} defined twice"
        seen.add(key)


def test_deployments_and_services_are_exactly_the_topology_roles() -> None:
    # Prepare
    expected = _expected_roles(TOPOLOGY)

    # Execute
    deployments, services = set(_objects("Deployment")), set(_objects("Service"))

    # Assert
    assert deployments == expected
    assert services == expected


@pytest.mark.parametrize("name", sorted(_objects("Deployment")))
def test_pod_template_labels_match_selector_and_component(name: str) -> None:
    # Prepare
    deployment = _objects("Deployment")[name]
    role = name.split("-")[0]

    # Execute
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]

    # Assert
    assert selector.items() <= template_labels.items()
    assert template_labels["app.kubernetes.io/component"] == role
    assert deployment["metadata"]["labels"]["app.kubernetes.io/component"] == role


# --- pods: image, bundle, security, resources
# ----------------------------------------------------------


def _pod_specs() -> dict[str, Doc]:
    pods = {
        f"Deployment/{n}": d["spec"]["template"]["spec"] for n, d in _objects("Deployment").items()
    }
    pods |= {f"Job/{n}": d["spec"]["template"]["spec"] for n, d in _objects("Job").items()}
    return pods


@pytest.mark.parametrize("owner", sorted(_pod_specs()))
def test_pods_run_the_image_as_non_root_with_resources_and_the_bundle(owner: str) -> None:
    # Prepare
    pod = _pod_specs()[owner]
    claims = set(_objects("PersistentVolumeClaim"))

    # Execute
    containers = pod.get("initContainers", []) + pod["containers"]
    bundle_claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod.get("volumes", [])
        if "persistentVolumeClaim" in v
    }

    # Assert
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert bundle_claims and bundle_claims <= claims, (
        f"{owner} mounts a claim that is not defined: {bundle_claims}"
    )
    for container in containers:
        assert container["image"] == IMAGE
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"][bound].keys(), (
                f"{owner}/{container['name']}"
            )
        assert any(m["mountPath"] == "/bundle" for m in container["volumeMounts"])


def test_trainer_job_writes_the_bundle_once() -> None:
    # Prepare
    jobs = _objects("Job")

    # Execute
    container = _main_container(jobs["trainer"])

    # Assert
    assert list(jobs) == ["trainer"]
    assert container["command"] == ["sh", "-c", TRAINER_COMMAND]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/bundle")
    assert not mount.get("readOnly", False)
    assert jobs["trainer"]["spec"]["template"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}


@pytest.mark.parametrize("name", sorted(_objects("Deployment")))
def test_long_running_pods_wait_for_the_bundle(name: str) -> None:
    pod = _objects("Deployment")[name]["spec"]["template"]["spec"]
    waits = [" ".join(c["command"]) for c in pod.get("initContainers", [])]
    assert any(f"{BUNDLE}/manifest.json" in w for w in waits), (
        f"{name} does not wait for the trainer's bundle"
    )


@pytest.mark.parametrize("name", sorted(_objects("Deployment")))
def test_every_probe_targets_a_declared_container_port(name: str) -> None:
    # Prepare
    container = _main_container(_objects("Deployment")[name])
    declared = _container_ports(container)

    # Execute
    probes = {
        kind: container[kind]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        if kind in container
    }
    targets = {
        kind: _exec_probe_target(probe)
        or _port_number(
            container, (probe.get("grpc") or probe.get("httpGet") or probe.get("tcpSocket"))["port"]
        )
        for kind, probe in probes.items()
    }

    # Assert
    assert {"readinessProbe", "livenessProbe"} <= probes.keys()
    for kind, port in targets.items():
        assert port in declared, (
            f"{name}: {kind} probes port {port}, which the container does not declare"
        )


# --- roles
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("party", TOPOLOGY.parties, ids=lambda p: service_name("party", p.index))
def test_party_deployment_and_service(party: Any) -> None:
    # Prepare
    name = service_name("party", party.index)

    # Execute
    deployment = _objects("Deployment").get(name)
    assert deployment is not None, f"no Deployment {name}"
    container = _main_container(deployment)
    command = container["command"]

    # Assert
    assert command[:2] == ["copur", "party"]
    assert _flag(command, "--party") == str(party.index)
    assert _flag(command, "--port") == str(party.port)
    assert _flag(command, "--bundle") == BUNDLE
    assert _flag(command, "--host") == "0.0.0.0"
    assert _container_ports(container) == {party.port}
    probes = _grpc_probe_ports(container)
    assert probes.get("readinessProbe") == party.port
    assert probes.get("livenessProbe") == party.port
    _check_service_matches(name, {party.port})


@pytest.mark.parametrize(
    "adversary", TOPOLOGY.adversaries, ids=lambda a: service_name("adversary", a.party)
)
def test_adversary_deployment_and_service(adversary: Any) -> None:
    # Prepare
    name = service_name("adversary", adversary.party)
    upstream = f"{service_name('party', adversary.party)}:{TOPOLOGY.party(adversary.party).port}"

    # Execute
    deployment = _objects("Deployment").get(name)
    assert deployment is not None, f"no Deployment {name}"
    container = _main_container(deployment)
    command = container["command"]

    # Assert
    assert command[:2] == ["copur", "adversary"]
    assert _flag(command, "--upstream") == upstream
    assert _flag(command, "--port") == str(adversary.port)
    assert _flag(command, "--control-port") == str(adversary.control_port)
    assert _flag(command, "--party") == str(adversary.party)
    assert _flag(command, "--bundle") == BUNDLE
    assert _container_ports(container) == {adversary.port, adversary.control_port}
    assert _http_probe(container, "readinessProbe") == ("/readyz", adversary.control_port)
    assert _http_probe(container, "livenessProbe") == ("/healthz", adversary.control_port)
    assert adversary.port in _grpc_probe_ports(container).values()
    assert deployment["spec"].get("replicas", 1) == 1, (
        "the attack policy is per process: one replica"
    )
    _check_service_matches(name, {adversary.port, adversary.control_port})


def test_fusion_deployment_and_service() -> None:
    # Prepare
    fusion = TOPOLOGY.fusion
    name = service_name("fusion")

    # Execute
    deployment = _objects("Deployment")[name]
    container = _main_container(deployment)
    env = {e["name"]: e.get("value") for e in container.get("env", [])}

    # Assert
    assert container["command"] == ["copur", "fusion", "--config", "/etc/copur/cluster.yaml"]
    assert FUSION_ENV.items() <= env.items()
    assert _container_ports(container) == {fusion.http_port, fusion.grpc_port}
    assert _http_probe(container, "readinessProbe") == ("/readyz", fusion.http_port)
    assert _http_probe(container, "livenessProbe") == ("/healthz", fusion.http_port)
    assert fusion.grpc_port in _grpc_probe_ports(container).values()
    _check_service_matches(name, {fusion.http_port, fusion.grpc_port})


def _configmap_files(pod: Doc, container: Doc) -> dict[str, tuple[str, str]]:
    """Files the container sees from ConfigMaps: mount path -> (ConfigMap name, key)."""
    config_maps = _objects("ConfigMap")
    volumes = {v["name"]: v["configMap"] for v in pod.get("volumes", []) if "configMap" in v}
    files = {}
    for mount in container.get("volumeMounts", []):
        source = volumes.get(mount["name"])
        if source is None:
            continue
        data = config_maps.get(source["name"], {}).get("data", {})
        paths = {i["path"]: i["key"] for i in source.get("items", [])} or {k: k for k in data}
        if mount.get("subPath"):
            if mount["subPath"] in paths:
                files[mount["mountPath"]] = (source["name"], paths[mount["subPath"]])
        else:
            files |= {
                f"{mount['mountPath'].rstrip('/')}/{p}": (source["name"], k)
                for p, k in paths.items()
            }
    return files


def test_fusion_mounts_the_topology_configmap() -> None:
    # Prepare
    deployment = _objects("Deployment")["fusion"]

    # Execute
    files = _configmap_files(deployment["spec"]["template"]["spec"], _main_container(deployment))

    # Assert
    assert files.get("/etc/copur/cluster.yaml") == ("copur-topology", "cluster.yaml")


def test_configmap_holds_the_topology_file_verbatim() -> None:
    # Prepare
    expected_text = TOPOLOGY_FILE.read_text()

    # Execute
    data = _objects("ConfigMap")["copur-topology"]["data"]

    # Assert
    assert set(data) == {"cluster.yaml"}
    assert yaml.safe_load(data["cluster.yaml"]) == yaml.safe_load(expected_text)
    assert data["cluster.yaml"] == expected_text, (
        "deploy/k8s/configmap.yaml is out of date with deploy/cluster.yaml"
    )


def test_fusion_resolves_every_party_to_a_service_port(tmp_path: Path) -> None:
    # Prepare: the topology the fusion pod reads (the ConfigMap) with the pod's environment
    config = tmp_path / "cluster.yaml"
    config.write_text(_objects("ConfigMap")["copur-topology"]["data"]["cluster.yaml"])
    container = _main_container(_objects("Deployment")["fusion"])
    env = {
        e["name"]: e["value"] for e in container["env"] if "value" in e
    }  # not the Secret-backed ones

    # Execute
    topology = load_topology(config, env=env)
    targets = [topology.fusion_target(p.index) for p in topology.parties]

    # Assert
    assert topology.bind_host == "0.0.0.0"
    services = _objects("Service")
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in services, f"the fusion dials {target}, but there is no Service {host}"
        assert int(port) in _service_ports(services[host]), f"Service {host} has no port {port}"


# --- mTLS
# ----------------------------------------------------------------------------------------------


def _secret_files(pod: Doc, container: Doc) -> dict[str, tuple[str, str]]:
    """Files the container sees from Secrets: mount path -> (Secret name, key); a Secret without
    items is reported as its mount directory -> (name, "*")."""
    volumes = {v["name"]: v["secret"] for v in pod.get("volumes", []) if "secret" in v}
    files = {}
    for mount in container.get("volumeMounts", []):
        source = volumes.get(mount["name"])
        if source is None:
            continue
        items = source.get("items") or [{"key": "*", "path": ""}]
        for item in items:
            files[f"{mount['mountPath'].rstrip('/')}/{item['path']}".rstrip("/")] = (
                source["secretName"],
                item["key"],
            )
    return files


@pytest.mark.parametrize("name", sorted(_objects("Deployment")))
def test_every_pod_mounts_only_the_ca_and_its_own_key_pair(name: str) -> None:
    # Prepare
    deployment = _objects("Deployment")[name]
    expected = {
        f"{CERTS}/{f}": (CERTS_SECRET, f) for f in ("ca.pem", f"{name}.pem", f"{name}-key.pem")
    }

    # Execute
    files = _secret_files(deployment["spec"]["template"]["spec"], _main_container(deployment))

    # Assert: the CA's key and other services' keys never reach the pod
    assert files == expected


@pytest.mark.parametrize("name", sorted(_objects("Deployment")))
def test_grpc_probes_present_the_pods_own_certificate(name: str) -> None:
    # Prepare: Kubernetes' native gRPC probes cannot present a client certificate, which mTLS
    # servers demand
    container = _main_container(_objects("Deployment")[name])

    # Execute
    probes = [
        container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in container
    ]
    native = [p for p in probes if "grpc" in p]
    execs = [p["exec"]["command"] for p in probes if _exec_probe_target(p) is not None]

    # Assert
    assert not native, f"{name}: a native gRPC probe fails the mTLS handshake"
    assert execs, f"{name}: no gRPC health probe"
    for command in execs:
        assert _flag(command, "--tls-dir") == CERTS
        assert _flag(command, "--tls-name") == name


@pytest.mark.parametrize("name", sorted(_objects("Deployment")))
def test_every_role_serves_mtls_from_the_mounted_certificates(name: str, tmp_path: Path) -> None:
    # Prepare
    container = _main_container(_objects("Deployment")[name])
    command = container["command"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}

    # Execute: parties and adversaries get flags; the fusion reads the topology (ConfigMap + its
    # env)
    if command[1] == "fusion":
        config = tmp_path / "cluster.yaml"
        config.write_text(_objects("ConfigMap")["copur-topology"]["data"]["cluster.yaml"])
        tls = load_topology(config, env=env).tls
        mode, directory = tls.mode, tls.dir
    else:
        mode = command[command.index("--tls-mode") + 1] if "--tls-mode" in command else "mtls"
        directory = _flag(command, "--tls-dir")

    # Assert
    assert (mode, directory) == ("mtls", CERTS)


def test_hpa_scales_the_fusion_deployment_on_cpu() -> None:
    # Prepare
    hpas = _objects("HorizontalPodAutoscaler")
    fusion = _objects("Deployment")[service_name("fusion")]

    # Execute
    (hpa,) = hpas.values()
    metrics = hpa["spec"]["metrics"]

    # Assert
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "fusion",
    }
    assert 1 <= hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"]
    assert any(
        m["type"] == "Resource"
        and m["resource"]["name"] == "cpu"
        and m["resource"]["target"]["type"] == "Utilization"
        for m in metrics
    )
    assert "cpu" in _main_container(fusion)["resources"]["requests"], (
        "CPU utilisation needs a CPU request"
    )
    assert "replicas" not in fusion["spec"], "the HPA owns the fusion's replica count"


# --- the next bundle of a rolling upgrade (deploy/k8s/rollout, outside the kustomization)
# ---------------

NEXT_BUNDLE_JOB = K8S / "rollout" / "next-bundle-job.yaml"
NEXT_BUNDLE = "/bundle/mfeat-next"


def _next_bundle_job() -> Doc:
    (job,) = [d for d in yaml.safe_load_all(NEXT_BUNDLE_JOB.read_text()) if d]
    loaded: Doc = job
    return loaded


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_next_bundle_job_is_valid_kubernetes(version: str) -> None:
    kubernetes_validate.validate(_next_bundle_job(), version, strict=True)


def test_the_next_bundle_job_writes_beside_the_served_bundle_on_the_same_volume() -> None:
    # Prepare
    job, trainer = _next_bundle_job(), _objects("Job")["trainer"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())

    # Execute
    pod, trainer_pod = job["spec"]["template"]["spec"], trainer["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"][-1]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/bundle")

    # Assert: its own name, the served bundle's volume and pod security, a new folder under /bundle
    assert job["kind"] == "Job" and job["metadata"]["name"] not in _objects("Job")
    assert not any("rollout" in str(r) for r in kustomization["resources"])
    assert pod["volumes"] == trainer_pod["volumes"]
    assert pod["securityContext"] == trainer_pod["securityContext"]
    assert container["image"] == IMAGE and not mount.get("readOnly", False)
    assert command.startswith(f"test -f {NEXT_BUNDLE}/calibration.json || copur train ")
    assert f"--out {NEXT_BUNDLE} " in command and "--split-seed 0" in command
    assert BUNDLE + " " not in command and not NEXT_BUNDLE.startswith(BUNDLE + "/")
