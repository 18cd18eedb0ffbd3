"""Running a scenario file: ``copur scenario run`` (:func:`scenario_command`) starts the local
cluster when asked, :func:`execute_scenario` runs the steps (:mod:`.steps`) and assembles the typed
report (:class:`.model.ScenarioReport`), which :mod:`.report` writes as ``report.json``,
``report.md`` and ``index.html``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from copur.errors import CopurError
from copur.evaluation.scenarios.metrics import predict_metrics, sample_ids
from copur.evaluation.scenarios.model import (
    BundleInfo,
    ExpectRecord,
    ScenarioInfo,
    ScenarioReport,
    StepResult,
)
from copur.evaluation.scenarios.report import write_report
from copur.evaluation.scenarios.schema import CLUSTER_KINDS, Scenario, ScenarioError, load_scenario
from copur.evaluation.scenarios.steps import StepRunner
from copur.operations.launcher import Cluster
from copur.transport.tls.credentials import http_ca
from copur.transport.topology import load_topology

__all__ = [
    "DEFAULT_CONFIG",
    "execute_scenario",
    "predict_metrics",
    "sample_ids",
    "scenario_command",
]

DEFAULT_CONFIG = Path("deploy/cluster-scenarios.yaml")
"""The topology of the local scenario cluster: an adversary in front of every party."""


def execute_scenario(
    scenario: Scenario,
    *,
    url: str,
    control_urls: dict[int, str],
    bundle: str,
    cluster: Cluster | None,
    out: Path,
    progress: bool,
    api_key: str | None = None,
    admin_key: str | None = None,
    ca_file: Path | None = None,
) -> ScenarioReport:
    """Run ``scenario`` against the fusion center at ``url`` and the adversaries at ``control_urls``
    (party index -> control URL); ``cluster`` (the local one) is needed for stop/start/slow steps.
    Writes ``out``/report.json, report.md and index.html and returns the report; ``passed`` is False
    when an expectation failed. Invalid steps for this bundle/cluster raise :class:`ScenarioError`
    before any step runs; a paused party is always resumed. Predictions carry ``api_key``, policy
    changes ``admin_key``; when None: the development keys of ``cluster`` (``copur keys init``),
    else ``$COPUR_API_KEY`` / ``$COPUR_ADMIN_KEY``. ``ca_file`` verifies ``https://`` URLs."""
    if cluster is not None:
        api_key = api_key or cluster.dev_key("predict")
        admin_key = admin_key or cluster.dev_key("admin")
    runner = StepRunner(
        scenario,
        url=url,
        control_urls=control_urls,
        bundle=bundle,
        cluster=cluster,
        api_key=api_key,
        admin_key=admin_key,
        ca_file=ca_file,
    )
    started = time.time()
    records: list[StepResult] = []
    steps = tqdm(
        scenario.steps,
        desc=scenario.name,
        unit="step",
        disable=not progress,
        file=sys.stderr,
    )
    try:
        for step in steps:
            records.append(runner.run_step(step))
    finally:
        runner.finish()
    report = _assemble(scenario, runner, url=url, started=started, records=records)
    write_report(report, out)
    return report


def _assemble(
    scenario: Scenario, runner: StepRunner, *, url: str, started: float, records: list[StepResult]
) -> ScenarioReport:
    expectations = [r for r in records if isinstance(r, ExpectRecord)]
    return ScenarioReport(
        scenario=ScenarioInfo(
            name=scenario.name,
            description=scenario.description,
            samples=scenario.samples,
            seed=scenario.seed,
            defenses=scenario.defenses,
            requires_dataset=scenario.requires_dataset,
        ),
        bundle=BundleInfo(
            path=runner.bundle_path,
            dataset=runner.manifest.dataset_spec.name,
            num_parties=runner.num_parties,
            party_names=list(runner.manifest.party_names),
        ),
        url=url,
        started=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        seconds=round(time.time() - started, 3),
        ids=runner.ids,
        steps=records,
        expectations=expectations,
        passed=all(e.passed for e in expectations),
    )


def scenario_command(
    file: Path,
    *,
    url: str | None,
    up: bool,
    config: Path,
    bundle: str | None,
    out: Path,
    progress: bool,
    api_key: str | None = None,
    admin_key: str | None = None,
    ca_file: Path | None = None,
) -> int:
    """``copur scenario FILE``: 0 when every expectation holds, 1 when one failed, 2 (one line on
    stderr) for invalid input. With ``up`` the local cluster of ``config`` is started here and
    always stopped; without it the fusion center at ``url`` (default: the topology's, on 127.0.0.1)
    and the adversaries of the topology ``config`` on 127.0.0.1 are used. ``bundle`` defaults to the
    topology's. Keys: see :func:`execute_scenario` (with ``up``, the started cluster's development
    keys when none is given). ``https://`` front doors are verified with ``ca_file``, by default
    the topology's CA (``ca.pem`` of its ``tls.dir``)."""
    cluster: Cluster | None = None
    try:
        scenario = load_scenario(file)
        env = {"COPUR_BUNDLE": bundle} if bundle else {}
        topology = load_topology(config, env={**os.environ, **env})
        bundle_path = topology.bundle
        if not Path(bundle_path).is_dir():
            raise ScenarioError(f"bundle {bundle_path} does not exist (train it, or pass --bundle)")
        scheme = topology.http_scheme
        control_urls = {
            a.party: f"{scheme}://127.0.0.1:{a.control_port}" for a in topology.adversaries
        }
        if up:
            logs = Path(out) / "logs"
            cluster = Cluster(topology, config_path=config, log_dir=logs, env=env)
            if progress:
                print(f"starting the cluster of {config} (logs in {logs})", file=sys.stderr)
            cluster.start()
            fusion = cluster.fusion_url
        else:
            if scenario.needs_cluster:
                bad = next(s for s in scenario.steps if s.kind in CLUSTER_KINDS)
                raise ScenarioError(
                    f"{file.name}: step {bad.index} ({bad.kind}): needs the local cluster (--up)"
                )
            fusion = url or f"{scheme}://127.0.0.1:{topology.fusion.http_port}"
        report = execute_scenario(
            scenario,
            url=fusion,
            control_urls=control_urls,
            bundle=bundle_path,
            cluster=cluster,
            out=Path(out),
            progress=progress,
            api_key=api_key,
            admin_key=admin_key,
            ca_file=ca_file or http_ca(topology),
        )
    except ScenarioError as exc:
        msg = str(exc)
        prefix = f"{file.name}: "
        print(f"error: {msg if msg.startswith(prefix) else prefix + msg}", file=sys.stderr)
        return 2
    except CopurError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if cluster is not None:
            cluster.stop()
    for e in report.failed:
        print(f"FAILED {e.description} (actual: {e.actual})", file=sys.stderr)
    print(f"report: {Path(out) / 'index.html'}", file=sys.stderr)
    return 1 if report.failed else 0
