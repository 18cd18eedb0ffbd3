"""``copur bench serve``: optionally start the cluster itself (batching on, off or both), load its
fusion center with :func:`~copur.evaluation.bench.loadgen.bench_serve`, write the JSON report
(:class:`~copur.evaluation.bench.models.ServeBench`) and print a table. The load generator, the
process memory and machine readers live in ``loadgen``, ``memory`` and ``machine``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from copur.evaluation.bench.loadgen import bench_serve
from copur.evaluation.bench.models import Machine, ServeBench, ServeRun, ServeSettings, write_bench

__all__ = ["bench_topology", "format_table", "serve_command"]


def format_table(runs: Sequence[ServeRun]) -> str:
    """The runs as a fixed-width text table for the terminal."""
    head = (
        f"{'batching':>8} {'conc':>5} {'reqs':>6} {'ok':>6} {'req/s':>8} {'pred/s':>8} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}  errors"
    )
    lines = [head, "-" * len(head)]
    for r in runs:
        errors = ", ".join(f"{k}:{v}" for k, v in (r.errors or {}).items()) or "-"
        lines.append(
            f"{r.batching or '?':>8} {r.concurrency:>5} {r.requests:>6} {r.ok:>6} "
            f"{r.throughput_rps or 0.0:>8.1f} {r.predictions_per_s:>8.1f} {r.p50_ms:>8.1f} "
            f"{r.p95_ms:>8.1f} {r.p99_ms:>8.1f} {r.max_ms:>8.1f}  {errors}"
        )
    return "\n".join(lines)


def bench_topology(config: Path, batching: bool, out_dir: Path) -> Path:
    """A copy of ``config`` with fusion.batching set, every adversary's policy ``none`` and absolute
    bundle and tls.dir paths (relative paths are taken from the working directory, else from the
    file's folder)."""
    import yaml

    raw = yaml.safe_load(config.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{config} must hold a mapping at the top level")
    raw.setdefault("fusion", {})
    raw["fusion"] = dict(raw["fusion"] or {}, batching=batching)
    raw["adversaries"] = [dict(a, policy="none") for a in raw.get("adversaries") or []]
    paths: list[tuple[dict[str, Any], str]] = [(raw, "bundle"), (raw, "data_dir")]
    if isinstance(raw.get("tls"), dict):
        paths.append((raw["tls"], "dir"))
    if isinstance(raw.get("auth"), dict):
        paths.append((raw["auth"], "keys_file"))
    for node, key in paths:
        value = node.get(key)
        if isinstance(value, str) and not Path(value).is_absolute():
            here, beside = Path(value).resolve(), (config.parent / value).resolve()
            node[key] = str(here if here.exists() or not beside.exists() else beside)
    path = out_dir / f"cluster-batching-{'on' if batching else 'off'}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _state_pids(log_dir: Path) -> dict[str, int] | None:
    """The pids a running ``copur up`` recorded in ``log_dir/cluster.json``, if any."""
    try:
        info = json.loads((log_dir / "cluster.json").read_text())
        return {str(k): int(v) for k, v in info["pids"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class _Measured:
    """What the load tests of one ``copur bench serve`` gathered, batching setting after setting."""

    def __init__(self) -> None:
        self.machine = Machine()
        self.runs: list[ServeRun] = []
        self.rss_by_mode: dict[str, dict[str, float]] = {}

    def add(self, mode: str, result: dict[str, Any]) -> list[ServeRun]:
        """Keep ``bench_serve``'s result for batching ``mode``; returns its runs."""
        self.machine = Machine.model_validate(result["machine"])
        runs = [ServeRun.model_validate({"batching": mode, **r}) for r in result["runs"]]
        self.runs += runs
        self.rss_by_mode[mode] = result["rss_peak_mb"]
        return runs

    def rss_peak(self) -> dict[str, float]:
        """Each process's peak over every batching setting."""
        rss: dict[str, float] = {}
        for peaks in self.rss_by_mode.values():
            for name, mb in peaks.items():
                rss[name] = max(rss.get(name, 0.0), mb)
        return rss


def serve_command(
    *,
    url: str | None,
    config: Path,
    json_path: Path,
    up: bool,
    batching: str = "both",
    concurrency: Sequence[int] = (1, 8, 64),
    requests: int = 20000,
    duration_s: float = 20.0,
    ids_per_request: int = 1,
    defense: str = "copur",
    warmup: int = 20,
    log_dir: Path | None = None,
    start_timeout: float = 180.0,
    echo: Callable[[str], None] = print,
    api_key: str | None = None,
    ca_file: Path | None = None,
    command: str | None = None,
) -> int:
    """``copur bench serve``: bench a running fusion center (``url``) or, with ``up``, start the
    cluster of ``config`` (adversaries' policy none) once per batching mode ("on", "off" or "both"),
    bench it and stop it. Writes the JSON report to ``json_path`` (with ``command``, the command
    line that reproduces it, when given), prints a table; returns the exit code. Requests carry
    ``api_key``; without one, the development predict key of the started cluster (``up``), else
    ``$COPUR_API_KEY``. An ``https://`` ``url`` is verified with ``ca_file``; the started
    cluster's CA is known."""
    if batching not in ("on", "off", "both"):
        echo(f"error: --batching must be on, off or both, not {batching!r}")
        return 2
    if not up and url is None:
        echo("error: give --url of a running fusion center, or --up to start the cluster")
        return 2
    if not up and batching == "both":
        echo("error: --batching both needs --up (a running cluster has one batching setting)")
        return 2
    modes = ["on", "off"] if batching == "both" else [batching]
    kwargs: dict[str, Any] = {
        "concurrency": concurrency,
        "requests": requests,
        "duration_s": duration_s,
        "ids_per_request": ids_per_request,
        "defense": defense,
        "warmup": warmup,
    }
    measured = _Measured()
    security: dict[str, str] = {}
    if not up:
        assert url is not None
        key = api_key or os.environ.get("COPUR_API_KEY")
        pids = _state_pids(log_dir or Path("runs/cluster"))
        measured.add(
            batching, bench_serve(url=url, pids=pids, api_key=key, ca_file=ca_file, **kwargs)
        )
    else:
        from copur.errors import CopurError
        from copur.operations.launcher import Cluster
        from copur.transport.topology import load_topology

        with tempfile.TemporaryDirectory(prefix="copur-bench-") as tmp:
            for mode in modes:
                path = bench_topology(Path(config), mode == "on", Path(tmp))
                logs = (log_dir or Path(tmp) / "logs") / f"batching-{mode}"
                topology = load_topology(path)
                security = {
                    "tls": topology.tls.mode,
                    "auth": topology.auth.mode,
                    "http": topology.http_scheme,
                }
                cluster = Cluster(topology, config_path=path, log_dir=logs)
                echo(f"starting the cluster with batching {mode} (logs in {logs}/)")
                try:
                    cluster.start(start_timeout)
                except CopurError as exc:
                    echo(f"error: {exc}")
                    return 1
                try:
                    key = api_key or cluster.dev_key("predict") or os.environ.get("COPUR_API_KEY")
                    fusion, pids = cluster.fusion_url, cluster.pids()
                    result = bench_serve(
                        url=fusion, pids=pids, api_key=key, ca_file=cluster.http_ca, **kwargs
                    )
                finally:
                    cluster.stop()
                echo(format_table(measured.add(mode, result)))
    rss = measured.rss_peak()
    settings = {**kwargs, "concurrency": list(concurrency), "batching": batching, "up": up}
    report = ServeBench(
        machine=measured.machine,
        settings=ServeSettings.model_validate(settings | security),
        runs=measured.runs,
        rss_peak_mb=rss,
        rss_peak_mb_by_batching=measured.rss_by_mode,
    )
    if command is not None:
        report.command = command
    write_bench(report, json_path)
    echo("")
    echo(format_table(measured.runs))
    if rss:
        echo("peak RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    echo(f"wrote {json_path}")
    return 0


if __name__ == "__main__":  # pragma: no cover - handy without the CLI wiring
    sys.exit(
        serve_command(
            url=None,
            config=Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/cluster.yaml"),
            json_path=Path(sys.argv[2] if len(sys.argv) > 2 else "runs/bench/serve.json"),
            up=True,
        )
    )
