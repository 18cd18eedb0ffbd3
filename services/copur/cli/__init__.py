"""The ``copur`` command line: the composition root, the one place that may import every layer.

One module per group of commands (:mod:`.model`, :mod:`.evaluate`, :mod:`.serve`,
:mod:`.cluster`, :mod:`.rollout`), registered here in the order ``copur --help`` lists them, plus
the sub-apps ``bench``, ``certs``, ``compose``, ``keys`` and ``scenario``. Domain errors print one
line and exit 2; nothing runs at import."""

from __future__ import annotations

import sys

import typer

from copur.cli import cluster, evaluate, model, rollout, serve
from copur.cli.common import app
from copur.cli.compose import compose_app
from copur.evaluation.bench.cli import bench_app
from copur.operations.certs_cli import certs_app
from copur.operations.keys_cli import keys_app

__all__ = ["app", "main"]

for _command in (
    model.train,
    model.info,
    model.calibrate,
    evaluate.evaluate,
    serve.party,
    serve.adversary,
    serve.fusion,
    serve.probe,
    cluster.up,
    cluster.down,
    cluster.demo,
    cluster.predict,
    rollout.rollout,
):
    app.command()(_command)

scenario_app = typer.Typer(
    help="Scripted attack scenarios against a running (or self-started) cluster.",
    no_args_is_help=True,
)
scenario_app.command("run")(evaluate.scenario_run)

app.add_typer(bench_app, name="bench")
app.add_typer(certs_app, name="certs")
app.add_typer(compose_app, name="compose")
app.add_typer(keys_app, name="keys")
app.add_typer(scenario_app, name="scenario")


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="copur")
