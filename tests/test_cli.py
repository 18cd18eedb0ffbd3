import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from copur.cli import app
from copur.science.bundle import read_manifest

runner = CliRunner()


def test_train_then_info_on_digits(tmp_path: Path) -> None:
    out = tmp_path / "digits"

    trained = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "digits",
            "--out",
            str(out),
            "--vfl-epochs",
            "3",
            "--ae-epochs",
            "3",
            "--head-epochs",
            "2",
            "--emb-dim",
            "8",
            "--ae-code",
            "8",
            "--no-progress",
        ],
    )
    shown = runner.invoke(app, ["info", str(out), "--json"])

    assert trained.exit_code == 0, trained.output
    assert "clean_test_accuracy_ae_head" in trained.output
    manifest = json.loads(shown.output)
    assert manifest["party_dims"] == [16, 16, 16, 16]
    assert manifest["train"]["vfl_epochs"] == 3
    # the summary printed after training names the bundle's id, as parties and predictions do
    assert f"bundle id    {read_manifest(out).bundle_id}" in trained.output


def test_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["info", str(tmp_path / "nope")])
    bad_division = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "csv",
            "--data-dir",
            str(tmp_path / "x.csv"),
            "--divisions",
            "0 3",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    wide_code = runner.invoke(
        app, ["train", "--dataset", "digits", "--ae-code", "40", "--out", str(tmp_path / "o")]
    )

    for result, text in [
        (missing, "does not exist"),
        (bad_division, "missing file"),
        (wide_code, "not well below"),
    ]:
        assert result.exit_code == 2
        assert text in result.output
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_module_entry_point_prints_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "copur", "--help"], capture_output=True, text=True, check=True
    )

    assert "train" in done.stdout and "info" in done.stdout


def test_adversary_help_and_policy_name_mimic_and_sia(tmp_path: Path) -> None:
    args = [
        "adversary",
        "--upstream",
        "127.0.0.1:9",
        "--port",
        "0",
        "--bundle",
        str(tmp_path),
        "--party",
        "1",
    ]
    args += ["--tls-mode", "plaintext", "--auth-mode", "none"]

    shown = runner.invoke(app, ["adversary", "--help"], env={"COLUMNS": "200"})
    refused = runner.invoke(app, [*args, "--policy", "mimic"])

    assert shown.exit_code == 0 and "mimic" in shown.output and "sia" in shown.output
    assert "--data-dir" in shown.output
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert (
        "--policy: params: attack 'mimic' needs exactly one of parameters 'donor'" in refused.output
    )
