"""The worst-of-suite part of the robustness report: headline table, figure, suite, per-attack
detail, and the other data sets' summary. The Markdown is rendered from Jinja2 templates
(``templates/suite.md.j2``, ``templates/other_datasets.md.j2``); :data:`TEMPLATES` loads them and
``results.md.j2`` for :mod:`copur.evaluation.results_report`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final, NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from copur.evaluation.templating import templates

__all__ = [
    "DEFENSE_ORDER",
    "DEFENSE_STYLE",
    "TEMPLATES",
    "other_datasets",
    "plot_worst_of_suite",
    "suite_sections",
]

DEFENSE_ORDER: Final = ("none", "ae", "rs", "copur-ref", "copur-l21", "copur", "copur+rs", "vote")
# One colour / marker / line style per defense across every figure, so overlapping curves stay
# visible.
DEFENSE_STYLE: Final[dict[str, dict[str, Any]]] = {
    "none": {"color": "tab:blue", "marker": "o", "linestyle": "-"},
    "ae": {"color": "tab:orange", "marker": "s", "linestyle": "-"},
    "rs": {"color": "tab:gray", "marker": "v", "linestyle": ":"},
    "copur-ref": {"color": "tab:green", "marker": "^", "linestyle": "-"},
    "copur-l21": {"color": "tab:pink", "marker": "P", "linestyle": "--"},
    "copur": {"color": "tab:red", "marker": "o", "linestyle": "-", "linewidth": 2.5},
    "copur+rs": {"color": "tab:brown", "marker": "x", "linestyle": "--"},
    "vote": {"color": "tab:purple", "marker": "D", "linestyle": "-."},
}

TEMPLATES: Final = templates("copur.evaluation")
"""The evaluation report's Markdown templates (``copur/evaluation/templates/*.md.j2``)."""


def _cell(entry: dict[str, Any] | None, *, worst_group: bool = True) -> str:
    if entry is None:
        return "-"
    if len(entry.get("groups", {})) <= 1 and "groups" in entry:
        return f"{entry['mean']:.3f}"
    text = f"{entry['mean']:.3f} / {entry['worst']:.3f}"
    if worst_group and entry.get("groups"):
        name = min(entry["groups"], key=entry["groups"].get)
        text += f" ({name})"
    return text


def _liars(report: dict[str, Any]) -> list[str]:
    worst = report["worst_of_suite"]
    return sorted({t for per in worst.values() for t in per}, key=int)


def _defenses(report: dict[str, Any]) -> list[str]:
    present = set(report["worst_of_suite"])
    return [d for d in DEFENSE_ORDER if d in present] + sorted(present - set(DEFENSE_ORDER))


def suite_sections(report: dict[str, Any], figure: str | None) -> str:
    """Markdown: the headline table (worst of the suite per defense and t, beside the vote's
    certified floor), the figure, the suite itself, the default defense attack by attack, and which
    attacks broke samples first. Every line ends in a newline."""
    suite, default = report["suite"], report["default_defense"]
    liars = _liars(report)
    floor = suite["certified_accuracy"]
    worst = report["worst_of_suite"]
    per_attack = report.get("per_attack", {}).get(default)
    per_attack_table = None
    if per_attack:
        ts = sorted(per_attack, key=int)
        rows = [
            (a["label"], [_cell(per_attack[t].get(a["label"]), worst_group=False) for t in ts])
            for a in suite["attacks"]
        ]
        per_attack_table = {"liars": ts, "rows": rows}
    return TEMPLATES.get_template("suite.md.j2").render(
        suite=suite,
        default=default,
        liars=liars,
        attacker_sets=[f"t={t}: {len(s)}" for t, s in suite["sets"].items() if t != "0"],
        headline=[(name, [_cell(worst[name].get(t)) for t in liars]) for name in _defenses(report)],
        vote_k=report["vote_k"],
        floor=[f"{floor[t]:.3f}" if t in floor else "-" for t in liars],
        figure=figure,
        per_attack=per_attack_table,
        first_breaks=_first_breaks(report, liars),
    )


_BreakRow = tuple[str, str, list[tuple[str, int]]]


def _first_breaks(report: dict[str, Any], liars: list[str]) -> list[_BreakRow] | None:
    """Rows (defense, t, [(attack, broken pairs)] most first); None when the report has none."""
    breaks = report.get("first_break", {})
    if not breaks:
        return None
    rows = []
    for name in _defenses(report):
        for t in liars:
            counts = {a: n for a, n in breaks.get(name, {}).get(t, {}).items() if n}
            if counts:
                rows.append((name, t, sorted(counts.items(), key=lambda kv: -kv[1])))
    return rows


class _OtherRow(NamedTuple):
    """One defense of another data set in the summary table."""

    dataset: str
    bundle: str
    link: str | None
    parties: int
    samples: int
    defense: str
    default: bool
    t1: str
    floor1: float
    t2: str
    floor2: float
    held: bool


def other_datasets(others: list[dict[str, Any]], base: Path) -> str:
    """Markdown: for other data sets' reports, the default defense's worst of the suite beside the
    vote's floor (each data set linked to its own report, relative to the folder ``base`` of the
    markdown being written). Every line ends in a newline; empty without other data sets."""
    if not others:
        return ""
    rows = []
    for rep in others:
        default = rep["default_defense"]
        floor = rep["suite"]["certified_accuracy"]
        for name in [d for d in _defenses(rep) if d in (default, "vote", "copur-l21")]:
            per = rep["worst_of_suite"][name]
            held = per["1"]["mean"] >= floor["1"] and per["1"]["worst"] >= floor["1"]
            rows.append(
                _OtherRow(
                    dataset=rep["dataset"],
                    bundle=Path(rep["bundle"]).name,
                    link=os.path.relpath(rep["source"], base) if "source" in rep else None,
                    parties=rep["num_parties"],
                    samples=rep["suite"]["samples"],
                    defense=name,
                    default=name == default,
                    t1=_cell(per.get("1")),
                    floor1=floor["1"],
                    t2=_cell(per.get("2")),
                    floor2=floor.get("2", 0.0),
                    held=held,
                )
            )
    return TEMPLATES.get_template("other_datasets.md.j2").render(rows=rows)


def plot_worst_of_suite(report: dict[str, Any], out: Path) -> None:
    """Worst-of-suite accuracy (mean over attacker sets) against the number of liars, per
    defense, with the vote's certified accuracy as a dashed floor."""
    liars = _liars(report)
    ts = [int(t) for t in liars]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name in _defenses(report):
        per = report["worst_of_suite"][name]
        style = DEFENSE_STYLE.get(name, {})
        ax.plot(
            ts, [per[t]["mean"] if t in per else float("nan") for t in liars], label=name, **style
        )
    floor = report["suite"]["certified_accuracy"]
    ax.plot(
        ts,
        [floor.get(t, float("nan")) for t in liars],
        color="black",
        linestyle=":",
        label="vote certified",
    )
    ax.set(
        xlabel="t (lying parties, every attack of the suite)",
        ylabel="accuracy under the worst attack (mean over sets)",
        ylim=(0, 1.02),
        title=f"Worst of the suite: {report['dataset']}",
    )
    ax.set_xticks(ts)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
