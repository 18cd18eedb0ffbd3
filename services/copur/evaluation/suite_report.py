"""The worst-of-suite part of the robustness report: headline table, figure, suite, per-attack detail."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["ATTACK_NOTES", "DEFENSE_ORDER", "DEFENSE_STYLE", "other_datasets", "plot_worst_of_suite", "suite_sections"]

DEFENSE_ORDER: Final = ("none", "ae", "rs", "copur-ref", "copur-l21", "copur", "copur+rs", "vote")
# One colour / marker / line style per defense across every figure, so overlapping curves stay visible.
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
#: what each attack of the library does, for the report's suite table
ATTACK_NOTES: Final = {
    "flip": "h_a <- -amp * h_a (distributed feature flipping)",
    "noise": "a Gaussian block of the given norm",
    "zero": "an all-zero block",
    "drop": "no answer (the block is missing)",
    "replace": "the block of another random sample",
    "mimic": "the blocks of one donor sample of another class, the same donor for every colluder; best of "
    "`search` candidates (donors, factors 0.5-1.5 of the way from the honest block) by the defense's answers; "
    "`nearest`: donors ranked by how well they match the honest parties' blocks (white-box)",
    "sia": "runner-up attack: donors of the defended output's second class (half nearest, half random), best by "
    "the answers, then 20 gradient steps towards that class through the defense",
    "pgd": "untargeted PGD against the undefended head (a transfer attack)",
    "adaptive": "PGD on the cross-entropy through the defense itself, unrolled; discrete choices straight-through",
    "lma": "loss maximisation: PGD on the Carlini-Wagner margin through the defense, the worst iterate by the "
    "defense's real answers; `from_donor`: starting from a donor's blocks",
    "evade": "detector-aware PGD on the margin: a step that gets the liar flagged is halved, then refused, so the "
    "detector never fires on a lie",
}


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


def suite_sections(report: dict[str, Any], figure: str | None) -> list[str]:
    """Markdown: the headline table (worst of the suite per defense and t, beside the vote's certified floor),
    the figure, the suite itself, the default defense attack by attack, and which attacks broke samples first."""
    suite, default = report["suite"], report["default_defense"]
    liars = _liars(report)
    floor = suite["certified_accuracy"]
    n_sets = {t: len(s) for t, s in suite["sets"].items()}
    header = " | ".join(f"t={t}" + (" (clean)" if t == "0" else " mean / worst") for t in liars)
    lines = [
        "## Headline: accuracy under the worst attack of the suite",
        "",
        f"A sample counts for a defense only if it is answered correctly on clean input **and under every one of "
        f"the {len(suite['attacks'])} attacks below**, at every attacker position (t=1) or set of t colluding "
        "positions: the worst case per sample, which is what an attacker who tries everything achieves. Mean "
        "over the attacker sets / the worst set (named). "
        f"{suite['samples']} test samples; donors for mimicry: the {suite['donors']} training and validation "
        "samples. Attacker sets: "
        + ", ".join(f"t={t}: {n}" for t, n in n_sets.items() if t != "0")
        + f". The default defense is `{default}`.",
        "",
        f"| defense | {header} |",
        "|---|" + "---|" * len(liars),
    ]
    for name in _defenses(report):
        label = f"**`{name}`** (default)" if name == default else f"`{name}`"
        cells = [_cell(report["worst_of_suite"][name].get(t)) for t in liars]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        f"| `vote` certified (provable floor, any lie, k={report['vote_k']}) | "
        + " | ".join(f"{floor[t]:.3f}" if t in floor else "-" for t in liars)
        + " |"
    )
    lines += [
        "",
        "The certified row is a proof, not a measurement: whatever t compromised parties send, the vote's answer "
        "on those samples cannot change. A defense whose worst-of-suite figure falls below it is beaten by its "
        "own sibling's guarantee.",
        "",
    ]
    if figure:
        lines += [f"![worst of the suite vs number of liars]({figure})", ""]
    lines += ["### The suite (cheapest first)", "", "| attack | parameters | what it does |", "|---|---|---|"]
    for a in suite["attacks"]:
        params = ", ".join(f"{k}={v}" for k, v in a["params"].items()) or "-"
        loud = " **Loud**: it announces itself." if a["loud"] else ""
        lines.append(f"| {a['label']} | {params} | {ATTACK_NOTES.get(a['attack'], '')}{loud} |")
    per_attack = report.get("per_attack", {}).get(default)
    if per_attack:
        ts = sorted(per_attack, key=int)
        lines += [
            "",
            f"### `{default}` attack by attack",
            "",
            "Each attack alone, mean over the attacker sets / worst set; the headline takes the worst per sample.",
            "",
            "| attack | " + " | ".join(f"t={t}" for t in ts) + " |",
            "|---|" + "---|" * len(ts),
        ]
        for a in suite["attacks"]:
            cells = [_cell(per_attack[t].get(a["label"]), worst_group=False) for t in ts]
            lines.append(f"| {a['label']} | " + " | ".join(cells) + " |")
    lines += _first_breaks(report, liars)
    return lines


def _first_breaks(report: dict[str, Any], liars: list[str]) -> list[str]:
    breaks = report.get("first_break", {})
    if not breaks:
        return []
    lines = [
        "",
        "### Which attack broke the samples (the first attack of the suite to change each answer)",
        "",
        "| defense | t | broken (sample, set) pairs by attack |",
        "|---|---|---|",
    ]
    for name in _defenses(report):
        for t in liars:
            counts = {a: n for a, n in breaks.get(name, {}).get(t, {}).items() if n}
            if counts:
                top = sorted(counts.items(), key=lambda kv: -kv[1])
                lines.append(f"| `{name}` | {t} | " + ", ".join(f"{a}: {n}" for a, n in top) + " |")
    return lines


def other_datasets(others: list[dict[str, Any]], base: Path) -> list[str]:
    """Markdown: for other data sets' reports, the default defense's worst of the suite beside the vote's floor
    (each data set linked to its own report, relative to the folder ``base`` of the markdown being written)."""
    if not others:
        return []
    lines = [
        "## Other data sets (the same suite)",
        "",
        "| data set | parties | samples | defense | t=1 worst of suite: mean / worst | `vote` certified t=1 | "
        "t=2 worst of suite: mean / worst | `vote` certified t=2 | floor held at t=1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rep in others:
        default = rep["default_defense"]
        for name in [d for d in _defenses(rep) if d in (default, "vote", "copur-l21")]:
            per = rep["worst_of_suite"][name]
            floor = rep["suite"]["certified_accuracy"]
            held = "yes" if per["1"]["mean"] >= floor["1"] and per["1"]["worst"] >= floor["1"] else "**no**"
            name_cell = f"{rep['dataset']} (`{Path(rep['bundle']).name}`)"
            if "source" in rep:
                name_cell = f"[{name_cell}]({os.path.relpath(rep['source'], base)})"
            lines.append(
                f"| {name_cell} | {rep['num_parties']} | {rep['suite']['samples']} "
                f"| `{name}`{' (default)' if name == default else ''} | {_cell(per.get('1'))} | {floor['1']:.3f} | "
                f"{_cell(per.get('2'))} | {floor.get('2', 0.0):.3f} | {held} |"
            )
    lines += [
        "",
        "Each data set links to its full report. `floor held`: the mean and the worst position at t=1 are at "
        "least the vote's certified accuracy at t=1 on the same samples.",
        "",
    ]
    return lines


def plot_worst_of_suite(report: dict[str, Any], out: Path) -> None:
    """Worst-of-suite accuracy (mean over attacker sets) against the number of liars, per defense, with the
    vote's certified accuracy as a dashed floor."""
    liars = _liars(report)
    ts = [int(t) for t in liars]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name in _defenses(report):
        per = report["worst_of_suite"][name]
        style = DEFENSE_STYLE.get(name, {})
        ax.plot(ts, [per[t]["mean"] if t in per else float("nan") for t in liars], label=name, **style)
    floor = report["suite"]["certified_accuracy"]
    ax.plot(ts, [floor.get(t, float("nan")) for t in liars], color="black", linestyle=":", label="vote certified")
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
