"""HTTPS on the HTTP front doors: the topology's ``tls.http`` (HTTPS under mtls, plain HTTP only
when written and only on loopback), the background HTTP server serving HTTPS, probes and clients
that verify it against the cluster's CA, and a certificate that does not verify as one line, never
retried."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi import FastAPI

from copur.errors import ConfigError
from copur.roles.adversary import AdversaryApp
from copur.transport.auth.devkeys import init_keys
from copur.transport.auth.guard import load_authenticator
from copur.transport.http_server import BackgroundHttpServer
from copur.transport.probe import probe_http
from copur.transport.tls.credentials import http_ca, https_files, https_for, process_https
from copur.transport.topology import load_topology
from copur_client import FusionClient, TlsError, Unavailable

BASE = {
    "bundle": "b",
    "parties": [{"index": 0, "port": 50051}],
    "fusion": {"http_port": 8080, "grpc_port": 50050},
}


def _file(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({**BASE, **extra}))
    return path


@pytest.mark.parametrize(
    ("tls", "https"),
    [
        ({}, True),  # mtls, the default: HTTPS
        ({"mode": "mtls", "http": "https"}, True),
        ({"mode": "plaintext"}, False),  # follows mode
        ({"mode": "plaintext", "http": "https"}, True),
        ({"mode": "mtls", "http": "plaintext"}, False),  # written, on loopback
    ],
)
def test_tls_http_follows_mode_unless_written(
    tmp_path: Path, tls: dict[str, str], https: bool
) -> None:
    # Execute
    topology = load_topology(_file(tmp_path, tls=tls), env={})

    # Assert
    assert topology.https is https
    assert topology.http_scheme == ("https" if https else "http")
    assert http_ca(topology) == (Path(topology.tls.dir) / "ca.pem" if https else None)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.7", "fusion"])
def test_plain_http_on_a_reachable_address_is_refused(tmp_path: Path, host: str) -> None:
    # Prepare
    path = _file(tmp_path, bind_host=host, tls={"mode": "mtls", "http": "plaintext"})

    # Execute
    with pytest.raises(ConfigError) as caught:
        load_topology(path, env={})

    # Assert
    assert "plain HTTP front doors are for loopback only" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_copur_tls_http_overrides_the_file(tmp_path: Path) -> None:
    # Execute
    topology = load_topology(_file(tmp_path), env={"COPUR_TLS_HTTP": "plaintext"})

    # Assert
    assert topology.https is False


def test_a_missing_key_pair_is_named_before_anything_binds(tmp_path: Path) -> None:
    # Prepare
    topology = load_topology(_file(tmp_path, tls={"dir": str(tmp_path / "none")}), env={})

    # Execute
    with pytest.raises(ConfigError) as caught:
        https_for(topology, "fusion")

    # Assert
    assert f"{tmp_path / 'none'}" in str(caught.value) and "copur certs init" in str(caught.value)


@pytest.mark.parametrize(
    ("mode", "host", "message"),
    [
        ("plaintext", "0.0.0.0", "plain HTTP is for loopback addresses only"),
        ("tls", "127.0.0.1", "--tls-http must be https or plaintext, not 'tls'"),
    ],
)
def test_process_https_refuses_what_it_must(
    certs: Path, mode: str, host: str, message: str
) -> None:
    # Execute
    with pytest.raises(ConfigError) as caught:
        process_https(mode, certs, "adversary-1", host)

    # Assert
    assert message in str(caught.value)


def test_an_adversary_off_loopback_without_https_is_refused(tmp_path: Path) -> None:
    # Prepare: API keys, so that HTTPS is what is missing
    auth = load_authenticator("keys", init_keys(tmp_path / "keys").keys_file)

    # Execute
    with pytest.raises(ConfigError) as caught:
        AdversaryApp(upstream="127.0.0.1:1", bundle=tmp_path, host="0.0.0.0", auth=auth)

    # Assert
    assert "without HTTPS" in str(caught.value)


@pytest.fixture(scope="module")
def https_server(certs: Path) -> Iterator[str]:
    """A FastAPI app on the background server with the ``fusion`` key pair of ``certs``."""
    app = FastAPI()

    @app.get("/readyz")
    def readyz() -> dict[str, bool]:
        return {"ready": True}

    @app.get("/metrics")
    def metrics() -> str:
        return "up 1"

    server = BackgroundHttpServer(
        app, host="127.0.0.1", name="https-under-test", https=https_files(certs, "fusion")
    )
    port = server.start()
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.stop()


def test_the_background_server_serves_https_that_the_cluster_ca_verifies(
    https_server: str, certs: Path, foreign_certs: Path
) -> None:
    # Execute
    verified = httpx.get(
        f"{https_server}/readyz", verify=ssl.create_default_context(cafile=str(certs / "ca.pem"))
    )
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{https_server.replace('https', 'http')}/readyz", timeout=5)

    # Assert: probes trust the cluster's CA only
    assert verified.json() == {"ready": True}
    assert probe_http(f"{https_server}/readyz", ca_file=certs / "ca.pem") is True
    assert probe_http(f"{https_server}/readyz", ca_file=foreign_certs / "ca.pem") is False
    assert probe_http(f"{https_server}/readyz") is False  # the system's store: not our CA
    assert probe_http(f"{https_server}/readyz", ca_file=certs / "missing.pem") is False


def test_the_client_verifies_the_server_and_fails_once_in_one_line(
    https_server: str, certs: Path, foreign_certs: Path
) -> None:
    # Prepare: ten retries would be spent on a refused connection; none on a TLS failure
    trusted = FusionClient(https_server, ca_file=certs / "ca.pem", retries=10)
    strangers = FusionClient(https_server, ca_file=foreign_certs / "ca.pem", retries=10)

    # Execute
    text = trusted.metrics()
    with pytest.raises(TlsError) as caught:
        strangers.metrics()
    with pytest.raises(TlsError) as unreadable:
        FusionClient(https_server, ca_file=certs / "missing.pem")
    trusted.close()
    strangers.close()

    # Assert
    assert "up 1" in text
    message = str(caught.value)
    assert "\n" not in message and "the server's certificate did not verify" in message
    assert "COPUR_CA_FILE" in message
    assert f"cannot use CA file {certs / 'missing.pem'}" in str(unreadable.value)


def test_a_handshake_cut_short_is_a_lost_connection_and_is_retried(certs: Path) -> None:
    # Prepare: a port that accepts and hangs up at once (a server restarting behind a proxy)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[int] = []

    def hang_up() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    url = f"https://127.0.0.1:{listener.getsockname()[1]}"

    # Execute
    with (
        FusionClient(url, ca_file=certs / "ca.pem", retries=2, backoff_s=0.01) as client,
        pytest.raises(Unavailable) as caught,
    ):
        client.metrics()
    listener.close()

    # Assert: not a TlsError (nothing is wrong with the certificates), and tried 1 + 2 times
    assert not isinstance(caught.value, TlsError)
    assert "connection lost" in str(caught.value) or "cannot connect" in str(caught.value)
    assert len(accepted) == 3
