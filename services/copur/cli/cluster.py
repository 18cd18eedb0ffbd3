"""``copur up``, ``copur down``, ``copur demo``, ``copur predict``: a whole cluster on this
machine, and a client."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from copur.cli.common import CaFileOption
from copur.errors import ConfigError
from copur.operations.clikit import guard as _guard

if TYPE_CHECKING:
    from copur.operations.launcher import Cluster
    from copur.transport.topology import Topology

__all__ = ["demo", "down", "predict", "up"]


def up(
    config: Annotated[Path, typer.Option(help="Cluster topology file.")] = Path(
        "deploy/cluster.yaml"
    ),
    log_dir: Annotated[
        Path, typer.Option(help="Where each process logs, and the cluster state file.")
    ] = Path("runs/cluster"),
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every process to be ready.")
    ] = 180.0,
) -> None:
    """Start every process of the topology on this machine, wait until ready, watch them; Ctrl-C
    stops all."""

    def run() -> None:
        from copur.operations.launcher import Cluster
        from copur.transport.lifecycle import run_until_signal
        from copur.transport.topology import load_topology

        topology = load_topology(config)
        cluster = Cluster(topology, config_path=config, log_dir=log_dir)
        typer.echo(f"starting {len(cluster.procs)} processes (logs in {log_dir}/)", err=True)
        run_until_signal(_Watched(cluster, topology=topology, log_dir=log_dir, timeout=timeout))

    _guard(run)


class _Watched:
    """``copur up``'s service: start the cluster and report every process that exits while it runs
    (checked every 0.5 s, on a thread of its own); stopping stops every process."""

    def __init__(
        self, cluster: Cluster, *, topology: Topology, log_dir: Path, timeout: float
    ) -> None:
        self.cluster, self.topology, self.log_dir, self.timeout = (
            cluster,
            topology,
            log_dir,
            timeout,
        )
        self.state = log_dir / "cluster.json"
        self._done = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        cluster = self.cluster
        cluster.start(self.timeout)
        cluster.write_state(self.state)
        typer.echo(
            f"fusion center   {cluster.fusion_url}  (docs {cluster.fusion_url}/docs, gRPC "
            f"{cluster.fusion_grpc})"
        )
        for adv in self.topology.adversaries:
            typer.echo(f"adversary p{adv.party}    {cluster.control_url(adv.party)}/v1/policy")
        if self.topology.auth.mode == "keys":
            typer.echo(
                f"API keys        {self.topology.auth.keys_file} (development keys: its keys/ "
                "folder)"
            )
        typer.echo("cluster ready (Ctrl-C or `copur down` stops it)")
        self._watcher = threading.Thread(target=self._watch, name="copur-up-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._done.wait(0.5):
            for name, code in self.cluster.dead():
                log = self.log_dir / (name + ".log")
                typer.echo(f"process {name} exited with code {code} (log: {log})", err=True)

    def stop(self, grace: float = 1.0) -> None:
        self._done.set()
        if self._watcher is not None:
            self._watcher.join()
        self.cluster.stop()
        if self._watcher is not None:  # started: say so, and forget the state file
            self.state.unlink(missing_ok=True)
            typer.echo("cluster stopped", err=True)


def down(
    log_dir: Annotated[Path, typer.Option(help="The log directory `copur up` was given.")] = Path(
        "runs/cluster"
    ),
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
    config: Annotated[Path, typer.Option(help="Cluster topology file.")] = Path(
        "deploy/cluster.yaml"
    ),
    log_dir: Annotated[Path, typer.Option(help="Where each process logs.")] = Path("runs/demo"),
    samples: Annotated[int, typer.Option(help="How many samples to predict.")] = 200,
) -> None:
    """Bring the cluster up, predict, flip one party through the adversary, predict again, shut
    down."""

    def run() -> None:
        from copur.operations.demo import run_demo

        run_demo(config, log_dir=log_dir, samples=samples, say=typer.echo)

    _guard(run)


def predict(
    ids: Annotated[
        list[int], typer.Argument(help="Sample ids, e.g. `--ids 1 2 3` or just `1 2 3`.")
    ],
    _ids_marker: Annotated[
        bool, typer.Option("--ids", help="Optional marker: the sample ids follow.")
    ] = False,
    url: Annotated[
        str,
        typer.Option(help="Fusion center URL (https:// is verified with the CA, see --ca-file)."),
    ] = "https://127.0.0.1:8080",
    defense: Annotated[
        str | None, typer.Option(help="Defense (default: the fusion center's).")
    ] = None,
    certify: Annotated[bool, typer.Option(help="Ask for the defense's certificate.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the server's JSON instead of a table.")
    ] = False,
    grpc_target: Annotated[
        str | None, typer.Option("--grpc", help="Use gRPC at HOST:PORT instead of HTTP.")
    ] = None,
    tls_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="COPUR_TLS_DIR",
            help="With --grpc: mTLS with DIR/ca.pem, client.pem, client-key.pem; over HTTPS: "
            "DIR/ca.pem verifies the server (unless --ca-file).",
        ),
    ] = None,
    ca_file: CaFileOption = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="COPUR_API_KEY", help="API key with scope predict (sent as a Bearer token)."
        ),
    ] = None,
) -> None:
    """Ask the fusion center for predictions and print a table (or --json)."""
    from copur_client import GrpcTls, predict_command

    tls = GrpcTls.from_dir(tls_dir) if tls_dir is not None else None
    ca = ca_file or (tls_dir / "ca.pem" if tls_dir is not None else None)
    code, text = predict_command(
        url, list(ids), defense, certify, as_json, grpc_target, tls, api_key=api_key, ca_file=ca
    )
    typer.echo(text, err=code != 0)
    raise typer.Exit(code=code)
