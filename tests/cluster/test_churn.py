"""What the issue of stalled parties and rolling upgrades asks, measured on a real local cluster
(every party behind an honest adversary slot) by ``copur bench churn``'s own phases, shortened:
a frozen party (SIGSTOP) and a party slower than the deadline are ejected within seconds, then
cost neither throughput (>= 80% of healthy) nor latency (p99 <= 2x healthy) and are re-admitted
within seconds; a party on a foreign bundle is missing with reason ``version`` and never flagged;
a rollout and a rollback under 16 clients have zero errors and zero answers that mix bundles."""

from __future__ import annotations

from pathlib import Path

from clusterkit import SCENARIOS, write_topology
from copur.evaluation.churn.models import ChurnReport, ChurnSettings
from copur.evaluation.churn.report import BEGIN, END
from copur.evaluation.churn.run import churn_command
from copur.science.bundle import read_manifest


def test_stalled_parties_a_foreign_bundle_and_a_rollout_under_load(
    tmp_path: Path, mfeat_bundle_dir: Path, mfeat_next_bundle_dir: Path
) -> None:
    # Prepare: the scenarios topology on free loopback ports, a document with the table's markers
    config = write_topology(tmp_path / "topology", mfeat_bundle_dir, base=SCENARIOS)
    doc = tmp_path / "OPERATIONS.md"
    doc.write_text(f"# ops\n\n{BEGIN}\n{END}\n\nafter\n")
    lines: list[str] = []

    # Execute
    code = churn_command(
        config=config,
        next_bundle=mfeat_next_bundle_dir,
        json_path=tmp_path / "churn.json",
        markdown=doc,
        settings=ChurnSettings(phase_s=3.0),
        log_dir=tmp_path / "logs",
        echo=lines.append,
    )

    # Assert: every check holds, and every kind of check was made
    report = ChurnReport.model_validate_json((tmp_path / "churn.json").read_text())
    failed = [name for name, ok in report.checks.items() if not ok]
    assert code == 0 and not failed, (failed, lines[-30:])
    groups = {name.split(":")[0] for name in report.checks}
    assert groups == {"frozen", "slow", "foreign-bundle", "rollout", "rollback"}
    rows = {r.name: r for r in report.rows}
    assert list(rows) == [
        "healthy",
        "frozen",
        "slow",
        "foreign-bundle",
        "rollout",
        "rollback",
        "healthy-again",
    ]
    active = read_manifest(mfeat_bundle_dir).bundle_id
    upcoming = read_manifest(mfeat_next_bundle_dir).bundle_id
    assert (report.active_bundle, report.next_bundle) == (active, upcoming)
    # the stalled party: out of the path, every answer missing it as ejected, nobody else
    for name in ("frozen", "slow"):
        row = rows[name]
        assert row.missing == {"ejected": row.requests} and row.errors == 0
        assert row.bundles == [active]
    # the foreign party: every answer missing it as version, never flagged
    foreign = rows["foreign-bundle"]
    assert foreign.missing == {"version": foreign.requests} and foreign.flagged_party == 0
    # the walks: answers from both bundles, none missing a party, none mixed
    for name in ("rollout", "rollback"):
        row = rows[name]
        assert row.bundles == sorted([active, upcoming]) and row.missing == {}
        assert row.mixed == 0 and row.errors == 0
    # the table, between its markers, the rest of the document kept
    text = doc.read_text()
    assert text.startswith("# ops\n") and text.endswith(f"{END}\n\nafter\n")
    for name in rows:
        assert f"| {name} |" in text
