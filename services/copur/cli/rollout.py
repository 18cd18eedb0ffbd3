"""``copur rollout``: a rolling upgrade of the model bundle of a running cluster, or its rollback,
through the fusion center's admin API (:mod:`copur.operations.rollout` walks it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from copur.cli.common import CaFileOption
from copur.errors import ConfigError
from copur.operations.clikit import guard as _guard

__all__ = ["rollout"]


def rollout(
    new_bundle: Annotated[
        str | None,
        typer.Argument(
            metavar="NEW_BUNDLE",
            help="Path of the new bundle, valid on the fusion center's and every party's host "
            "(compose: under the mounted /bundle folder). Required unless --rollback.",
            show_default=False,
        ),
    ] = None,
    rollback: Annotated[
        bool,
        typer.Option(
            "--rollback",
            help="Go back to the bundle served before (or drop the one of a rollout stopped "
            "midway) instead.",
        ),
    ] = False,
    quorum: Annotated[
        int,
        typer.Option(
            min=0,
            help="Parties that must serve the new bundle for the switch. 0: every party, and one "
            "that cannot load it undoes the rollout; N: the others may fail (a warning each).",
        ),
    ] = 0,
    wait: Annotated[
        float,
        typer.Option(
            min=0.0, help="Seconds the fusion center waits for the parties to show the bundle."
        ),
    ] = 30.0,
    url: Annotated[
        str,
        typer.Option(help="Fusion center URL (https:// is verified with the CA, see --ca-file)."),
    ] = "https://127.0.0.1:8080",
    tls_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="COPUR_TLS_DIR",
            help="Directory of `copur certs init` output: DIR/ca.pem verifies an https:// --url "
            "(unless --ca-file).",
        ),
    ] = None,
    ca_file: CaFileOption = None,
    admin_key: Annotated[
        str | None,
        typer.Option(
            envvar="COPUR_ADMIN_KEY", help="API key with scope admin (sent as a Bearer token)."
        ),
    ] = None,
) -> None:
    """Roll a new model bundle out to a running cluster without stopping it, or roll it back.

    The walk: (1) the fusion center loads NEW_BUNDLE beside the active bundle; (2) every party
    loads it beside its current one (the fusion center relays the call); (3) the fusion center
    switches once enough parties serve it (--quorum, waiting up to --wait seconds), batches
    already running finishing on the old bundle; (4) the parties, then (5) the fusion center,
    drop the old bundle. A failure before the switch is undone (the old bundle stays active);
    after it, a failed drop is a warning.

    NEW_BUNDLE is read by every process on its own host: the path must be valid on each of them
    (with compose: a path under the mounted /bundle folder). A process that restarts loads the
    topology's `bundle:`, not the rolled-out one: set it to NEW_BUNDLE too.

    --rollback goes back to the bundle served before by the same walk; after a rollout that
    stopped midway it drops the unfinished bundle instead. Errors print one line, exit 2."""
    from copur.operations.rollout import RolloutConfig, RolloutError
    from copur.operations.rollout import rollback as roll_back
    from copur.operations.rollout import rollout as roll_out
    from copur_client import CopurClientError, FusionClient

    def run() -> None:
        if rollback and new_bundle is not None:
            raise ConfigError("give NEW_BUNDLE or --rollback, not both")
        if not rollback and not new_bundle:
            raise ConfigError("NEW_BUNDLE is missing: give the new bundle's path, or --rollback")
        config = RolloutConfig(quorum=quorum, wait_s=wait)
        ca = ca_file or (tls_dir / "ca.pem" if tls_dir is not None else None)
        try:
            with FusionClient(url, admin_key=admin_key, ca_file=ca) as client:
                if new_bundle:
                    roll_out(client, new_bundle, config=config, say=typer.echo)
                else:
                    roll_back(client, config=config, say=typer.echo)
        except CopurClientError as exc:  # e.g. an unusable CA file: the walk wraps its own
            raise RolloutError(str(exc)) from None

    _guard(run)
