"""The robustness report's Markdown renders byte for byte what it rendered before it moved into
Jinja2 templates: goldens written by the pre-template code from a trimmed docs/results/results.json
(four defenses, four attacks of the suite, two other data sets, one linked), and from the grid
alone (no suite, no certificate, no command)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from copur.evaluation.results_report import write_report

GOLDEN = Path(__file__).parent / "golden" / "results"


def _input() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / "input.json").read_text())
    return data


def test_results_markdown_and_its_copy_match_the_golden(tmp_path: Path) -> None:
    # Prepare: the first other data set links to its report, the second does not
    data = _input()
    linked = dict(data["others"][0], source=str(tmp_path / "digits" / "results.md"))
    others = [linked, data["others"][1]]

    # Execute
    copy = tmp_path / "docs" / "RESULTS.md"
    md = write_report(data["report"], tmp_path / "results", markdown_copy=copy, others=others)

    # Assert: results.md (figures beside it) and the copy (figure and report links from docs/)
    assert md.read_bytes() == (GOLDEN / "results.md").read_bytes()
    assert copy.read_bytes() == (GOLDEN / "RESULTS.md").read_bytes()
    assert json.loads((tmp_path / "results" / "results.json").read_text()) == data["report"]


def test_grid_only_markdown_matches_the_golden(tmp_path: Path) -> None:
    report = _input()["report"]
    suite = ("worst_of_suite", "per_attack", "first_break", "suite", "default_defense", "command")
    grid = {k: v for k, v in report.items() if k not in suite} | {"certified_accuracy": {}}

    md = write_report(grid, tmp_path / "grid")

    assert md.read_bytes() == (GOLDEN / "grid_only.md").read_bytes()
    assert not (tmp_path / "grid" / "worst_of_suite.png").exists()
