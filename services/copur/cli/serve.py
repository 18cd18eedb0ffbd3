"""``copur party``, ``copur adversary``, ``copur fusion``, ``copur probe``: serving one role,
probing one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from copur.cli.common import TLS_DIR_HELP, TLS_HTTP_HELP, TLS_MODE_HELP, setup_logging
from copur.errors import ConfigError
from copur.operations.clikit import guard as _guard

__all__ = ["adversary", "fusion", "party", "probe"]


def party(
    bundle: Annotated[
        Path, typer.Option(help="Model bundle directory (only this party's file is read).")
    ],
    party: Annotated[int, typer.Option("--party", help="This party's index.")],
    port: Annotated[int, typer.Option(help="gRPC port.")],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    data_dir: Annotated[str | None, typer.Option(help="Override the data set's directory.")] = None,
    max_ids: Annotated[
        int, typer.Option(help="Most sample ids one Embed call may ask for.")
    ] = 65536,
    tls_mode: Annotated[str, typer.Option(envvar="COPUR_TLS_MODE", help=TLS_MODE_HELP)] = "mtls",
    tls_dir: Annotated[Path, typer.Option(envvar="COPUR_TLS_DIR", help=TLS_DIR_HELP)] = Path(
        "runs/certs"
    ),
) -> None:
    """Serve one party: gRPC Embed over its own feature columns and extractor (mTLS as
    party-<i>)."""

    def run() -> None:
        from copur.roles.party import serve_party
        from copur.transport.tls.credentials import process_identity
        from copur.transport.topology import service_name

        tls = process_identity(tls_mode, tls_dir, service_name("party", party), host)
        setup_logging()
        serve_party(
            bundle=bundle,
            party=party,
            host=host,
            port=port,
            data_dir=data_dir,
            max_ids=max_ids,
            tls=tls,
        )

    _guard(run)


def adversary(
    upstream: Annotated[str, typer.Option(help="HOST:PORT of the real party it sits in front of.")],
    port: Annotated[int, typer.Option(help="gRPC port (the party protocol).")],
    bundle: Annotated[
        Path,
        typer.Option(
            help="Model bundle (head, AE and calibration for pgd/adaptive/sia; split for donors)."
        ),
    ],
    control_port: Annotated[
        int, typer.Option(help="HTTP control port (PUT/GET /v1/policy).")
    ] = 8091,
    party: Annotated[
        int | None, typer.Option(help="Index of the party it impersonates (default: ask upstream).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    policy: Annotated[
        str,
        typer.Option(
            help="Initial attack, without parameters: none, flip, noise, replace, zero, drop, pgd, "
            "adaptive, sia "
            "(runner-up, against a local simulation of the fusion center). mimic needs a donor (a "
            "sample id or "
            "a class): put it in force with PUT /v1/policy."
        ),
    ] = "none",
    data_dir: Annotated[
        str | None,
        typer.Option(help="Override the data set's directory (its labels pick mimic/sia donors)."),
    ] = None,
    tls_mode: Annotated[str, typer.Option(envvar="COPUR_TLS_MODE", help=TLS_MODE_HELP)] = "mtls",
    tls_dir: Annotated[Path, typer.Option(envvar="COPUR_TLS_DIR", help=TLS_DIR_HELP)] = Path(
        "runs/certs"
    ),
    tls_http: Annotated[
        str | None, typer.Option(envvar="COPUR_TLS_HTTP", help=TLS_HTTP_HELP)
    ] = None,
    auth_mode: Annotated[
        str,
        typer.Option(
            envvar="COPUR_AUTH_MODE", help="keys: the control endpoint demands an admin key; none."
        ),
    ] = "keys",
    api_keys_file: Annotated[
        Path,
        typer.Option(
            envvar="COPUR_API_KEYS_FILE", help="The API keys file ($COPUR_API_KEYS wins if set)."
        ),
    ] = Path("runs/certs/api-keys.json"),
) -> None:
    """Serve a compromised party: forward to the real one, corrupt its answers by a policy
    switched live (mTLS as adversary-<party> on both sides; the upstream must present
    party-<party>'s certificate; the control endpoint over HTTPS with the same certificate).
    mimic sends the party's own blocks of a donor sample (by id, or the lowest validation id of
    a class, fetched from the upstream): two adversaries given the same donor collude. sia aims
    at the runner-up class of a local simulation of the copur defense."""

    def run() -> None:
        from pydantic import ValidationError

        from copur.roles.adversary import AdversaryApp, Policy, serve_adversary
        from copur.roles.adversary.policy import policy_error
        from copur.transport.auth.guard import load_authenticator
        from copur.transport.tls.credentials import process_https, process_identity
        from copur.transport.topology import service_name

        http_mode = tls_http or ("https" if tls_mode == "mtls" else "plaintext")
        if party is None and (tls_mode != "plaintext" or http_mode != "plaintext"):
            raise ConfigError(
                "--party is required with mTLS or HTTPS: it picks the certificate adversary-<party>"
            )
        name = None if party is None else service_name("adversary", party)
        tls = process_identity(tls_mode, tls_dir, name, host)
        https = process_https(http_mode, tls_dir, name, host)

        try:
            initial = Policy(attack=policy)
        except ValidationError as exc:
            raise ConfigError(f"--policy: {policy_error(exc.errors())}") from None
        setup_logging()
        app = AdversaryApp(
            upstream=upstream,
            bundle=bundle,
            party=party,
            host=host,
            port=port,
            control_port=control_port,
            policy=initial,
            tls=tls,
            https=https,
            auth=load_authenticator(auth_mode, api_keys_file),
            data_dir=data_dir,
        )
        serve_adversary(app)

    _guard(run)


def fusion(
    config: Annotated[Path, typer.Option(help="Cluster topology file (e.g. deploy/cluster.yaml).")],
) -> None:
    """Serve the fusion center: HTTP (FastAPI) and gRPC front doors, batching, the defense
    worker."""

    def run() -> None:
        from copur.roles.fusion import serve_fusion

        setup_logging()
        serve_fusion(config)

    _guard(run)


def probe(
    grpc_target: Annotated[
        str | None, typer.Option("--grpc", help="HOST:PORT of a gRPC server.")
    ] = None,
    http_url: Annotated[str | None, typer.Option("--http", help="URL to GET.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 2.0,
    tls_dir: Annotated[
        Path | None,
        typer.Option(envvar="COPUR_TLS_DIR", help=TLS_DIR_HELP + " Plaintext when not given."),
    ] = None,
    tls_name: Annotated[
        str, typer.Option(help="Whose key pair the gRPC probe presents (with --tls-dir).")
    ] = "client",
) -> None:
    """Health probe for containers: exit 0 when grpc.health.v1 says SERVING, or the URL answers
    2xx (an https:// URL's certificate verified against DIR/ca.pem of --tls-dir, else the
    system's trust store)."""
    if grpc_target is None and http_url is None:
        typer.echo("error: give --grpc HOST:PORT or --http URL", err=True)
        raise typer.Exit(code=2)

    def check() -> bool:
        from copur.transport.probe import probe_grpc, probe_http
        from copur.transport.tls.credentials import load_identity

        tls = (
            load_identity(tls_dir, tls_name)
            if tls_dir is not None and grpc_target is not None
            else None
        )
        ca = None if tls_dir is None else tls_dir / "ca.pem"
        return (grpc_target is None or probe_grpc(grpc_target, timeout, tls)) and (
            http_url is None or probe_http(http_url, timeout, ca_file=ca)
        )

    raise typer.Exit(code=0 if _guard(check) else 1)
