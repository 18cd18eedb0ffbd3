"""deploy/grafana: every query of the dashboard parses as PromQL (the real ``promtool``) and reads
only series the fusion center exports or the recording rules of deploy/prometheus write; the
dashboard shows what an operator needs; docker compose and the Kubernetes manifests provision the
dashboard, the data source and the Prometheus rules from files that exist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from promkit import (
    BUILTIN_SERIES,
    DASHBOARD,
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    REPO,
    RULES_FILE,
    dashboard_exprs,
    exported_series,
    metric_names,
    promtool,
    recorded_names,
    write_recording_rules,
)

DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "copur.yml"
MONITORING_K8S = REPO / "deploy" / "k8s" / "monitoring"
# What the dashboard must show (the series or recording rules behind each).
NEEDED = {
    "flag rate per party": "job_party:copur_party_flags:ratio_rate2m",
    "missing rate per party": "job_party:copur_party_missing_samples:ratio_rate2m",
    "parties up": "copur_parties_up",
    "min_parties": "copur_min_parties",
    "request rate": "job_transport:copur_requests:rate2m",
    "error rate": "job:copur_requests_errors:ratio_rate2m",
    "p50 latency": "job_transport:copur_request_latency_seconds:p50_rate5m",
    "p99 latency": "job_transport:copur_request_latency_seconds:p99_rate5m",
    "batch size": "job:copur_batch_samples:mean_rate5m",
    "Embed latency per party": "job_party:copur_party_latency_seconds:p99_rate5m",
    "missing samples by reason": "job_party_reason:copur_party_missing_samples:rate2m",
    "ejected parties": "copur_party_ejected",
    "ejections": "copur_party_ejections_total",
    "active bundle": "copur_bundle_active",
    "bundle switches": "copur_bundle_switches_total",
}

Doc = dict[str, Any]


def _dashboard() -> Doc:
    loaded: Doc = json.loads(DASHBOARD.read_text())
    return loaded


def _datasource() -> Doc:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return dict(source)


def _provider() -> Doc:
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    return dict(provider)


# --- the queries
# ---------------------------------------------------------------------------------------


def test_every_panel_query_parses_as_promql(tmp_path: Path) -> None:
    # Prepare
    exprs = [expr for _, expr in dashboard_exprs()]
    rules = write_recording_rules(exprs, tmp_path / "dashboard.yml")

    # Execute
    run = promtool("check", "rules", str(rules))

    # Assert
    assert len(exprs) >= len(NEEDED)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in run.stdout


def test_the_parse_check_rejects_a_broken_query(tmp_path: Path) -> None:
    # Prepare: the dashboard's first query with a parenthesis missing
    broken = dashboard_exprs()[0][1].replace("ratio_rate2m", "ratio_rate2m)", 1)
    rules = write_recording_rules([broken], tmp_path / "broken.yml")

    # Execute
    run = promtool("check", "rules", str(rules))

    # Assert
    assert run.returncode != 0


def test_every_panel_query_reads_exported_series_or_recorded_rules_only() -> None:
    # Prepare
    known = exported_series() | recorded_names() | BUILTIN_SERIES

    # Execute
    unknown = [
        (title, sorted(metric_names(expr) - known))
        for title, expr in dashboard_exprs()
        if metric_names(expr) - known
    ]

    # Assert
    assert unknown == []


def test_the_name_check_catches_a_misspelt_series() -> None:
    # Prepare
    known = exported_series() | recorded_names() | BUILTIN_SERIES

    # Execute
    names = metric_names('sum by (party) (rate(copur_party_flag_total{party="1"}[2m]))')

    # Assert: copur_party_flags_total is exported, copur_party_flag_total is not
    assert names == {"copur_party_flag_total"}
    assert names - known == {"copur_party_flag_total"}


def test_the_dashboard_shows_what_an_operator_needs() -> None:
    # Execute
    used = set().union(*(metric_names(expr) for _, expr in dashboard_exprs()))

    # Assert
    missing = {what: series for what, series in NEEDED.items() if series not in used}
    assert missing == {}


def test_every_panel_queries_the_provisioned_datasource() -> None:
    # Prepare
    dashboard, source = _dashboard(), _datasource()

    # Execute
    panels = dashboard["panels"]
    refs = [p["datasource"] for p in panels] + [
        t["datasource"] for p in panels for t in p["targets"]
    ]

    # Assert
    assert dashboard["uid"] and dashboard["title"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["targets"] for p in panels)
    assert source["type"] == "prometheus"
    assert all(r == {"type": "prometheus", "uid": source["uid"]} for r in refs), refs


# --- provisioning: docker compose
# ----------------------------------------------------------------------


def _compose() -> dict[str, Doc]:
    services: dict[str, Doc] = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    return services


def _bind_mounts(service: Doc) -> dict[str, Path]:
    """Container path -> host path, for the service's bind mounts (``./...`` sources)."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("."):
            out[target] = (REPO / source).resolve()
    return out


