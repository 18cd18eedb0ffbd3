"""``copur certs``: the development CA and per-service key pairs that mTLS on every gRPC link
needs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from copur.operations.clikit import guard

__all__ = ["certs_app"]

certs_app = typer.Typer(
    help="Certificates for mutual TLS between the cluster's services.", no_args_is_help=True
)


@certs_app.command("init")
def init(
    directory: Annotated[
        Path, typer.Argument(help="Where to write ca.pem, ca-key.pem and <service>[-key].pem.")
    ],
    topology: Annotated[
        list[Path] | None,
        typer.Option(
            help="Topology whose services get a key pair (repeat to cover several; default "
            "deploy/cluster.yaml)."
        ),
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option(help="Extra DNS name or IP address for every certificate (repeatable)."),
    ] = None,
    days: Annotated[
        int, typer.Option(help="Validity of the CA and every certificate, in days.")
    ] = 365,
    force: Annotated[
        bool,
        typer.Option(help="Replace an existing CA (every certificate issued by it stops working)."),
    ] = False,
) -> None:
    """Create a development CA and one key pair per service: party-<i>, adversary-<i>, fusion,
    and client (for applications calling the fusion center over gRPC). Keys are written 0600."""

    def run() -> None:
        from copur.transport.tls.certs import service_names, write_certs
        from copur.transport.topology import load_topology

        topologies = [load_topology(p) for p in topology or [Path("deploy/cluster.yaml")]]
        names = service_names(topologies)
        write_certs(directory, names, hosts=host or [], days=days, force=force)
        typer.echo(f"CA and {len(names)} key pairs written to {directory}/: {', '.join(names)}")

    guard(run)
