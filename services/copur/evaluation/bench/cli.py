"""``copur bench purifier|serve|report``: the benchmark commands (a sub-app of the ``copur`` CLI).

The ``command`` that ``bench purifier`` and ``bench serve`` record is rebuilt from the options, not
taken from ``sys.argv`` (:func:`copur.operations.clikit.command_line`): it spells out every setting,
defaults included (the batch sizes, --min-seconds, --bundle, --batching...), most of which the JSON
records nowhere else, so that it still reproduces the run when a default changes. ``bench report``
records the command line as typed: its output depends on nothing but the files it names.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from copur.errors import ConfigError
from copur.operations.clikit import command_line, spelled_out
from copur.operations.clikit import guard as _guard

if TYPE_CHECKING:
    import torch

    from copur.evaluation.bench.models import PurifierBench, ServeBench

__all__ = ["bench_app"]

bench_app = typer.Typer(
    help="Benchmarks: the purifiers' throughput and latency, the service under load, "
    "docs/PERFORMANCE.md.",
    no_args_is_help=True,
)

# `--batch-sizes 1 8 64`: click gives an option one value, the others arrive as extra arguments.
_LIST_OPTION = {"allow_extra_args": True}
PURIFIER_BATCH_SIZES = (1, 8, 64, 512, 4096)
SERVE_CONCURRENCY = (1, 8, 64)


def _int_list(
    option: str, values: list[str] | None, extra: list[str], default: tuple[int, ...]
) -> list[int]:
    """Whole numbers >= 1 given as ``--opt 1 8 64``, ``--opt 1,8,64`` or ``--opt 1 --opt 8``."""
    if extra and not values:
        raise ConfigError(f"unexpected argument '{extra[0]}'")
    tokens = [t for v in [*(values or ()), *extra] for t in v.replace(",", " ").split()]
    bad = [t for t in tokens if not (t.isascii() and t.isdigit()) or int(t) < 1]
    if bad:
        raise ConfigError(f"{option}: '{bad[0]}' is not a whole number >= 1")
    return [int(t) for t in tokens] or list(default)


def _bench_device(name: str) -> torch.device:
    """``--device``: cpu, cuda[:k] or auto; cuda without a CUDA device is an error."""
    import re

    import torch

    from copur.science.device import resolve_device

    if name not in ("cpu", "auto") and not re.fullmatch(r"cuda(:\d+)?", name):
        raise ConfigError(f"--device: unknown device '{name}' (use cpu, cuda or auto)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is available")
    return resolve_device(name)


def _purifier_command(
    device: str,
    sizes: list[int],
    bundle: str,
    min_seconds: float,
    threads: int | None,
    json_path: Path,
) -> str:
    """``copur bench purifier`` with every setting spelled out (defaults included)."""
    options = {"device": device, "batch_sizes": sizes, "bundle": bundle, "min_seconds": min_seconds}
    return spelled_out(
        ["bench", "purifier"], {**options, "threads": threads or None, "json": json_path}
    )


@bench_app.command("purifier", context_settings=_LIST_OPTION)
def bench_purifier_command(
    ctx: typer.Context,
    json_path: Annotated[Path, typer.Option("--json", help="Where to write the results (JSON).")],
    device: Annotated[
        str,
        typer.Option(
            help="cpu, cuda (an error when no CUDA device is present) or auto (cuda when present)."
        ),
    ] = "cpu",
    batch_sizes: Annotated[
        list[str] | None,
        typer.Option(
            "--batch-sizes",
            metavar="N[,N...]",
            help="Batch sizes to time: `--batch-sizes 1 8 64`, `--batch-sizes 1,8,64` or the "
            "option repeated. "
            "[default: 1 8 64 512 4096]",
            show_default=False,
        ),
    ] = None,
    bundle: Annotated[
        str,
        typer.Option(
            help="Bundle for the mfeat shape (its autoencoder, calibration and test embeddings); "
            "without a bundle "
            "there the mfeat shape is skipped with a note."
        ),
    ] = "runs/mfeat",
    min_seconds: Annotated[
        float, typer.Option(min=0.0, help="Repeat each measurement for at least this long.")
    ] = 1.0,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="torch intra-op threads (default: the cores this process may use)."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Print each measurement as it is taken.")] = True,
) -> None:
    """Time the batched purifiers copur-ref and copur; write samples/s, latency and GFLOP/s as JSON.

    Shapes: nus-wide, an autoencoder 240-200-150-200-240 with seeded
    orthogonal weights (4 parties x 60 dims) and inputs near its manifold;
    mfeat, the bundle's autoencoder, calibration and test embeddings.

    For each shape, purifier and batch size one purify call is repeated for
    at least --min-seconds: samples/s, ms per sample, ms per batch, and the
    effective GFLOP/s of the algorithm's nominal work (early stops counted),
    beside a measured float32 matmul peak. Then copur-ref one sample at a
    time in a Python loop at nus-wide (its default path, and autograd per
    step as the public code does), and the batched speedup over each.
    """

    def run() -> None:
        from copur.evaluation.bench.purifier import bench_purifier, write_purifier_bench

        sizes = _int_list("--batch-sizes", batch_sizes, ctx.args, PURIFIER_BATCH_SIZES)
        dev = _bench_device(device)
        try:
            result = bench_purifier(
                device=dev,
                batch_sizes=sizes,
                bundle=bundle,
                min_seconds=min_seconds,
                progress=progress,
                threads=threads,
            )
        except FileNotFoundError as exc:  # a bundle without calibration.json
            raise ConfigError(f"--bundle: {exc}") from None
        result.command = _purifier_command(device, sizes, bundle, min_seconds, threads, json_path)
        typer.echo(f"wrote {write_purifier_bench(result, json_path)}")

    _guard(run)


def _serve_command(
    url: str | None,
    config: Path,
    batching: str,
    levels: list[int],
    json_path: Path,
    **numbers: object,
) -> str:
    """``copur bench serve`` with every setting spelled out (defaults included)."""
    where = {"url": url} if url else {"up": True, "config": config}
    options = {**where, "batching": batching, "concurrency": levels, **numbers, "json": json_path}
    return spelled_out(["bench", "serve"], options)


@bench_app.command("serve", context_settings=_LIST_OPTION)
def bench_serve_command(
    ctx: typer.Context,
    json_path: Annotated[Path, typer.Option("--json", help="Where to write the results (JSON).")],
    url: Annotated[
        str | None, typer.Option(help="Fusion center HTTP URL of a running cluster.")
    ] = None,
    up: Annotated[
        bool,
        typer.Option(
            "--up", help="Start the cluster of --config (adversaries honest), bench it, stop it."
        ),
    ] = False,
    config: Annotated[Path, typer.Option(help="Topology that --up starts.")] = Path(
        "deploy/cluster.yaml"
    ),
    batching: Annotated[
        str | None,
        typer.Option(
            help="on, off or both (--up starts the cluster once per setting; default both). With "
            "--url: the "
            "running cluster's setting, used as the label (default on).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        list[str] | None,
        typer.Option(
            metavar="N[,N...]",
            help="Concurrent clients per level: `--concurrency 1 8 64`, `1,8,64` or the option "
            "repeated. "
            "[default: 1 8 64]",
            show_default=False,
        ),
    ] = None,
    requests: Annotated[int, typer.Option(min=1, help="Most requests per level.")] = 20000,
    duration: Annotated[
        float, typer.Option(min=0.001, help="Most seconds per level (no new request after).")
    ] = 20.0,
    ids_per_request: Annotated[int, typer.Option(min=1, help="Sample ids per request.")] = 1,
    defense: Annotated[str, typer.Option(help="Defense each request asks for.")] = "copur",
    warmup: Annotated[int, typer.Option(min=0, help="Uncounted requests before each level.")] = 20,
    log_dir: Annotated[
        Path | None, typer.Option(help="Where the --up cluster logs (default: a temp dir).")
    ] = None,
    start_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the --up cluster to be ready.")
    ] = 180.0,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="API key with scope predict (default: the --up cluster's development key, else "
            "$COPUR_API_KEY)."
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            envvar="COPUR_CA_FILE",
            help="CA that verifies an https:// --url (the --up cluster's CA is known).",
        ),
    ] = None,
) -> None:
    """Load the fusion center's POST /v1/predict; write throughput, latency, errors, peak RSS as
    JSON.

    Each concurrency level runs that many concurrent clients over keep-alive
    connections for at most --requests requests or --duration seconds.
    Latency percentiles (p50/p95/p99/max) cover every request; errors count
    non-200 answers by status and transport failures by name; the peak
    resident memory of each cluster process is sampled during the run."""

    def run() -> int:
        from copur.evaluation.bench.serve import serve_command

        levels = _int_list("--concurrency", concurrency, ctx.args, SERVE_CONCURRENCY)
        if up and url is not None:
            raise ConfigError("give --url of a running fusion center or --up, not both")
        if up and not config.is_file():
            raise ConfigError(f"--config: {config} not found")
        mode = batching or ("both" if up else "on")
        numbers = {"requests": requests, "duration": duration, "ids_per_request": ids_per_request}
        command = _serve_command(
            url, config, mode, levels, json_path, **numbers, defense=defense, warmup=warmup
        )
        return serve_command(
            url=url,
            config=config,
            json_path=json_path,
            up=up,
            batching=mode,
            concurrency=levels,
            duration_s=duration,
            requests=requests,
            ids_per_request=ids_per_request,
            defense=defense,
            warmup=warmup,
            log_dir=log_dir,
            start_timeout=start_timeout,
            echo=lambda line: typer.echo(line, err=line.startswith("error:")),
            api_key=api_key,
            ca_file=ca_file,
            command=command,
        )

    raise typer.Exit(code=_guard(run))


@bench_app.command("report")
def bench_report_command(
    purifier: Annotated[
        Path | None,
        typer.Option(
            help="JSON from `copur bench purifier` (its sections are left out without it)."
        ),
    ] = None,
    serve: Annotated[
        Path | None,
        typer.Option(help="JSON from `copur bench serve` (its sections are left out without it)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Markdown file to write.")] = Path(
        "docs/PERFORMANCE.md"
    ),
) -> None:
    """Render docs/PERFORMANCE.md from the benchmarks' JSON: machine, tables, targets met or not.

    The targets are judged from the numbers in the files: batched copur-ref
    >= 50x its one-sample loop and >= 1000 samples/s (nus-wide); copur
    single-sample latency <= 15 ms; the service with batching on and defense
    copur at concurrency 64 >= 500 predictions/s, p99 <= 250 ms, no errors;
    p50 <= 25 ms at concurrency 1.
    """

    def run() -> None:
        import datetime

        from copur.evaluation.bench.models import load_bench
        from copur.evaluation.bench.report import render_performance, write_performance

        if purifier is None and serve is None:
            raise ConfigError("give --purifier FILE, --serve FILE or both")
        bench = load_bench(purifier, "purifier") if purifier is not None else None
        served = load_bench(serve, "serve") if serve is not None else None
        serve_fallback = f"copur bench serve --up --config deploy/cluster.yaml --json {serve}"
        commands = {
            "purifier": _recorded(bench, f"copur bench purifier --json {purifier}"),
            "serve": _recorded(served, serve_fallback),
            "report": command_line(sys.argv, "bench"),
        }
        commands = {k: v for k, v in commands.items() if v}
        today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        markdown = render_performance(bench, served, commands=commands, generated=today)
        typer.echo(f"wrote {write_performance(markdown, out)}")

    _guard(run)


def _recorded(report: PurifierBench | ServeBench | None, fallback: str) -> str:
    """The command line a bench report recorded, else ``fallback`` (empty when there is no
    report)."""
    if report is None:
        return ""
    return report.command if report.command is not None else fallback


@bench_app.command("churn")
def bench_churn_command(
    next_bundle: Annotated[
        Path,
        typer.Option(help="A retrained bundle of the same data set: the rollout's target."),
    ] = Path("runs/mfeat-next"),
    config: Annotated[Path, typer.Option(help="Topology that is started.")] = Path(
        "deploy/cluster-scenarios.yaml"
    ),
    json_path: Annotated[
        Path, typer.Option("--json", help="Where to write the results (JSON).")
    ] = Path("runs/bench/churn.json"),
    markdown: Annotated[
        Path | None,
        typer.Option(help="Write the table into this document, between its churn-table markers."),
    ] = None,
    party: Annotated[
        int, typer.Option(help="The party frozen, slowed, put on a foreign bundle.")
    ] = 3,
    concurrency: Annotated[int, typer.Option(min=1, help="Clients during the faults.")] = 8,
    rollout_concurrency: Annotated[
        int, typer.Option(min=1, help="Clients during the rollout and the rollback.")
    ] = 16,
    phase_s: Annotated[
        float, typer.Option(min=0.5, help="Seconds each fault is measured once ejected.")
    ] = 8.0,
    log_dir: Annotated[
        Path | None, typer.Option(help="Where the cluster logs (default: a temp dir).")
    ] = None,
) -> None:
    """Start the local cluster of --config and put it through what a deployment lives through,
    under a steady load of HTTP clients, each phase measured by the client:

    a party frozen (SIGSTOP) until ejected, then resumed; a party slower than the deadline (its
    adversary slot's delay policy); a party on a foreign bundle; `copur rollout` to --next-bundle
    and `copur rollout --rollback`. Checks: ejection within seconds, then throughput >= 80% and
    p99 <= 2x of healthy, re-admission within seconds; the foreign bundle's blocks missing with
    reason `version`, never flagged; rollout and rollback with zero errors and zero answers that
    mix bundles. Exit 1 when a check fails."""

    def run() -> None:
        from copur.evaluation.churn.models import ChurnSettings
        from copur.evaluation.churn.run import churn_command
        from copur_client import CopurClientError

        settings = ChurnSettings(
            party=party,
            concurrency=concurrency,
            rollout_concurrency=rollout_concurrency,
            phase_s=phase_s,
        )
        try:
            code = churn_command(
                config=config,
                next_bundle=next_bundle,
                json_path=json_path,
                markdown=markdown,
                settings=settings,
                log_dir=log_dir,
                echo=typer.echo,
            )
        except CopurClientError as exc:  # the cluster refused a step: one line, not a traceback
            raise ConfigError(f"the cluster refused a step: {exc}") from None
        raise typer.Exit(code)

    _guard(run)
