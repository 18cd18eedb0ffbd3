"""HTTPS on the HTTP front doors (the topology's ``tls.http``: tests/tls/test_topology_tls.py): a
role's ``--tls-http``, the background HTTP server serving HTTPS, probes and clients that verify it
against the cluster's CA, and a certificate that does not verify as one line, never retried."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from copur.errors import ConfigError
from copur.roles.adversary import AdversaryApp
from copur.transport.auth.devkeys import init_keys
from copur.transport.auth.guard import load_authenticator
from copur.transport.http_server import BackgroundHttpServer
from copur.transport.probe import probe_http
from copur.transport.tls.credentials import https_files, process_https
from copur_client import FusionClient, TlsError, Unavailable


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
