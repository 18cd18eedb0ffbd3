"""``copur keys``: create the API keys file and development keys, add keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from copur.operations.clikit import guard
from copur.transport.auth.keys import Scope

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="API keys of the fusion center and adversary HTTP/gRPC front doors (Authorization: "
    "Bearer).",
    no_args_is_help=True,
)


@keys_app.command("init")
def init(
    directory: Annotated[
        Path, typer.Argument(help="Where to write api-keys.json and keys/{predict,admin}.key.")
    ],
    force: Annotated[
        bool, typer.Option(help="Replace existing keys (every client must then use the new ones).")
    ] = False,
) -> None:
    """Write DIR/api-keys.json (hashes only) and one development key per scope in DIR/keys/ (mode
    0600)."""

    def run() -> None:
        from copur.transport.auth.devkeys import init_keys

        result = init_keys(directory, force=force)
        typer.echo(f"keys file {result.keys_file}")
        for scope, path in result.key_files.items():
            typer.echo(f"{scope:<8} key {path}")

    guard(run)


@keys_app.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="The keys file (created when missing).")],
    name: Annotated[
        str, typer.Argument(help="A name for the key (letters, digits, '.', '_', '-').")
    ],
    scope: Annotated[Scope, typer.Option(help="predict, or admin (which includes predict).")],
    rate: Annotated[
        float | None,
        typer.Option(help="Requests per second allowed (burst: twice that); default unlimited."),
    ] = None,
) -> None:
    """Create a key, append its hash to FILE and print the key: the only time it is shown."""

    def run() -> None:
        from copur.transport.auth.devkeys import add_key

        key = add_key(file, name, scope, rate)
        typer.echo(
            f"added key '{name}' (scope {scope}) to {file}; the key, shown only now:", err=True
        )
        typer.echo(key)

    guard(run)
