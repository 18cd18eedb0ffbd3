"""Sustained load on a real cluster: after a warm-up, 60 s of ``POST /v1/predict`` at concurrency
64 from the raw-HTTP load generator of ``copur bench serve``. Not one error, and the current
resident memory (VmRSS, not the peak since start) of the fusion center, every party and the
adversary grows by under 10 % between the end of the warm-up and the end of the run. ``make
soak`` runs this test alone."""

from __future__ import annotations

from pathlib import Path

from clusterkit import running_cluster
from copur.evaluation.bench.loadgen import bench_serve
from copur.evaluation.bench.memory import read_rss_mb

CONCURRENCY = 64
WARMUP_S = 10.0
SOAK_S = 60.0
MAX_GROWTH = 0.10
# The soak tests memory and errors, not the deadline: a generous one, so that a busy 2-core
# machine's slow
# party answers are not counted as missing blocks (nor, below min_parties, as 503s).
FUSION = {"deadline_ms": 10_000, "max_delay_ms": 5, "min_parties": 4}


def _rss(pids: dict[str, int]) -> dict[str, float]:
    """Current RSS (MiB) of each process; every one must be alive."""
    now = {name: read_rss_mb(pid, peak=False) for name, pid in pids.items()}
    assert all(v is not None for v in now.values()), f"a process died: {now}"
    return {name: float(v) for name, v in now.items() if v is not None}


def test_sixty_seconds_at_concurrency_64_without_errors_or_memory_growth(
    mfeat_bundle_dir: Path, tmp_path: Path
) -> None:
    # Prepare: a fresh cluster, warmed up (connections, lazy initialisation, allocator pools)
    with running_cluster(tmp_path, mfeat_bundle_dir, fusion=FUSION) as cluster:
        pids = cluster.pids()
        url = cluster.fusion_url
        warm = bench_serve(
            url=url, concurrency=(CONCURRENCY,), duration_s=WARMUP_S, requests=10**6, timeout_s=60
        )
        before = _rss(pids)
        # Execute
        soak = bench_serve(
            url=url,
            concurrency=(CONCURRENCY,),
            duration_s=SOAK_S,
            requests=10**7,
            timeout_s=60,
            pids=pids,
            seed=1,
        )
        after = _rss(pids)
    # Assert
    run = soak["runs"][0]
    assert warm["runs"][0]["errors"] == {}
    assert run["errors"] == {} and run["requests"] == run["ok"] > 0, run
    growth = {name: after[name] / before[name] - 1.0 for name in before}
    report = {
        name: f"{before[name]:.0f} -> {after[name]:.0f} MiB ({growth[name]:+.1%})"
        for name in before
    }
    assert {"fusion", "party-0"} <= set(growth), report
    assert all(g < MAX_GROWTH for g in growth.values()), report
