"""`copur bench purifier|serve|report` through typer's CliRunner: help, one-line errors with exit
2, a tiny real purifier run, a serve run against a closed port, and a report from the files
they write."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from copur.cli import app

runner = CliRunner()


def _one_line_error(result: Result, text: str) -> None:
    assert result.exit_code == 2, result.output
    assert text in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bench", "--help"], ["purifier", "serve", "report"]),
        (
            ["bench", "purifier", "--help"],
            ["--batch-sizes", "--device", "--min-seconds", "--threads", "GFLOP/s"],
        ),
        (
            ["bench", "serve", "--help"],
            ["--url", "--up", "--batching", "--concurrency", "--ids-per-request"],
        ),
        (["bench", "report", "--help"], ["--purifier", "--serve", "--out", "targets"]),
    ],
)
def test_help(argv: list[str], expected: list[str]) -> None:
    result = runner.invoke(app, argv)

    assert result.exit_code == 0, result.output
    assert all(word in result.output for word in expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_purifier_on_cuda_without_cuda_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "p.json"

    result = runner.invoke(app, ["bench", "purifier", "--device", "cuda", "--json", str(out)])

    _one_line_error(result, "error: --device cuda: no CUDA device is available")
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--batch-sizes", "1", "x"], "--batch-sizes: 'x' is not a whole number >= 1"),
        (["--batch-sizes", "0"], "--batch-sizes: '0' is not a whole number >= 1"),
        (["stray"], "unexpected argument 'stray'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_purifier_bad_arguments_are_one_line(
    tmp_path: Path, argv: list[str], expected: str
) -> None:
    result = runner.invoke(app, ["bench", "purifier", "--json", str(tmp_path / "p.json"), *argv])

    _one_line_error(result, expected)


def test_report_with_a_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "purifier.json"
    out = tmp_path / "PERFORMANCE.md"

    result = runner.invoke(app, ["bench", "report", "--purifier", str(missing), "--out", str(out)])

    _one_line_error(result, str(missing))
    assert not out.exists()


def test_report_with_a_malformed_file_names_it(tmp_path: Path) -> None:
    serve = tmp_path / "serve.json"
    serve.write_text(json.dumps({"runs": [{"concurrency": 1}]}))

    result = runner.invoke(
        app, ["bench", "report", "--serve", str(serve), "--out", str(tmp_path / "p.md")]
    )

    _one_line_error(result, f"{serve}: runs[0] lacks 'requests'")


def test_serve_url_and_up_together_is_one_line(tmp_path: Path) -> None:
    argv = [
        "bench",
        "serve",
        "--url",
        "http://127.0.0.1:1",
        "--up",
        "--json",
        str(tmp_path / "s.json"),
    ]

    result = runner.invoke(app, argv)

    _one_line_error(result, "not both")


def test_tiny_purifier_run_then_report(tmp_path: Path) -> None:
    bench, out = tmp_path / "bench" / "purifier.json", tmp_path / "docs" / "PERFORMANCE.md"
    argv = [
        "bench",
        "purifier",
        "--batch-sizes",
        "1",
        "2",
        "--min-seconds",
        "0.01",
        "--threads",
        "1",
    ]
    argv += ["--bundle", str(tmp_path / "none-existing-dir"), "--no-progress", "--json", str(bench)]

    ran = runner.invoke(app, argv)
    reported = runner.invoke(app, ["bench", "report", "--purifier", str(bench), "--out", str(out)])

    assert ran.exit_code == 0, ran.output
    assert f"wrote {bench}" in ran.output
    result = json.loads(bench.read_text())
    assert {(r["purifier"], r["shape"], r["batch_size"]) for r in result["records"]} == {
        (name, "nus-wide", bs) for name in ("copur-ref", "copur-l21", "copur") for bs in (1, 2)
    }
    assert result["speedup_vs_one_sample_loop"] > 0
    assert "mfeat shape skipped" in result["notes"][0]
    assert result["command"].startswith("copur bench purifier --device cpu --batch-sizes 1,2 ")
    assert reported.exit_code == 0, reported.output
    markdown = out.read_text()
    assert "### nus-wide" in markdown and "_No service benchmark was given._" in markdown
    assert result["command"] in markdown


def test_serve_against_a_closed_port_records_errors(tmp_path: Path) -> None:
    url, out = f"http://127.0.0.1:{_closed_port()}", tmp_path / "serve.json"
    argv = [
        "bench",
        "serve",
        "--url",
        url,
        "--concurrency",
        "1,2",
        "--requests",
        "3",
        "--duration",
        "5",
    ]
    argv += ["--warmup", "0", "--json", str(out)]

    result = runner.invoke(app, argv)

    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [(r["batching"], r["concurrency"], r["ok"]) for r in report["runs"]] == [
        ("on", 1, 0),
        ("on", 2, 0),
    ]
    assert all(r["errors"] == {"ConnectError": 3} for r in report["runs"])
    assert report["command"].startswith(
        f"copur bench serve --url {url} --batching on --concurrency 1,2 "
    )
