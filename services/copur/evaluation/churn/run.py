"""``copur bench churn --up``: start the local cluster of a topology (adversaries honest), run the
phases of :class:`~copur.evaluation.churn.phases.Churn` against it, check what the issue of
rolling upgrades and stalled parties asks, write the JSON report and, with ``markdown``, the table
into a document; stop the cluster."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from copur.errors import ConfigError
from copur.evaluation.bench.serve import bench_topology
from copur.evaluation.churn.models import ChurnReport, ChurnRow, ChurnSettings
from copur.evaluation.churn.phases import Churn
from copur.evaluation.churn.report import write_churn_table
from copur.operations.launcher import Cluster
from copur.operations.rollout import RolloutConfig
from copur.roles.fusion.worker import Worker
from copur.science.bundle import Bundle, load_bundle
from copur.science.data import load_dataset
from copur.transport.topology import load_topology, service_name
from copur_client import AdversaryControl

__all__ = ["churn_checks", "churn_command", "one_missing_accuracy"]

COMMAND = "make churn"
EJECTED_WITHIN_S = 10.0  # "after ejection (within a few seconds)"
READMITTED_WITHIN_S = 10.0  # "re-admitted within seconds"


def churn_checks(
    rows: dict[str, ChurnRow], *, one_missing: float, bundles: set[str]
) -> dict[str, bool]:
    """What must hold, by name: ejection within seconds, then throughput >= 80% of healthy and p99
    within 2x of healthy (the better of the two healthy rows, first and last), the party missing,
    re-admission within seconds (frozen and slow); the foreign bundle's blocks missing with
    reason ``version`` and never flagged; rollout and rollback with zero errors, zero mixed
    answers, every answer naming one of the two bundles and every full pass over the samples at
    least as accurate as with one party missing."""
    # The reference: the better of the healthy runs (first and last), so that a slow start never
    # flatters a fault.
    healthy = [rows[n] for n in ("healthy", "healthy-again") if n in rows]
    best_rate = max(r.predictions_per_s for r in healthy)
    best_p99 = min(r.p99_ms for r in healthy)
    checks: dict[str, bool] = {}
    for name in ("frozen", "slow"):
        r = rows.get(name)
        if r is None:
            continue
        checks[f"{name}: ejected within {EJECTED_WITHIN_S:.0f} s"] = (
            r.react_s is not None and r.react_s <= EJECTED_WITHIN_S
        )
        checks[f"{name}: throughput >= 80% of healthy"] = r.predictions_per_s >= 0.8 * best_rate
        checks[f"{name}: p99 <= 2x healthy"] = r.p99_ms <= 2.0 * best_p99
        checks[f"{name}: reported missing (ejected)"] = r.missing.get("ejected", 0) > 0
        checks[f"{name}: no errors"] = r.errors == 0
        checks[f"{name}: re-admitted within {READMITTED_WITHIN_S:.0f} s"] = (
            r.recovery_s is not None and r.recovery_s <= READMITTED_WITHIN_S
        )
    foreign = rows["foreign-bundle"]
    checks["foreign-bundle: missing with reason version"] = foreign.missing.get("version", 0) > 0
    checks["foreign-bundle: never flagged"] = foreign.flagged_party == 0
    checks["foreign-bundle: no errors"] = foreign.errors == 0
    for name in ("rollout", "rollback"):
        r = rows[name]
        checks[f"{name}: zero errors"] = r.errors == 0 and r.requests > 0
        checks[f"{name}: zero mixed-version answers"] = r.mixed == 0
        checks[f"{name}: every answer names its bundle"] = (
            bool(r.bundles) and set(r.bundles) <= bundles
        )
        checks[f"{name}: accuracy never below one-party-missing"] = (
            r.min_pass_accuracy is not None and r.min_pass_accuracy >= one_missing
        )
    return checks


def churn_command(
    *,
    config: Path,
    next_bundle: Path,
    json_path: Path,
    markdown: Path | None,
    settings: ChurnSettings,
    log_dir: Path | None = None,
    start_timeout: float = 240.0,
    echo: Callable[[str], None] = print,
) -> int:
    """Run every phase on a cluster started from ``config``; 0 when every check holds, 1 when one
    fails (the report says which), 2 for a bad setting."""
    with tempfile.TemporaryDirectory(prefix="copur-churn-") as tmp:
        path = bench_topology(config, True, Path(tmp))
        topology = load_topology(path)
        if not 0 <= settings.party < topology.num_parties:
            raise ConfigError(
                f"--party {settings.party}: the topology has parties 0..{topology.num_parties - 1}"
            )
        active_path, next_path = str(Path(topology.bundle).resolve()), str(next_bundle.resolve())
        echo(f"reading the bundles {active_path} and {next_path}")
        a, b = load_bundle(active_path), load_bundle(next_path)
        ids = {a.manifest.bundle_id: active_path, b.manifest.bundle_id: next_path}
        if len(ids) != 2:
            raise ConfigError(f"--next-bundle {next_bundle} is the topology's own bundle")
        eval_ids = sorted(set(a.test_ids.tolist()) & set(b.test_ids.tolist()))
        labels = load_dataset(a.manifest.dataset_spec).labels
        truth = {int(i): int(labels[i]) for i in eval_ids}
        floors = [
            one_missing_accuracy(x, eval_ids, truth, defense=settings.defense) for x in (a, b)
        ]
        echo(f"accuracy with any one party missing, at worst: {min(floors):.4f}")
        logs = log_dir or Path(tmp) / "logs"
        cluster = Cluster(topology, config_path=path, log_dir=logs)
        echo(f"starting the cluster of {config} (logs in {logs}/)")
        cluster.start(start_timeout)
        try:
            report = _run(
                cluster,
                settings,
                (a.manifest.bundle_id, active_path),
                (b.manifest.bundle_id, next_path),
                eval_ids,
                truth,
                echo,
                floors,
            )
        finally:
            cluster.stop()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(report.model_dump_json(indent=2) + "\n")
    echo(f"wrote {json_path}")
    if markdown is not None:
        write_churn_table(markdown, report)
        echo(f"churn table written into {markdown}")
    failed = [name for name, ok in report.checks.items() if not ok]
    for name, ok in report.checks.items():
        echo(f"  {'ok  ' if ok else 'FAIL'} {name}")
    return 1 if failed else 0


def one_missing_accuracy(
    bundle: Bundle, eval_ids: list[int], truth: dict[int, int], *, defense: str
) -> float:
    """The lowest accuracy of ``bundle`` with ``defense`` on ``eval_ids`` when any one party's
    block is missing (offline, on this process's CPU): the floor an upgrade must stay above."""
    data = load_dataset(bundle.manifest.dataset_spec)
    ids = np.asarray(eval_ids)
    labels = np.asarray([truth[i] for i in eval_ids])
    with torch.no_grad():
        h = bundle.models.embed([torch.as_tensor(x) for x in data.party_rows(ids)]).numpy()
    m, e = bundle.manifest.num_parties, int(bundle.manifest.model["emb_dim"])
    worker = Worker(bundle, device=torch.device("cpu"))
    try:
        accuracies = []
        for party in range(m):
            observed = np.ones((len(ids), m), dtype=bool)
            observed[:, party] = False
            blocks = h.copy()
            blocks[:, party * e : (party + 1) * e] = 0.0
            out = worker.run_sync(blocks, observed, defense, False)
            accuracies.append(float((out.labels == labels).mean()))
    finally:
        worker.close()
    return min(accuracies)


def _run(
    cluster: Cluster,
    settings: ChurnSettings,
    active: tuple[str, str],
    other: tuple[str, str],
    eval_ids: list[int],
    truth: dict[int, int],
    echo: Callable[[str], None],
    floors: list[float],
) -> ChurnReport:
    topology = cluster.topology
    party = settings.party
    admin_key = cluster.dev_key("admin")
    control = (
        AdversaryControl(cluster.control_url(party), api_key=admin_key, ca_file=cluster.http_ca)
        if topology.adversary_for(party) is not None
        else None
    )

    def pid_of(index: int) -> int:
        popen = cluster.procs[service_name("party", index)].popen
        assert popen is not None
        return popen.pid

    churn = Churn(
        url=cluster.fusion_url,
        ca_file=cluster.http_ca,
        predict_key=cluster.dev_key("predict"),
        admin_key=admin_key,
        settings=settings,
        pid_of=pid_of,
        control=control,
        eval_ids=eval_ids,
        truth=truth,
        say=echo,
    )
    walk = RolloutConfig(quorum=0, wait_s=30.0)
    try:
        rows = [churn.healthy_phase(), churn.frozen_phase()]
        slow = churn.slow_phase()
        rows += [slow] if slow is not None else []
        rows.append(churn.foreign_phase(active=active, other=other))
        refs = {active[0]: churn.reference()}
        rows.append(churn.rollout_phase(other[1], refs, walk))
        refs[other[0]] = churn.reference()
        rows.append(churn.rollback_phase(refs, walk))
        rows.append(churn.healthy_phase("healthy-again"))
    finally:
        churn.close()
    one_missing = min(floors)
    by_name = {r.name: r for r in rows}
    return ChurnReport(
        command=COMMAND,
        party=party,
        active_bundle=active[0],
        next_bundle=other[0],
        eval_samples=len(eval_ids),
        deadline_ms=topology.fusion.deadline_ms,
        eject_after=topology.fusion.eject_after,
        one_missing_accuracy=round(one_missing, 4),
        rows=rows,
        checks=churn_checks(by_name, one_missing=one_missing, bundles={active[0], other[0]}),
    )
