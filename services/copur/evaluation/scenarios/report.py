"""The scenario report: ``report.json`` (everything), ``report.md`` (tables) and ``index.html``
(tables and the plots inline as base64 PNG, so the one file can be opened alone). The two pages are
Jinja2 templates (``templates/report.md.j2``, ``templates/index.html.j2``, the HTML autoescaped)
over the typed report (:class:`.model.ScenarioReport`)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from copur.evaluation.scenarios.model import ExpectRecord, ScenarioReport, StepRecord
from copur.evaluation.templating import templates

__all__ = ["COLUMNS", "plots", "render_html", "render_markdown", "summary_rows", "write_report"]

COLUMNS: Final = (
    ("step", "predict step"),
    ("defense", "defense"),
    ("attackers", "attackers"),
    ("accuracy", "accuracy"),
    ("attack_success_rate", "ASR"),
    ("flag_precision", "flag precision"),
    ("flag_recall", "flag recall"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p99_ms", "p99 ms"),
    ("missing", "missing (party: samples)"),
    ("errors", "errors"),
)
"""The summary table's columns: (key of :func:`summary_rows`, title)."""


def _fmt(value: Any, *, ms: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if ms else f"{value:.3f}"
    return str(value)


def _detail(step: StepRecord) -> str:
    """A step's record as JSON, less what its line shows anyway (and a predict step's metrics)."""
    return json.dumps(step.model_dump(exclude={"index", "kind", "seconds", "defenses"}))


_TEMPLATES: Final = templates("copur.evaluation.scenarios", detail=_detail)


def summary_rows(report: ScenarioReport) -> list[dict[str, str]]:
    """One row per predict step and defense, formatted for the tables."""
    rows = []
    for step in report.predicts:
        for defense, m in step.defenses.items():
            missing = ", ".join(f"{p}: {c}" for p, c in m.missing.items() if c) or "-"
            values = {**m.model_dump(), "step": step.name, "defense": defense, "missing": missing}
            values["attackers"] = ", ".join(map(str, step.attackers)) or "-"
            rows.append({key: _fmt(values.get(key), ms=key.endswith("_ms")) for key, _ in COLUMNS})
    return rows


def _expectation_row(e: ExpectRecord) -> tuple[str, str, str]:
    return e.description, _fmt(e.actual), "pass" if e.passed else "FAIL"


def _context(report: ScenarioReport) -> dict[str, Any]:
    """What both templates show: the report, the summary table, the expectations' rows."""
    expectations = [_expectation_row(e) for e in report.expectations]
    return {
        "report": report,
        "scenario": report.scenario,
        "bundle": report.bundle,
        "titles": [title for _, title in COLUMNS],
        "table": [[row[key] for key, _ in COLUMNS] for row in summary_rows(report)],
        "expectations": expectations,
    }


def render_markdown(report: ScenarioReport) -> str:
    """``report.md``: the verdict, the summary table, the expectations and the steps."""
    return _TEMPLATES.get_template("report.md.j2").render(_context(report))


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _grouped(
    ax: Any,
    steps: list[str],
    series: dict[str, list[float | None]],
    ylabel: str,
    ylim: tuple[float, float] | None,
) -> None:
    width = 0.8 / max(1, len(series))
    x = np.arange(len(steps))
    for k, (label, values) in enumerate(series.items()):
        heights = [np.nan if v is None else v for v in values]
        ax.bar(x + (k - (len(series) - 1) / 2) * width, heights, width, label=label)
    ax.set_xticks(
        x, steps, rotation=45 if len(steps) > 4 else 0, ha="right" if len(steps) > 4 else "center"
    )
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    # Outside the axes, to the right: bars near 1.0 would hide under a legend drawn inside.
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def plots(report: ScenarioReport) -> dict[str, str]:
    """Title -> base64 PNG: accuracy per predict step and defense, latency p50/p99 and flag
    precision/recall per predict step."""
    predicts = report.predicts
    if not predicts:
        return {}
    names = [s.name for s in predicts]
    defenses = list(dict.fromkeys(d for s in predicts for d in s.defenses))

    def metric(name: str, defense: str) -> list[float | None]:
        per_step = [s.defenses.get(defense) for s in predicts]
        return [None if m is None else m.metric(name) for m in per_step]

    wide = max(6.0, 0.9 * len(names) + 2)
    out: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(wide, 3.6))
    _grouped(ax, names, {d: metric("accuracy", d) for d in defenses}, "accuracy", (0, 1.05))
    ax.set_title("Accuracy per predict step")
    out["Accuracy per predict step and defense"] = _png(fig)

    fig, ax = plt.subplots(figsize=(wide, 3.6))
    series = {f"{d} {q}": metric(f"latency_{q}_ms", d) for d in defenses for q in ("p50", "p99")}
    _grouped(ax, names, series, "latency per request (ms)", None)
    ax.set_title("Request latency p50 / p99")
    out["Latency p50 / p99 per predict step"] = _png(fig)

    fig, ax = plt.subplots(figsize=(wide, 3.6))
    series = {
        f"{d} {label}": metric(f"flag_{key}", d)
        for d in defenses
        if d not in ("none", "rs", "vote")
        for key, label in (("precision", "precision"), ("recall", "recall"))
    }
    if not series:
        series = {f"{d} recall": metric("flag_recall", d) for d in defenses}
    _grouped(ax, names, series, "flagged parties vs attackers", (0, 1.05))
    ax.set_title("Flag precision / recall (missing bar: undefined)")
    out["Flag precision / recall per predict step"] = _png(fig)
    return out


def render_html(report: ScenarioReport, images: dict[str, str] | None = None) -> str:
    """A self-contained page: summary, expectations, the plots inline (``images``: title -> base64
    PNG, default :func:`plots`), the steps."""
    images = plots(report) if images is None else images
    return _TEMPLATES.get_template("index.html.j2").render(_context(report), images=images)


def write_report(report: ScenarioReport, out: Path) -> None:
    """Write ``out``/report.json, report.md and index.html (``out`` is created)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(report))
    (out / "index.html").write_text(render_html(report))
