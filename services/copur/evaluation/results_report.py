"""Writing an evaluation's ``results.json``, ``results.md`` and PNG plots.

The worst-of-suite headline comes first (:mod:`copur.evaluation.suite_report`); the standard grid's
tables (each attack alone) follow, labelled as such. The Markdown is the Jinja2 template
``templates/results.md.j2``."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from copur.evaluation.suite_report import DEFENSE_ORDER as _ORDER
from copur.evaluation.suite_report import DEFENSE_STYLE as _STYLE
from copur.evaluation.suite_report import (
    TEMPLATES,
    other_datasets,
    plot_worst_of_suite,
    suite_sections,
)

__all__ = ["family_means", "write_report"]
_WORST_FIGURE = "worst of the suite vs number of liars"
_FAMILIES = (
    "clean",
    "flip",
    "flip-pair",
    "flip-triple",
    "missing",
    "noise",
    "replace",
    "pgd-untargeted",
    "pgd-targeted",
    "adaptive",
)


def _metric(rec: dict[str, Any]) -> float:
    return float(rec["attack_success_rate"] if "attack_success_rate" in rec else rec["accuracy"])


def family_means(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """(family, defense) -> mean and min of the family's metric (accuracy; success rate when
    targeted)."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for rec in results:
        groups[(rec["family"], rec["defense"])].append(_metric(rec))
    return {
        k: {"mean": mean(v), "min": min(v), "max": max(v), "count": len(v)}
        for k, v in groups.items()
    }


def _defenses(results: list[dict[str, Any]]) -> list[str]:
    present = {r["defense"] for r in results}
    return [d for d in _ORDER if d in present]


def _plot_amplitude(results: list[dict[str, Any]], out: Path) -> None:
    curves: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in results:
        if rec["family"] in ("flip", "flip-sweep"):
            curves[rec["defense"]][rec["params"]["amp"]].append(rec["accuracy"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for d in _ORDER:
        if d in curves and len(curves[d]) > 1:
            amps = sorted(curves[d])
            ax.plot(amps, [mean(curves[d][a]) for a in amps], label=d, **_STYLE[d])
    ax.set(
        xscale="log",
        xlabel="flip amplitude (h_a <- -amp * h_a)",
        ylabel="accuracy (mean over positions)",
        ylim=(0, 1.02),
        title="One flipping party",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _plot_attackers(results: list[dict[str, Any]], out: Path) -> None:
    by_t: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in results:
        is_flip10 = rec["family"].startswith("flip") and rec["family"] != "flip-sweep"
        if rec["family"] == "clean" or is_flip10:
            by_t[rec["defense"]][len(rec["attackers"])].append(rec["accuracy"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for d in _ORDER:
        if d in by_t:
            ts = sorted(by_t[d])
            ax.plot(ts, [mean(by_t[d][t]) for t in ts], label=d, **_STYLE[d])
    ax.set(
        xlabel="number of parties flipping x10",
        ylabel="accuracy (mean over attacker sets)",
        ylim=(0, 1.02),
        title="Accuracy vs number of attackers",
    )
    ax.set_xticks(sorted({t for d in by_t.values() for t in d}))
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _plot_certified(certified: dict[Any, float], k: int, out: Path) -> None:
    ts = sorted(int(t) for t in certified)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(
        ts, [certified[t] if t in certified else certified[str(t)] for t in ts], color="tab:purple"
    )
    ax.set(
        xlabel="t (compromised parties, whatever they send)",
        ylabel="certified accuracy",
        ylim=(0, 1.02),
        title=f"Party-subset vote certificate (k={k})",
    )
    ax.set_xticks(ts)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _family_rows(
    means: dict[tuple[str, str], dict[str, float]], defenses: list[str], *, worst: bool
) -> list[tuple[str, list[str]]]:
    """(family, a cell per defense) of the families measured: the mean over attacker positions, or
    the worst position (the min accuracy; the max success rate for ``pgd-targeted``). The clean row
    only for the mean."""
    rows = []
    for fam in _FAMILIES[1:] if worst else _FAMILIES:
        key = ("max" if fam == "pgd-targeted" else "min") if worst else "mean"
        cells = [f"{means[(fam, d)][key]:.3f}" if (fam, d) in means else "-" for d in defenses]
        if any(c != "-" for c in cells):
            rows.append((fam, cells))
    return rows


def _markdown(
    report: dict[str, Any], figures: dict[str, str], others: list[dict[str, Any]], base: Path
) -> str:
    results = report["results"]
    defs = _defenses(results)
    means = family_means(results)
    suite = None
    if "worst_of_suite" in report:
        suite = suite_sections(report, figures.get(_WORST_FIGURE))
    return TEMPLATES.get_template("results.md.j2").render(
        report=report,
        suite=suite,
        others=other_datasets(others, base),
        defenses=defs,
        mean_rows=_family_rows(means, defs, worst=False),
        worst_rows=_family_rows(means, defs, worst=True),
        certified=report["certified_accuracy"],
        figures={k: v for k, v in figures.items() if k != _WORST_FIGURE},
        results=results,
    )


def write_report(
    report: dict[str, Any],
    out: str | Path,
    *,
    markdown_copy: str | Path | None = None,
    others: list[dict[str, Any]] | None = None,
) -> Path:
    """Write results.json, results.md and the plots into ``out``; optionally a copy of the
    markdown elsewhere (its figure links rewritten relative to that file). ``others``: other
    data sets' reports, summarised in the markdown. Returns the results.md path."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    others = others or []
    figures: dict[str, str] = {}
    if "worst_of_suite" in report:
        figures[_WORST_FIGURE] = "worst_of_suite.png"
        plot_worst_of_suite(report, folder / "worst_of_suite.png")
    figures |= {
        "accuracy vs flip amplitude": "accuracy_vs_amplitude.png",
        "accuracy vs number of attackers": "accuracy_vs_attackers.png",
    }
    _plot_amplitude(report["results"], folder / figures["accuracy vs flip amplitude"])
    _plot_attackers(report["results"], folder / figures["accuracy vs number of attackers"])
    if report["certified_accuracy"]:
        figures["certified accuracy vs t"] = "certified_accuracy.png"
        _plot_certified(
            report["certified_accuracy"], report["vote_k"], folder / "certified_accuracy.png"
        )
    md = folder / "results.md"
    md.write_text(_markdown(report, figures, others, folder))
    if markdown_copy is not None:
        copy = Path(markdown_copy)
        copy.parent.mkdir(parents=True, exist_ok=True)
        links = {k: os.path.relpath(folder / v, copy.parent) for k, v in figures.items()}
        copy.write_text(_markdown(report, links, others, copy.parent))
    return md
