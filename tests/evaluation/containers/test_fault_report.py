"""The fault rows computed from the load's records, and the table written between its markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from copur.errors import CopurError
from copur.evaluation.containers.faults import Fault, FaultResult, _result, container_faults
from copur.evaluation.containers.load import Record
from copur.evaluation.containers.report import BEGIN, END, write_fault_table


def _fault() -> Fault:
    return Fault(
        name="kill",
        action="docker kill party-3",
        undo_action="docker start party-3",
        inject=lambda p: None,
        undo=lambda p: None,
        party=3,
    )


def _records() -> list[Record]:
    ok = [
        Record(start=float(i), end=float(i) + 0.010 * (i + 1), error=None, missing=frozenset())
        for i in range(98)
    ]
    missing = Record(start=98.0, end=99.0, error=None, missing=frozenset({3}))
    failed = Record(start=99.0, end=99.5, error="503 unavailable", missing=frozenset())
    return [*ok, missing, failed]


def test_a_fault_row_counts_errors_and_missing_parties_and_takes_latency_of_answers_only() -> None:
    # Execute
    row = _result(
        _fault(), _records(), held_s=8.04, states={"down"}, recovery_s=6.123, fusion_restarts=0
    )

    # Assert
    assert (row.requests, row.errors, row.error_kinds) == (100, 1, ["503 unavailable"])
    assert (row.answers_with_missing, row.missing_parties) == (1, [3])
    assert row.max_ms == 1000.0  # the failed request's 500 ms is not a latency
    assert row.p50_ms == pytest.approx(495.0, abs=6)
    assert (row.held_s, row.recovery_s, row.party_states) == (8.04, 6.12, ["down"])


def test_the_table_replaces_only_what_lies_between_the_markers(tmp_path: Path) -> None:
    # Prepare
    doc = tmp_path / "OPERATIONS.md"
    doc.write_text(f"# Title\n\nbefore\n\n{BEGIN}\nold table\n{END}\n\nafter\n")
    row = _result(
        _fault(), _records(), held_s=8.0, states=set(), recovery_s=None, fusion_restarts=0
    )

    # Execute
    write_fault_table(doc, [row], concurrency=4)

    # Assert
    text = doc.read_text()
    assert text.startswith("# Title\n\nbefore\n\n" + BEGIN + "\n")
    assert text.endswith(END + "\n\nafter\n")
    assert "old table" not in text
    line = next(x for x in text.splitlines() if x.startswith("| kill "))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:6] == ["kill", "docker kill party-3", "docker start party-3", "8.0", "100", "1"]
    assert cells[-2:] == ["not recovered", "no"]
    assert "4 HTTP clients" in text


def test_a_document_without_markers_is_refused_and_kept(tmp_path: Path) -> None:
    # Prepare
    doc = tmp_path / "x.md"
    doc.write_text("no markers\n")
    row = FaultResult.model_validate(
        _result(
            _fault(), _records(), held_s=1.0, states=set(), recovery_s=1.0, fusion_restarts=0
        ).model_dump()
    )

    # Execute / Assert
    with pytest.raises(CopurError, match="no <!-- fault-table:begin -->"):
        write_fault_table(doc, [row], concurrency=4)
    assert doc.read_text() == "no markers\n"


class _Recorder:
    """Stands in for a ComposeProject: records the operations a fault does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: self.calls.append(
            (name, *map(str, args), *(f"{k}={v}" for k, v in kwargs.items()))
        )


@pytest.mark.parametrize(
    ("name", "injected", "undone"),
    [
        ("kill", ("docker_on", "kill", "party-3"), ("docker_on", "start", "party-3")),
        ("pause", ("docker_on", "pause", "party-3"), ("docker_on", "unpause", "party-3")),
        ("disconnect", ("disconnect", "party-3"), ("connect", "party-3")),
        (
            "lossy-link",
            ("lossy_link", "party-3", "loss=0.3"),
            ("heal_lossy_link", "party-3", "loss=0.3"),
        ),
        ("slow-link", ("slow_link", "party-3", "rate=64kbit"), ("heal_slow_link", "party-3")),
        ("fusion-restart", ("docker_on", "restart", "fusion", "--time", "10"), None),
    ],
)
def test_each_fault_does_and_undoes_what_its_row_says(
    name: str, injected: tuple[str, ...], undone: tuple[str, ...] | None
) -> None:
    # Prepare
    fault = {f.name: f for f in container_faults(party=3)}[name]
    project = _Recorder()

    # Execute
    fault.inject(project)  # type: ignore[arg-type]
    fault.undo(project)  # type: ignore[arg-type]

    # Assert
    assert project.calls == [injected] + ([undone] if undone else [])
    assert fault.party == (None if name == "fusion-restart" else 3)
