"""The benchmarks' building blocks: latency percentiles from the shared definition, the JSON models'
one-line errors and round trip, process memory through psutil, and the machine description."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from copur.errors import ConfigError
from copur.evaluation.bench.loadgen import _ms
from copur.evaluation.bench.machine import machine_info, usable_cores
from copur.evaluation.bench.memory import read_rss_mb
from copur.evaluation.bench.models import ServeBench, ServeRun, load_bench, write_bench
from copur.evaluation.percentiles import percentile_ms


def test_latency_percentiles_interpolate_like_the_shared_definition() -> None:
    seconds = [0.001, 0.002, 0.003, 0.010]

    p50, p99, top = _ms(seconds, 50), _ms(seconds, 99), _ms(seconds, 100)

    assert p50 == pytest.approx(2.5)  # nearest rank would give 2.0
    assert p99 == round(percentile_ms(seconds, 99) or 0.0, 3)
    assert top == 10.0
    assert _ms([], 99) == 0.0


def test_a_field_of_the_wrong_type_is_one_line_naming_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "serve.json"
    run = {"concurrency": "many", "requests": 1, "ok": 1, "errors": {}, "predictions_per_s": 1.0}
    path.write_text(
        json.dumps({"runs": [run | {"p50_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0, "max_ms": 1.0}]})
    )

    with pytest.raises(ConfigError) as caught:
        load_bench(path, "serve")

    message = str(caught.value)
    assert message.startswith(f"{path}: runs[0].concurrency: ") and "\n" not in message


def test_written_files_read_back_and_leave_unset_fields_out(tmp_path: Path) -> None:
    run = ServeRun(
        batching="on",
        concurrency=8,
        requests=10,
        ok=10,
        errors={},
        predictions_per_s=5.0,
        p50_ms=1.0,
        p95_ms=2.0,
        p99_ms=3.0,
        max_ms=4.0,
    )
    bench = ServeBench(runs=[run], rss_peak_mb={"fusion": 100.0})

    path = write_bench(bench, tmp_path / "out" / "serve.json")

    assert load_bench(path, "serve") == bench
    written = json.loads(path.read_text())
    assert set(written) == {"runs", "rss_peak_mb"} and "defense" not in written["runs"][0]


def test_process_memory_peak_current_and_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()

    peak, now = read_rss_mb(os.getpid()), read_rss_mb(os.getpid(), peak=False)

    assert now is not None and peak is not None and 0 < now <= peak
    assert read_rss_mb(child.pid) is None


def test_machine_info_describes_the_host_and_torch_only_with_a_device() -> None:
    import torch

    host = machine_info()
    bench = machine_info(torch.device("cpu"), threads=3)

    assert host.cpu and host.cpu_count == usable_cores() >= 1
    assert (
        host.torch is None
        and host.threads is None
        and "torch" not in host.model_dump(exclude_unset=True)
    )
    assert (bench.threads, bench.torch, bench.device) == (3, torch.__version__, "cpu")
    assert bench.load_average is not None and len(bench.load_average) == 3
