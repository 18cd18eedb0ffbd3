import json
import re
from pathlib import Path

from typer.testing import CliRunner

from copur.cli import app
from copur.evaluation.evaluate import EvalConfig, run_grid
from copur.evaluation.grid import standard_grid
from copur.evaluation.results_report import family_means, write_report
from copur.science.bundle import Bundle


def test_standard_grid_names_every_required_scenario() -> None:
    names = {s.name for s in standard_grid(6)}

    required = {
        "clean",
        "flip10-p0",
        "flip10-p5",
        "flip10-p0p1",
        "flip10-p4p5",
        "missing-p3",
        "noise-p2",
        "replace-p1",
        "pgd-untargeted-p4",
        "pgd-targeted-p0",
        "adaptive-p5",
    }
    assert required <= names
    assert sum(1 for n in names if re.fullmatch(r"flip10-p\dp\d", n)) == 15


def test_quick_grid_report_has_the_documented_shape(mfeat_bundle: Bundle, tmp_path: Path) -> None:
    config = EvalConfig(
        quick=True,
        max_samples=24,
        adaptive_samples=8,
        defenses=("none", "copur", "vote"),
        suite_samples=12,
        search=4,
        suite_steps=3,
        liars=(0, 1, 2),
        max_sets={1: 2, 2: 1},
    )

    report = run_grid(mfeat_bundle, config, progress=False)
    md = write_report(report, tmp_path / "eval", markdown_copy=tmp_path / "docs" / "RESULTS.md")

    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    # The headline: worst of the suite per defense and t, the default named, the vote's floor on the
    # same samples.
    assert saved["default_defense"] == "copur"
    assert set(saved["worst_of_suite"]) == {"none", "copur", "vote"}
    copur = saved["worst_of_suite"]["copur"]
    assert set(copur) == {"0", "1", "2"} and set(copur["1"]["groups"]) == {"p0", "p3"}
    assert copur["1"]["worst"] == min(copur["1"]["groups"].values()) <= copur["1"]["mean"]
    assert (
        set(saved["suite"]["certified_accuracy"]) == {"0", "1", "2", "3"}
        and saved["suite"]["samples"] == 12
    )
    assert set(saved["per_attack"]) == {"copur"}
    assert {a["attack"] for a in saved["suite"]["attacks"]} >= {"mimic", "sia", "evade", "lma"}
    text = md.read_text()
    assert text.index("## Headline: accuracy under the worst attack of the suite") < text.index(
        "## Each attack alone"
    )
    assert "**`copur`** (default)" in text and "`vote` certified (provable floor" in text
    assert (tmp_path / "eval" / "worst_of_suite.png").read_bytes()[:4] == b"\x89PNG"
    for rec in saved["results"]:
        assert {"scenario", "defense", "accuracy"} <= rec.keys()
        if rec["family"] == "pgd-targeted":
            assert "attack_success_rate" in rec
    assert set(saved["certified_accuracy"]) == {"0", "1", "2", "3"}
    assert {"flip10-p0", "clean", "adaptive-p0"} <= {r["scenario"] for r in saved["results"]}
    for png in ("accuracy_vs_amplitude.png", "accuracy_vs_attackers.png", "certified_accuracy.png"):
        assert (tmp_path / "eval" / png).read_bytes()[:4] == b"\x89PNG"
    assert "| flip |" in md.read_text()
    assert "../eval/accuracy_vs_amplitude.png" in (tmp_path / "docs" / "RESULTS.md").read_text()
    means = family_means(report["results"])
    assert means[("flip", "copur")]["mean"] > means[("flip", "none")]["mean"]


def test_cli_evaluate_and_its_errors(mfeat_bundle_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()

    ok = runner.invoke(
        app,
        [
            "evaluate",
            str(mfeat_bundle_dir),
            "--out",
            str(tmp_path / "e"),
            "--quick",
            "--samples",
            "12",
            "--defense",
            "none",
            "--defense",
            "copur",
            "--suite-samples",
            "8",
            "--search",
            "2",
            "--steps",
            "2",
            "--liars",
            "0,1",
            "--max-sets",
            "1=2",
            "--suite-attack",
            "mimic",
            "--suite-attack",
            "sia",
            "--no-progress",
        ],
    )
    other = runner.invoke(
        app,
        [
            *(
                "evaluate",
                str(mfeat_bundle_dir),
                "--out",
                str(tmp_path / "f"),
                "--quick",
                "--samples",
                "8",
            ),
            *(
                "--defense",
                "copur",
                "--no-suite",
                "--with",
                str(tmp_path / "e" / "results.json"),
                "--no-progress",
            ),
        ],
    )
    bad = runner.invoke(
        app, ["evaluate", str(mfeat_bundle_dir), "--out", str(tmp_path / "e"), "--defense", "x"]
    )
    bad_sets = runner.invoke(
        app, ["evaluate", str(mfeat_bundle_dir), "--out", str(tmp_path / "e"), "--max-sets", "3"]
    )
    bad_attack = runner.invoke(
        app,
        [
            "evaluate",
            str(mfeat_bundle_dir),
            "--out",
            str(tmp_path / "e"),
            "--suite-attack",
            "flipp",
        ],
    )
    bad_with = runner.invoke(
        app,
        [
            "evaluate",
            str(mfeat_bundle_dir),
            "--out",
            str(tmp_path / "e"),
            "--with",
            str(tmp_path / "nope.json"),
        ],
    )

    assert ok.exit_code == 0, ok.output
    saved = json.loads((tmp_path / "e" / "results.json").read_text())
    assert set(saved["worst_of_suite"]["copur"]) == {"0", "1"} and saved["suite"]["samples"] == 8
    assert [a["label"] for a in saved["suite"]["attacks"]] == [
        "mimic search=2",
        "mimic nearest search=2",
        "sia search=2",
    ]
    assert other.exit_code == 0, other.output
    summary = (tmp_path / "f" / "results.md").read_text()
    assert "## Other data sets (the same suite)" in summary and "worst_of_suite" not in json.loads(
        (tmp_path / "f" / "results.json").read_text()
    )
    assert bad.exit_code == 2 and "unknown defense 'x'" in bad.output
    assert bad_sets.exit_code == 2 and "--max-sets takes T=N" in bad_sets.output
    assert (
        bad_attack.exit_code == 2
        and "unknown suite attack 'flipp' (the suite's: adaptive, drop" in bad_attack.output
    )
    assert len(bad_attack.output.strip().splitlines()) == 1
    assert bad_with.exit_code == 2 and "nope.json: no such file" in bad_with.output
