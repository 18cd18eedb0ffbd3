"""The churn table: one Markdown row per phase of ``copur bench churn``, and the checks, written
into a document between ``<!-- churn-table:begin -->`` and ``<!-- churn-table:end -->`` (the rest
of the file is kept)."""

from __future__ import annotations

from pathlib import Path

from copur.errors import CopurError
from copur.evaluation.churn.models import ChurnReport

__all__ = ["BEGIN", "END", "churn_table", "write_churn_table"]

BEGIN = "<!-- churn-table:begin -->"
END = "<!-- churn-table:end -->"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def churn_table(report: ChurnReport) -> str:
    """The Markdown table of ``report``, with how it was measured and its checks."""
    head = (
        "| phase | done | clients | requests | errors | pred/s | p50 ms | p99 ms "
        "| answers missing a party (reason) | answers flagging it | reacted s "
        "| slowest while reacting ms | recovered s | bundles named | mixed answers |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|\n"
    )
    rows = []
    for r in report.rows:
        missing = ", ".join(f"{v} {k}" for k, v in sorted(r.missing.items())) or "-"
        mixed = "-" if r.mixed is None else str(r.mixed)
        rows.append(
            f"| {r.name} | {r.action} | {r.concurrency} | {r.requests} | {r.errors} "
            f"| {r.predictions_per_s:.0f} | {r.p50_ms:.0f} | {r.p99_ms:.0f} | {missing} "
            f"| {r.flagged_party} | {_s(r.react_s)} | {_fmt_ms(r.react_max_ms)} "
            f"| {_s(r.recovery_s)} "
            f"| {', '.join(r.bundles) or '-'} | {mixed} |"
        )
    note = (
        f"Measured by `{report.command}` on the local cluster of `deploy/cluster-scenarios.yaml` "
        f"(HTTPS, mTLS, every party behind an honest adversary slot): HTTP clients asking for one "
        f"of {report.eval_samples} test samples at a time with defense copur; party "
        f"{report.party} is the one frozen, slowed and put on a foreign bundle. Deadline "
        f"{report.deadline_ms:.0f} ms, ejection after {report.eject_after} misses in a row. The "
        "healthy load is measured first and again last; the checks compare with the better of "
        "the two. The fault rows are measured once the party is ejected (or shows `version`), "
        "for the time it was held; *reacted*: injection to ejection (rollout and rollback: the "
        "whole walk), and the slowest request started meanwhile (what a stall costs until the "
        "ejection); "
        "*recovered*: undo until the party is `up` and an answer misses no party. An answer is "
        "*mixed* unless it equals the answer of the bundle it names (same label and flagged "
        "parties, probabilities within 1e-3, no party missing). With any one party missing, either "
        f"bundle's accuracy on these samples is at least {report.one_missing_accuracy:.4f} "
        "(computed offline); the lowest accuracy of a full pass over the samples during the "
        "rollout and the rollback: "
        + ", ".join(
            f"{r.name} {r.min_pass_accuracy:.4f}"
            for r in report.rows
            if r.min_pass_accuracy is not None
        )
        + "."
    )
    checks = "\n".join(f"- {'✅' if ok else '❌'} {name}" for name, ok in report.checks.items())
    return f"{note}\n\n{head}" + "\n".join(rows) + f"\n\nChecks:\n\n{checks}\n"


def write_churn_table(path: Path, report: ChurnReport) -> None:
    """Replace what lies between :data:`BEGIN` and :data:`END` in ``path`` with the table."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise CopurError(f"{path}: no {BEGIN} ... {END} markers to write the churn table between")
    before, rest = text.split(BEGIN, 1)
    _old, after = rest.split(END, 1)
    path.write_text(f"{before}{BEGIN}\n{churn_table(report)}{END}{after}")
