"""``copur evaluate`` (the robustness report) and ``copur scenario run`` (scripted attacks on a
cluster)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from copur.errors import ConfigError
from copur.operations.clikit import command_line
from copur.operations.clikit import guard as _guard

__all__ = ["evaluate", "scenario_run"]


def evaluate(
    bundle: Annotated[
        Path, typer.Argument(help="Model bundle directory (trained and calibrated).")
    ],
    out: Annotated[
        Path, typer.Option(help="Directory for results.json, results.md and the plots.")
    ],
    quick: Annotated[
        bool, typer.Option(help="A small grid on 100 test samples and a small suite (minutes).")
    ] = False,
    samples: Annotated[
        int | None, typer.Option(help="Evaluate on this many test samples (default: all).")
    ] = None,
    defense: Annotated[
        list[str] | None, typer.Option(help="Defenses to run (repeat); default all.")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Also write the markdown report here.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling and random attacks.")] = 0,
    suite: Annotated[
        bool, typer.Option(help="Measure the worst of the attack suite (the headline).")
    ] = True,
    suite_samples: Annotated[
        int | None,
        typer.Option(help="Test samples the suite runs on (default 200; 48 with --quick)."),
    ] = None,
    search: Annotated[
        int | None,
        typer.Option(
            help="Candidates per query-based attack of the suite (default 32; 8 with --quick)."
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(help="Steps per gradient attack of the suite (default 50; 10 with --quick)."),
    ] = None,
    liars: Annotated[
        str | None,
        typer.Option(
            help="Numbers of lying parties, comma-separated (default 0,1,2,3; 0,1,2 quick)."
        ),
    ] = None,
    max_sets: Annotated[
        list[str] | None,
        typer.Option(
            help="T=N: at most N attacker sets of t liars, spread evenly (repeat; default 3=5)."
        ),
    ] = None,
    suite_attack: Annotated[
        list[str] | None,
        typer.Option(
            help="Keep only the suite's attacks of this name, e.g. mimic (repeat; default: the "
            "whole suite)."
        ),
    ] = None,
    with_report: Annotated[
        list[Path] | None,
        typer.Option(
            "--with", help="Another data set's results.json to summarise in the markdown (repeat)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto (cuda when present), cpu or cuda.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Measure every defense under the worst attack of the suite (per sample, every attacker set
    of t parties) beside the vote's certified floor, run the per-attack grid, and write the
    robustness report."""

    def run() -> None:
        from copur.evaluation.evaluate import EvalConfig, run_grid
        from copur.evaluation.results_report import write_report
        from copur.science.bundle import load_bundle
        from copur.science.defenses import DEFENSES, check_defense
        from copur.science.device import resolve_device

        for name in defense or ():
            check_defense(name)
        others = [_read_report(path) for path in with_report or ()]
        config = EvalConfig(
            quick=quick,
            max_samples=samples,
            seed=seed,
            defenses=tuple(defense or DEFENSES),
            suite=suite,
            suite_samples=suite_samples if suite_samples is not None else (48 if quick else 200),
            search=search if search is not None else (8 if quick else 32),
            suite_steps=steps if steps is not None else (10 if quick else 50),
            liars=_int_list("--liars", liars) if liars else ((0, 1, 2) if quick else (0, 1, 2, 3)),
            max_sets=_max_sets(max_sets) if max_sets else ({2: 3} if quick else {3: 5}),
            suite_attacks=tuple(suite_attack or ()),
        )
        report = run_grid(
            load_bundle(bundle), config, device=resolve_device(device), progress=progress
        )
        report["command"] = command_line(sys.argv, "evaluate")
        md = write_report(report, out, markdown_copy=markdown, others=others)
        typer.echo(f"report written to {md}")

    _guard(run)


def _int_list(option: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated integers, got {text!r}") from None
    if any(v < 0 for v in values):
        raise ConfigError(f"{option} must be >= 0, got {text!r}")
    return values


def _max_sets(items: list[str]) -> dict[int, int]:
    out = {}
    for item in items:
        t, sep, n = item.partition("=")
        if not sep:
            raise ConfigError(f"--max-sets takes T=N (e.g. 3=5), got {item!r}")
        key, value = _int_list("--max-sets", f"{t},{n}")
        if value < 1:
            raise ConfigError(f"--max-sets needs at least one set, got {item!r}")
        out[key] = value
    return out


def _read_report(path: Path) -> dict[str, Any]:
    """Another data set's ``results.json`` (with the suite); ``source``: its results.md beside
    it."""
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"--with {path}: no such file (run `copur evaluate` for that bundle first)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--with {path}: not a JSON file ({exc.msg})") from None
    if not isinstance(report, dict) or "worst_of_suite" not in report:
        raise ConfigError(f"--with {path}: not an evaluation report with the worst of the suite")
    report["source"] = str(path.parent / "results.md")
    return report


def scenario_run(
    file: Annotated[Path, typer.Argument(help="Scenario YAML (see clients/scenarios/).")],
    out: Annotated[
        Path, typer.Option(help="Directory for report.json, report.md and index.html.")
    ] = Path("runs/report"),
    url: Annotated[str | None, typer.Option(help="Fusion center URL of a running cluster.")] = None,
    up: Annotated[
        bool, typer.Option("--up", help="Start the cluster of --config first, stop it after.")
    ] = False,
    config: Annotated[
        Path, typer.Option(help="Topology (adversary control ports; what --up starts).")
    ] = Path("deploy/cluster-scenarios.yaml"),
    bundle: Annotated[
        str | None, typer.Option(help="Bundle for ground-truth labels (default: the topology's).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Key for predictions (default: --up's development key, else $COPUR_API_KEY)."
        ),
    ] = None,
    admin_key: Annotated[
        str | None,
        typer.Option(
            help="Key for policy changes (default: --up's development key, else $COPUR_ADMIN_KEY)."
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            envvar="COPUR_CA_FILE",
            help="CA that verifies the HTTPS front doors (default: ca.pem of the topology's "
            "tls.dir).",
        ),
    ] = None,
) -> None:
    """Run a scenario's steps (policies, faults, predictions, expectations) and write the report."""
    from copur.evaluation.scenarios.runner import scenario_command

    code = scenario_command(
        file,
        url=url,
        up=up,
        config=config,
        bundle=bundle,
        out=out,
        progress=progress,
        api_key=api_key,
        admin_key=admin_key,
        ca_file=ca_file,
    )
    raise typer.Exit(code)
