"""``copur compose ...``: the cluster in real containers on this machine (docker compose), built
offline: the image, the demo against the containers, the container faults table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from copur.operations.clikit import guard as _guard

__all__ = ["compose_app"]

compose_app = typer.Typer(
    help="The cluster in real containers: build the image offline, run the demo against a docker "
    "compose bring-up, measure container faults. Each command starts a docker engine when none "
    "answers (and stops only what it started) and takes down everything it brought up.",
    no_args_is_help=True,
)

Work = Annotated[
    Path, typer.Option(help="Where the certificates, bundle copy, logs and reports go.")
]
EngineRoot = Annotated[
    Path,
    typer.Option(
        help="Data root of a docker engine started here (images stay there between runs)."
    ),
]


@compose_app.command("image")
def image(
    work: Work = Path("runs/compose"),
    engine_root: EngineRoot = Path("runs/engine"),
) -> None:
    """Build the base image (debootstrap of Debian bookworm, `docker import`) unless present, fill
    deploy/docker/wheelhouse with pip, and build copur:latest with OFFLINE=1."""

    def run() -> None:
        from copur.operations.containers.engine import ensure_engine
        from copur.operations.containers.images import (
            build_base_image,
            build_image,
            fill_wheelhouse,
        )

        repo = Path.cwd()
        engine = ensure_engine(engine_root, say=typer.echo)
        try:
            build_base_image(engine, work_dir=engine_root / "base", say=typer.echo)
            fill_wheelhouse(repo, say=typer.echo)
            build_image(engine, repo, log=work / "build.log", say=typer.echo)
        finally:
            engine.stop()

    _guard(run)


@compose_app.command("demo")
def demo(
    work: Work = Path("runs/compose"),
    engine_root: EngineRoot = Path("runs/engine"),
    samples: Annotated[int, typer.Option(help="How many test samples the demo predicts.")] = 200,
) -> None:
    """Build, `docker compose up` with an adversary in front of every party
    (deploy/compose/attack-every-party.yml), wait for every healthcheck, run the demo's steps and
    the flip-one-party scenario from the host over the published ports, print the accuracies,
    take everything down. Exit 1 when an expectation of the scenario failed."""

    def run() -> int:
        from copur.evaluation.containers.runner import compose_demo

        return compose_demo(
            Path.cwd(), work=work, engine_root=engine_root, samples=samples, say=typer.echo
        )

    status = _guard(run)
    raise typer.Exit(code=status)


@compose_app.command("faults")
def faults(
    work: Work = Path("runs/compose-faults"),
    engine_root: EngineRoot = Path("runs/engine"),
    markdown: Annotated[
        Path | None,
        typer.Option(help="Write the fault table into this file, between its markers."),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Concurrent clients of the load.")] = 4,
) -> None:
    """Bring the default compose cluster up and, under a steady client load, kill, pause,
    disconnect, degrade the link of a party's container and restart the fusion container, one at
    a time; print what the client saw and the recovery time of each, write WORK/faults.json (and
    the table into --markdown), take everything down."""

    def run() -> None:
        from copur.evaluation.containers.runner import compose_faults

        compose_faults(
            Path.cwd(),
            work=work,
            engine_root=engine_root,
            markdown=markdown,
            concurrency=concurrency,
            say=typer.echo,
        )

    _guard(run)
