"""`copur bench serve --up` starts the cluster from a rewritten copy of the topology: its TLS
settings survive the copy, and a relative tls.dir still points where it pointed (the copy lives
in a temporary folder)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from copur.evaluation.bench.serve import bench_topology
from copur.transport.topology import load_topology

REPO = Path(__file__).resolve().parents[2]


def test_bench_copy_keeps_mtls_with_an_absolute_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: run from the repository, as `make perf` does
    monkeypatch.chdir(REPO)
    out = tmp_path / "bench"
    out.mkdir()

    # Execute
    copy = bench_topology(REPO / "deploy" / "cluster.yaml", True, out)
    tls = load_topology(copy, env={}).tls

    # Assert
    assert tls.mode == "mtls"
    assert Path(tls.dir) == REPO / "runs" / "certs"


def test_bench_copy_of_a_topology_without_tls_section_keeps_the_default(tmp_path: Path) -> None:
    # Prepare
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump({"bundle": "/b", "parties": [{"index": 0, "port": 5}]}))

    # Execute
    tls = load_topology(bench_topology(config, False, tmp_path), env={}).tls

    # Assert
    assert (tls.mode, tls.dir) == ("mtls", "runs/certs")
