"""The ``copur`` Typer application and what its commands share (help texts, logging set-up).

The command modules of :mod:`copur.cli` add their commands to :data:`app`; nothing runs at import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["TLS_DIR_HELP", "TLS_MODE_HELP", "CaFileOption", "app", "setup_logging"]

TLS_MODE_HELP = (
    "mtls: serve and dial with this service's certificate; plaintext: loopback --host only."
)
TLS_HTTP_HELP = (
    "https: serve the HTTP endpoint with this service's certificate (clients verify it with "
    "ca.pem); plaintext: loopback --host only. Default: https under --tls-mode mtls."
)
TLS_DIR_HELP = "Directory of `copur certs init` output (ca.pem, <service>.pem, <service>-key.pem)."
CaFileOption = Annotated[
    Path | None,
    typer.Option(
        envvar="COPUR_CA_FILE",
        help="CA that verifies an https:// --url (default: DIR/ca.pem of --tls-dir, else the "
        "system's trust store).",
    ),
]
"""``--ca-file`` of the commands that call an HTTPS front door."""

app = typer.Typer(
    name="copur",
    help="CoPur: robust collaborative inference. Train a model bundle, inspect it, serve and "
    "attack it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def setup_logging() -> None:
    """INFO logs with timestamps on stderr: what a served role writes."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
