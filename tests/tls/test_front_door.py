"""The fusion center's gRPC front door under mTLS, the client library's ``tls`` option, and the
CLI's ``--tls-dir`` / ``--tls-mode`` flags (predict, probe, party, adversary)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from clusterkit import free_ports
from copur.cli import app
from copur.roles.fusion.grpc_api import fusion_grpc_server
from copur.transport.grpc_server import AioGrpcServer
from copur.transport.tls.credentials import load_identity
from copur_client import CopurClientError, GrpcFusionClient, GrpcTls, Unavailable, predict_command
from copur_client.wire import Prediction

PLAINTEXT = ["--tls-mode", "plaintext"]


class FakeHandler:
    """What the gRPC front door uses of FusionHandler (FusionService and the v2 servicer's
    model): label = sample id % 10."""

    node = SimpleNamespace(default_defense="copur")
    bundle = SimpleNamespace(manifest=SimpleNamespace(files={}, num_classes=10, num_parties=1))
    bundles = SimpleNamespace()  # FusionAdmin's (never called here)

    async def predict(self, ids: list[int], defense: str | None, certify: bool) -> list[Prediction]:
        return [
            Prediction(
                sample_id=i,
                label=i % 10,
                probabilities=[0.1] * 10,
                party_scores=[0.0],
                flagged_parties=[],
                missing_parties=[],
                defense=defense or "copur",
            )
            for i in ids
        ]

    def observe(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def front_door(certs: Path) -> Iterator[str]:
    """The real asyncio gRPC front door serving mTLS as ``fusion`` on 127.0.0.1 (in its own loop
    thread)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> AioGrpcServer:
        server = fusion_grpc_server(
            FakeHandler(),  # type: ignore[arg-type]
            "127.0.0.1:0",
            load_identity(certs, "fusion"),
            auth=None,
        )
        await server.start()
        await server.set_serving(True)
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    yield f"127.0.0.1:{server.port}"
    asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_client_with_the_client_key_pair_gets_predictions(front_door: str, certs: Path) -> None:
    # Execute
    with GrpcFusionClient(front_door, tls=GrpcTls.from_dir(certs)) as client:
        by_dataclass = client.predict([3, 14])
    paths = (certs / "ca.pem", certs / "client.pem", certs / "client-key.pem")
    with GrpcFusionClient(front_door, tls=paths) as client:
        by_tuple = client.predict([5])

    # Assert
    assert [p.label for p in by_dataclass] == [3, 4]
    assert [p.label for p in by_tuple] == [5]


def test_plaintext_client_is_refused(front_door: str) -> None:
    with GrpcFusionClient(front_door, timeout=5) as client, pytest.raises(Unavailable):
        client.predict([1])


def test_client_pinning_the_server_name_refuses_another_service(
    front_door: str, certs: Path
) -> None:
    # Prepare: the server holds the `fusion` certificate; the client insists on `party-0`
    tls = GrpcTls.from_dir(certs, server_name="party-0")

    # Execute / Assert
    with GrpcFusionClient(front_door, timeout=5, tls=tls) as client, pytest.raises(Unavailable):
        client.predict([1])


def test_a_missing_client_file_is_a_client_error_naming_it(front_door: str, tmp_path: Path) -> None:
    with pytest.raises(CopurClientError, match=f"cannot read TLS file {tmp_path / 'ca.pem'}"):
        GrpcFusionClient(front_door, tls=GrpcTls.from_dir(tmp_path))


def test_predict_command_over_mtls(front_door: str, certs: Path) -> None:
    # Execute
    code, text = predict_command(
        "http://unused", [7], None, False, True, front_door, GrpcTls.from_dir(certs)
    )

    # Assert
    assert code == 0, text
    assert '"label": 7' in text


def test_cli_predict_takes_tls_dir_from_flag_or_environment(front_door: str, certs: Path) -> None:
    # Execute
    runner = CliRunner()
    flag = runner.invoke(
        app, ["predict", "--grpc", front_door, "--tls-dir", str(certs), "--json", "2"], env={}
    )
    env = runner.invoke(
        app, ["predict", "--grpc", front_door, "--json", "8"], env={"COPUR_TLS_DIR": str(certs)}
    )
    plain = runner.invoke(
        app, ["predict", "--grpc", front_door, "--json", "8"], env={"COPUR_TLS_DIR": ""}
    )

    # Assert
    assert flag.exit_code == 0 and '"label": 2' in flag.output, flag.output
    assert env.exit_code == 0 and '"label": 8' in env.output, env.output
    assert (
        plain.exit_code == 2
        and plain.output.startswith("error: ")
        and "UNAVAILABLE" in plain.output
    )


def test_cli_probe_presents_the_named_key_pair(front_door: str, certs: Path) -> None:
    # Execute
    runner = CliRunner()
    mutual = runner.invoke(
        app,
        ["probe", "--grpc", front_door, "--tls-dir", str(certs), "--tls-name", "client"],
        env={},
    )
    plaintext = runner.invoke(app, ["probe", "--grpc", front_door, "--timeout", "3"], env={})
    missing = runner.invoke(
        app, ["probe", "--grpc", front_door, "--tls-dir", str(certs), "--tls-name", "nobody"]
    )

    # Assert
    assert mutual.exit_code == 0, mutual.output
    assert plaintext.exit_code == 1
    assert missing.exit_code == 2
    assert (
        missing.output.strip()
        == f"error: TLS file {certs / 'nobody.pem'} is missing: run `copur certs init {certs}`"
    )


def test_cli_party_refuses_plaintext_on_a_reachable_address(tmp_path: Path) -> None:
    # Execute
    result = CliRunner().invoke(
        app,
        [
            "party",
            "--bundle",
            str(tmp_path),
            "--party",
            "0",
            "--port",
            "1",
            "--host",
            "0.0.0.0",
            *PLAINTEXT,
        ],
        env={},
    )

    # Assert
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == "error: --tls-mode plaintext on 0.0.0.0: plaintext gRPC is for loopback addresses only"
    )


def test_cli_party_without_its_key_pair_fails_before_loading_anything(
    tmp_path: Path, certs: Path
) -> None:
    # Prepare: a CA but no party-3 key pair; the bundle does not exist either (checked later)
    folder = tmp_path / "certs"
    folder.mkdir()
    (folder / "ca.pem").write_bytes((certs / "ca.pem").read_bytes())

    # Execute
    result = CliRunner().invoke(
        app,
        [
            "party",
            "--bundle",
            str(tmp_path / "none"),
            "--party",
            "3",
            "--port",
            str(free_ports(1)[0]),
        ],
        env={"COPUR_TLS_DIR": str(folder)},
    )

    # Assert
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"error: TLS file {folder / 'party-3.pem'} is missing: run `copur certs init {folder}`"
    )


def test_cli_adversary_under_mtls_needs_its_party_index(tmp_path: Path) -> None:
    # Execute
    result = CliRunner().invoke(
        app,
        [
            "adversary",
            "--upstream",
            "127.0.0.1:1",
            "--port",
            str(free_ports(1)[0]),
            "--bundle",
            str(tmp_path),
        ],
        env={},
    )

    # Assert
    assert result.exit_code == 2
    expected = "--party is required with mTLS or HTTPS: it picks the certificate adversary-<party>"
    assert result.output.strip() == f"error: {expected}"
