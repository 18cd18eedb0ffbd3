"""``copur up``, ``copur down``, ``copur demo``, ``copur predict``: a whole cluster on this machine, and a client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from copur.errors import ConfigError
from copur.operations.clikit import guard as _guard

__all__ = ["demo", "down", "predict", "up"]


def up(
    config: Annotated[Path, typer.Option(help="Cluster topology file.")] = Path("deploy/cluster.yaml"),
    log_dir: Annotated[Path, typer.Option(help="Where each process logs, and the cluster state file.")] = Path(
        "runs/cluster"
    ),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every process to be ready.")] = 180.0,
) -> None:
    """Start every process of the topology on this machine, wait until ready, watch them; Ctrl-C stops all."""

    def run() -> None:
        import signal
        import threading

        from copur.operations.launcher import Cluster
        from copur.transport.topology import load_topology

        topology = load_topology(config)
        cluster = Cluster(topology, config_path=config, log_dir=log_dir)
        typer.echo(f"starting {len(cluster.procs)} processes (logs in {log_dir}/)", err=True)
        cluster.start(timeout)
        state = log_dir / "cluster.json"
        cluster.write_state(state)
        typer.echo(
            f"fusion center   {cluster.fusion_url}  (docs {cluster.fusion_url}/docs, gRPC {cluster.fusion_grpc})"
        )
        for adv in topology.adversaries:
            typer.echo(f"adversary p{adv.party}    {cluster.control_url(adv.party)}/v1/policy")
        if topology.auth.mode == "keys":
            typer.echo(f"API keys        {topology.auth.keys_file} (development keys: its keys/ folder)")
        typer.echo("cluster ready (Ctrl-C or `copur down` stops it)")
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        try:
            while not done.wait(0.5):
                for name, code in cluster.dead():
                    typer.echo(f"process {name} exited with code {code} (log: {log_dir / (name + '.log')})", err=True)
        finally:
            cluster.stop()
            state.unlink(missing_ok=True)
            typer.echo("cluster stopped", err=True)

    _guard(run)


def down(
    log_dir: Annotated[Path, typer.Option(help="The log directory `copur up` was given.")] = Path("runs/cluster"),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the cluster to stop.")] = 30.0,
) -> None:
    """Stop a cluster started by `copur up`."""

    def run() -> None:
        import os
        import signal
        import time

        import psutil

        state = log_dir / "cluster.json"
        if not state.is_file():
            raise ConfigError(f"no running cluster recorded in {state}")
        info = json.loads(state.read_text())
        pids = [int(info["up_pid"]), *(int(p) for p in info["pids"].values())]

        def alive(pid: int) -> bool:
            try:  # a zombie waiting for its parent has stopped running
                return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
            except psutil.NoSuchProcess:
                return False

        if alive(pids[0]):
            os.kill(pids[0], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in (p for p in pids if alive(p)):
            os.kill(pid, signal.SIGKILL)
        state.unlink(missing_ok=True)
        typer.echo("cluster stopped")

    _guard(run)


def demo(
    config: Annotated[Path, typer.Option(help="Cluster topology file.")] = Path("deploy/cluster.yaml"),
    log_dir: Annotated[Path, typer.Option(help="Where each process logs.")] = Path("runs/demo"),
    samples: Annotated[int, typer.Option(help="How many samples to predict.")] = 200,
) -> None:
    """Bring the cluster up, predict, flip one party through the adversary, predict again, shut down."""

    def run() -> None:
        from copur.operations.demo import run_demo

        run_demo(config, log_dir=log_dir, samples=samples, say=typer.echo)

    _guard(run)


def predict(
    ids: Annotated[list[int], typer.Argument(help="Sample ids, e.g. `--ids 1 2 3` or just `1 2 3`.")],
    _ids_marker: Annotated[bool, typer.Option("--ids", help="Optional marker: the sample ids follow.")] = False,
    url: Annotated[str, typer.Option(help="Fusion center HTTP URL.")] = "http://127.0.0.1:8080",
    defense: Annotated[str | None, typer.Option(help="Defense (default: the fusion center's).")] = None,
    certify: Annotated[bool, typer.Option(help="Ask for the defense's certificate.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON instead of a table.")] = False,
    grpc_target: Annotated[str | None, typer.Option("--grpc", help="Use gRPC at HOST:PORT instead of HTTP.")] = None,
    tls_dir: Annotated[
        Path | None,
        typer.Option(envvar="COPUR_TLS_DIR", help="With --grpc: mTLS with DIR/ca.pem, client.pem, client-key.pem."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="COPUR_API_KEY", help="API key with scope predict (sent as a Bearer token).")
    ] = None,
) -> None:
    """Ask the fusion center for predictions and print a table (or --json)."""
    from copur_client import GrpcTls, predict_command

    tls = GrpcTls.from_dir(tls_dir) if tls_dir is not None else None
    code, text = predict_command(url, list(ids), defense, certify, as_json, grpc_target, tls, api_key=api_key)
    typer.echo(text, err=code != 0)
    raise typer.Exit(code=code)
