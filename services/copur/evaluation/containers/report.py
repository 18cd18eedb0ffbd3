"""The fault table: one Markdown row per fault, written into a document between the markers
``<!-- fault-table:begin -->`` and ``<!-- fault-table:end -->`` (the rest of the file is kept)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from copur.errors import CopurError
from copur.evaluation.containers.faults import FaultResult

__all__ = ["BEGIN", "END", "fault_table", "write_fault_table"]

BEGIN = "<!-- fault-table:begin -->"
END = "<!-- fault-table:end -->"
COMMAND = "make compose-faults"


def fault_table(results: Sequence[FaultResult], *, concurrency: int) -> str:
    """The Markdown table of ``results`` with a line saying how it was measured."""
    head = (
        "| fault | done | undone by | held s | requests | errors | p50 ms | p99 ms | max ms "
        "| answers missing a party | parties missing | party state seen | recovery s "
        "| fusion restarted |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|\n"
    )
    rows = []
    for r in results:
        recovery = "not recovered" if r.recovery_s is None else f"{r.recovery_s:.1f}"
        rows.append(
            f"| {r.name} | {r.action} | {r.undo_action or '-'} | {r.held_s:.1f} | {r.requests} "
            f"| {r.errors} "
            f"| {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.max_ms:.0f} | {r.answers_with_missing} "
            f"| {', '.join(map(str, r.missing_parties)) or '-'} "
            f"| {', '.join(r.party_states) or '-'} | {recovery} "
            f"| {'yes' if r.fusion_restarts else 'no'} |"
        )
    note = (
        f"Measured by `{COMMAND}`: {concurrency} HTTP clients (copur-client, its default retries) "
        "asking for 8 samples at a time with defense copur; each row counts the requests started "
        "from the injection until recovery. *held*: injection to undo (for the restart, how long "
        "`docker restart` took); *recovery*: undo until every party is `up` in `/v1/parties` and "
        "an answer arrives with no party missing."
    )
    return f"{note}\n\n{head}" + "\n".join(rows) + "\n"


def write_fault_table(path: Path, results: Sequence[FaultResult], *, concurrency: int) -> None:
    """Replace what lies between :data:`BEGIN` and :data:`END` in ``path`` with the table."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise CopurError(f"{path}: no {BEGIN} ... {END} markers to write the fault table between")
    before, rest = text.split(BEGIN, 1)
    _old, after = rest.split(END, 1)
    table = fault_table(results, concurrency=concurrency)
    path.write_text(f"{before}{BEGIN}\n{table}{END}{after}")