def _host_path(mounts: dict[str, Path], container_path: str) -> Path:
    """Where ``container_path`` lies on the host, through the mount that holds it."""
    for target, source in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / Path(container_path).relative_to(target)
    raise AssertionError(f"{container_path} is not under any bind mount: {mounts}")


def test_compose_prometheus_loads_the_shipped_config_and_rules() -> None:
    # Prepare
    service = _compose()["prometheus"]
    mounts = _bind_mounts(service)

    # Execute
    flag = next(a for a in service["command"] if a.startswith("--config.file="))
    config = _host_path(mounts, flag.split("=", 1)[1])
    rule_files = [config.parent / f for f in yaml.safe_load(config.read_text())["rule_files"]]

    # Assert
    assert config == PROMETHEUS_DIR / "prometheus.yml"
    assert [f.resolve() for f in rule_files] == [RULES_FILE]
    assert "certs:/certs:ro" in service["volumes"], "the cluster CA (ca.pem of the certs volume)"


def test_compose_grafana_provisions_the_datasource_and_the_dashboard() -> None:
    # Prepare
    services = _compose()
    grafana = services["grafana"]
    mounts = _bind_mounts(grafana)

    # Execute
    datasources = _host_path(mounts, "/etc/grafana/provisioning/datasources") / DATASOURCES.name
    providers = _host_path(mounts, "/etc/grafana/provisioning/dashboards") / PROVIDERS.name
    dashboards = _host_path(mounts, _provider()["options"]["path"])
    url = urlparse(_datasource()["url"])

    # Assert
    assert datasources == DATASOURCES and datasources.is_file()
    assert providers == PROVIDERS and providers.is_file()
    assert dashboards / DASHBOARD.name == DASHBOARD and DASHBOARD.is_file()
    assert url.hostname in services, f"the data source points at {url.hostname}: no such service"
    assert f"--web.listen-address=:{url.port}" in services[url.hostname]["command"]


# --- provisioning: Kubernetes
# --------------------------------------------------------------------------


def _k8s_objects(kind: str) -> dict[str, Doc]:
    docs = [
        d
        for path in sorted(MONITORING_K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for d in yaml.safe_load_all(path.read_text())
        if d
    ]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _pod_files(deployment: Doc) -> dict[str, tuple[str, str]]:
    """Files the pod's container sees from ConfigMaps: path -> (ConfigMap, key)."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config_maps = _k8s_objects("ConfigMap")
    volumes = {v["name"]: v["configMap"] for v in pod["volumes"] if "configMap" in v}
    files = {}
    for mount in container["volumeMounts"]:
        source = volumes.get(mount["name"])
        if source is None:
            continue
        data = config_maps[source["name"]]["data"]
        items = {i["path"]: i["key"] for i in source.get("items", [])} or {k: k for k in data}
        for path, key in items.items():
            assert key in data, f"ConfigMap {source['name']} has no key {key}"
            files[f"{mount['mountPath'].rstrip('/')}/{path}"] = (source["name"], key)
    return files


def _file_text(files: dict[str, tuple[str, str]], path: str) -> str:
    assert path in files, f"{path} is not mounted: {sorted(files)}"
    name, key = files[path]
    text: str = _k8s_objects("ConfigMap")[name]["data"][key]
    return text


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("/etc/prometheus/prometheus.yml", PROMETHEUS_DIR / "prometheus-k8s.yml"),
        ("/etc/prometheus/rules.yml", RULES_FILE),
    ],
)
def test_k8s_prometheus_mounts_the_shipped_config_and_rules_verbatim(
    path: str, source: Path
) -> None:
    # Prepare
    deployment = _k8s_objects("Deployment")["prometheus"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]

    # Execute
    files = _pod_files(deployment)

    # Assert
    assert "--config.file=/etc/prometheus/prometheus.yml" in container["args"]
    assert _file_text(files, path) == source.read_text(), (
        f"deploy/k8s/monitoring is stale: run `python tools/k8s_monitoring.py` ({source.name})"
    )


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("/etc/grafana/provisioning/datasources/prometheus.yml", DATASOURCES),
        ("/etc/grafana/provisioning/dashboards/copur.yml", PROVIDERS),
        (f"{_provider()['options']['path']}/copur.json", DASHBOARD),
    ],
)
def test_k8s_grafana_mounts_the_provisioning_and_the_dashboard_verbatim(
    path: str, source: Path
) -> None:
    # Execute
    files = _pod_files(_k8s_objects("Deployment")["grafana"])

    # Assert
    assert source.is_file()
    assert _file_text(files, path) == source.read_text(), (
        f"deploy/k8s/monitoring is stale: run `python tools/k8s_monitoring.py` ({source.name})"
    )


def test_k8s_datasource_points_at_the_prometheus_service() -> None:
    # Prepare
    url = urlparse(_datasource()["url"])

    # Execute
    service = _k8s_objects("Service").get(str(url.hostname))

    # Assert
    assert service is not None, f"no Service {url.hostname}"
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
