"""The scenario report: ``report.json`` (everything), ``report.md`` (tables) and ``index.html`` (tables and the
plots inline as base64 PNG, so the one file can be opened alone)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plots", "render_html", "render_markdown", "summary_rows", "write_report"]

COLUMNS = (
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


def _fmt(value: Any, *, ms: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if ms else f"{value:.3f}"
    return str(value)


def _predicts(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in report["steps"] if s["kind"] == "predict"]


def summary_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """One row per predict step and defense, formatted for the tables."""
    rows = []
    for step in _predicts(report):
        for defense, m in step["defenses"].items():
            missing = ", ".join(f"{p}: {c}" for p, c in m["missing"].items() if c) or "-"
            values = {**m, "step": step["name"], "defense": defense, "missing": missing}
            values["attackers"] = ", ".join(map(str, step["attackers"])) or "-"
            rows.append({key: _fmt(values.get(key), ms=key.endswith("_ms")) for key, _ in COLUMNS})
    return rows


def _expectation_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e["description"], _fmt(e["actual"]), "pass" if e["passed"] else "FAIL") for e in report["expectations"]]


def render_markdown(report: dict[str, Any]) -> str:
    sc, bundle = report["scenario"], report["bundle"]
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = [
        f"# Scenario `{sc['name']}`: {verdict}",
        "",
        sc["description"].strip() or "",
        "",
        f"Bundle `{bundle['path']}` ({bundle['dataset']}, {bundle['num_parties']} parties), "
        f"{len(report['ids'])} test samples (seed {sc['seed']}), fusion center {report['url']}, "
        f"{report['seconds']:.1f} s.",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row[key] for key, _ in COLUMNS) + " |" for row in summary_rows(report)]
    expectations = _expectation_rows(report)
    if expectations:
        lines += ["", "## Expectations", "", "| expectation | actual | result |", "|---|---|---|"]
        lines += [f"| {d} | {a} | {r} |" for d, a, r in expectations]
    lines += ["", "## Steps", ""]
    for step in report["steps"]:
        detail = {k: v for k, v in step.items() if k not in ("index", "kind", "seconds", "defenses")}
        lines.append(f"{step['index']}. `{step['kind']}` {json.dumps(detail)} ({step['seconds']:.2f} s)")
    return "\n".join(lines) + "\n"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _grouped(
    ax: Any, steps: list[str], series: dict[str, list[float | None]], ylabel: str, ylim: tuple[float, float] | None
) -> None:
    width = 0.8 / max(1, len(series))
    x = np.arange(len(steps))
    for k, (label, values) in enumerate(series.items()):
        heights = [np.nan if v is None else v for v in values]
        ax.bar(x + (k - (len(series) - 1) / 2) * width, heights, width, label=label)
    ax.set_xticks(x, steps, rotation=45 if len(steps) > 4 else 0, ha="right" if len(steps) > 4 else "center")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    # Outside the axes, to the right: bars near 1.0 would hide under a legend drawn inside.
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def plots(report: dict[str, Any]) -> dict[str, str]:
    """Title -> base64 PNG: accuracy per predict step and defense, latency p50/p99, flag precision/recall."""
    predicts = _predicts(report)
    if not predicts:
        return {}
    names = [s["name"] for s in predicts]
    defenses = list(dict.fromkeys(d for s in predicts for d in s["defenses"]))

    def metric(name: str, defense: str) -> list[float | None]:
        return [s["defenses"].get(defense, {}).get(name) for s in predicts]

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


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f0f0f0; } td:first-child, td:nth-child(2) { text-align: left; }
.pass { color: #161; font-weight: bold; } .fail { color: #b11; font-weight: bold; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
"""


def render_html(report: dict[str, Any], images: dict[str, str] | None = None) -> str:
    """A self-contained page: summary, expectations, the plots inline, the steps."""
    images = plots(report) if images is None else images
    e = html.escape
    sc, bundle = report["scenario"], report["bundle"]
    verdict = "passed" if report["passed"] else "failed"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>copur scenario {e(sc['name'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Scenario <code>{e(sc['name'])}</code>: "
        f'<span class="{"pass" if report["passed"] else "fail"}">{verdict}</span></h1>',
        f"<p>{e(sc['description'])}</p>",
        f"<p>Bundle <code>{e(bundle['path'])}</code> ({e(bundle['dataset'])}, {bundle['num_parties']} parties); "
        f"{len(report['ids'])} test samples (seed {sc['seed']}); fusion center <code>{e(report['url'])}</code>; "
        f"started {e(report['started'])}, {report['seconds']:.1f} s.</p>",
        "<h2>Summary</h2><table><tr>" + "".join(f"<th>{e(t)}</th>" for _, t in COLUMNS) + "</tr>",
    ]
    for row in summary_rows(report):
        parts.append("<tr>" + "".join(f"<td>{e(row[k])}</td>" for k, _ in COLUMNS) + "</tr>")
    parts.append("</table>")
    expectations = _expectation_rows(report)
    if expectations:
        parts.append("<h2>Expectations</h2><table><tr><th>expectation</th><th>actual</th><th>result</th></tr>")
        for d, a, r in expectations:
            parts.append(f'<tr><td>{e(d)}</td><td>{e(a)}</td><td class="{r.lower()}">{r}</td></tr>')
        parts.append("</table>")
    parts.append("<h2>Plots</h2>")
    for title, data in images.items():
        parts.append(f'<h3>{e(title)}</h3><img alt="{e(title)}" src="data:image/png;base64,{data}">')
    parts.append("<h2>Steps</h2><ol start='0'>")
    for step in report["steps"]:
        detail = {k: v for k, v in step.items() if k not in ("index", "kind", "seconds", "defenses")}
        parts.append(f"<li><code>{e(step['kind'])}</code> {e(json.dumps(detail))} ({step['seconds']:.2f} s)</li>")
    parts.append("</ol></body></html>")
    return "\n".join(parts) + "\n"


def write_report(report: dict[str, Any], out: Path) -> None:
    """Write ``out``/report.json, report.md and index.html (``out`` is created)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(report))
    (out / "index.html").write_text(render_html(report))
