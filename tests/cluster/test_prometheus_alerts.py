"""The shipped alert rules on a live cluster: a real local cluster (deploy/cluster.yaml: six
parties, an adversary in front of party 1, free loopback ports), a real ``prometheus`` process
(Debian's package; its own storage, scrape and evaluation every second, deploy/prometheus/rules.yml
loaded unchanged) scraping the fusion center over the scheme the cluster serves (HTTPS with the
cluster CA here), and steady prediction traffic. The adversary is switched to ``flip`` x10:
CopurPartyFlagRateHigh fires for party 1 once its ``for`` has passed, and never fires, nor is
pending, for any honest party; no other copur alert shows.

About ``for`` + 20 s after the cluster is up (2 cores: about 2 minutes in all)."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from clusterkit import START_TIMEOUT_S, free_ports, wait_for, write_topology
from copur.operations.launcher import Cluster
from copur.transport.topology import load_topology
from copur_client import AdversaryControl, CopurClientError, FusionClient
from promkit import RULES_FILE, alert_rules

ALERT = "CopurPartyFlagRateHigh"
LIAR = 1  # the party behind the adversary of deploy/cluster.yaml
JOB = "copur-fusion"
FOR_S = float(re.fullmatch(r"(\d+)m", alert_rules()[ALERT]["for"]).group(1)) * 60  # type: ignore[union-attr]
FIRE_MARGIN_S = 45.0  # the flag ratio crossing the threshold, rule evaluation, a busy machine


@dataclass
class Prometheus:
    """A ``prometheus`` process on loopback with its own storage (stopped by :meth:`stop`)."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def get(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()["data"]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts now active (pending or firing)."""
        alerts: list[dict[str, Any]] = self.get("/api/v1/alerts")["alerts"]
        return alerts

    def value(self, query: str) -> float | None:
        """An instant query's single value (None when the result is empty)."""
        result = self.get("/api/v1/query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start_prometheus(folder: Path, cluster: Cluster) -> Prometheus:
    """Prometheus scraping ``cluster``'s fusion center every second (HTTPS with the cluster CA
    when the cluster serves HTTPS) and evaluating the shipped rules every second."""
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is not on PATH: `make test-packages` installs it"
    url = httpx.URL(cluster.fusion_url)
    job: dict[str, Any] = {
        "job_name": JOB,
        "scheme": url.scheme,
        "static_configs": [{"targets": [f"{url.host}:{url.port}"]}],
    }
    if cluster.http_ca is not None:
        job["tls_config"] = {"ca_file": str(Path(cluster.http_ca).resolve())}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [job],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (port,) = free_ports(1)
    log = folder / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Prometheus(process=process, url=f"http://127.0.0.1:{port}", log=log)


@dataclass
class Traffic:
    """One caller predicting five ids at a time, back to back, until stopped."""

    cluster: Cluster
    answered: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self.thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        client = FusionClient(
            self.cluster.fusion_url, timeout=60, retries=0, ca_file=self.cluster.http_ca
        )
        with client:
            i = 0
            while not self.stop.is_set():
                try:
                    client.predict([(i * 5 + j) % 2000 for j in range(5)])
                    self.answered += 1
                except CopurClientError as exc:
                    self.errors.append(str(exc))
                i += 1

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(60)


@pytest.fixture
def cluster(mfeat_bundle_dir: Path, cluster_tls: Path, tmp_path: Path) -> Iterator[Cluster]:
    """deploy/cluster.yaml on free loopback ports (plaintext gRPC, no API keys: clusterkit), its
    HTTP front doors serving HTTPS with the session's certificates."""
    path = write_topology(tmp_path / "cluster", mfeat_bundle_dir, fusion={"max_delay_ms": 2})
    raw = yaml.safe_load(path.read_text())
    raw["tls"] = {"mode": "plaintext", "http": "https", "dir": str(cluster_tls)}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    running = Cluster(load_topology(path, env={}), config_path=path, log_dir=tmp_path / "logs")
    running.start(timeout=START_TIMEOUT_S)
    try:
        yield running
    finally:
        running.stop()


def _flag_alerts(alerts: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (a["labels"]["alertname"], a["labels"].get("party", ""), a["state"])
        for a in alerts
        if a["labels"]["alertname"].startswith("Copur")
    ]


def test_a_flipping_party_fires_the_flag_rate_alert_and_no_honest_party_does(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Prepare: Prometheus on the shipped rules, traffic flowing and scraped
    prometheus = start_prometheus(tmp_path / "prometheus", cluster)
    traffic = Traffic(cluster).start()
    control = AdversaryControl(cluster.control_url(LIAR), ca_file=cluster.http_ca)
    seen: set[tuple[str, str, str]] = set()
    try:
        wait_for("prometheus ready", prometheus.ready, 60, 0.5)
        wait_for(
            "the fusion center scraped, samples flowing (>= 1/s)",
            lambda: (prometheus.value(f"job:copur_batch_samples:rate2m{{job='{JOB}'}}") or 0) >= 1,
            60,
            0.5,
        )
        time.sleep(5.0)  # a few honest evaluations: nothing pending
        seen |= set(_flag_alerts(prometheus.alerts()))
        # Execute: party 1 flips its embeddings x10 from now on
        control.set_policy("flip", amp=10)

        def fired() -> bool:
            seen.update(_flag_alerts(prometheus.alerts()))
            return (ALERT, str(LIAR), "firing") in seen

        fire_s = wait_for(f"{ALERT} firing for party {LIAR}", fired, FOR_S + FIRE_MARGIN_S, 1.0)
        liar_rate = prometheus.value(f"job_party:copur_party_flags:ratio_rate2m{{party='{LIAR}'}}")
        honest_rates = [
            prometheus.value(f"job_party:copur_party_flags:ratio_rate2m{{party='{p}'}}")
            for p in range(len(cluster.topology.parties))
            if p != LIAR
        ]
        control.set_policy("none")
    finally:
        traffic.finish()
        control.close()
        prometheus.stop()
    print(
        f"fired after {fire_s:.0f} s; flag rate of party {LIAR} {liar_rate}, others {honest_rates}"
    )
    # Assert: fired for the liar after its `for`, never pending nor firing for anyone else
    assert fire_s >= FOR_S - 1.0, fire_s  # pending first, for the whole `for`
    assert {(name, party) for name, party, _ in seen} == {(ALERT, str(LIAR))}, sorted(seen)
    assert liar_rate is not None and liar_rate > 0.5, liar_rate
    assert all(r is not None and r < 0.05 for r in honest_rates), honest_rates
    assert traffic.errors == [] and traffic.answered > 100, (traffic.answered, traffic.errors[:3])
