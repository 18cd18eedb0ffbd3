"""The topology's ``tls`` section: mTLS unless the file says plaintext, plaintext only on
loopback, env overrides, and a missing key pair named with the command that creates it; its
``http`` (HTTPS front doors unless written otherwise, plain HTTP only on loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from copur.errors import ConfigError
from copur.transport.tls.credentials import http_ca, https_for, identity_for, load_identity
from copur.transport.topology import is_loopback, load_topology

BASE = {
    "bundle": "b",
    "parties": [{"index": 0, "port": 50051}],
    "fusion": {"http_port": 8080, "grpc_port": 50050},
}


def _file(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({**BASE, **extra}))
    return path


def test_mtls_from_runs_certs_is_the_default(tmp_path: Path) -> None:
    # Execute
    tls = load_topology(_file(tmp_path), env={}).tls

    # Assert
    assert (tls.mode, tls.dir) == ("mtls", "runs/certs")


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.7", "::", "party-0"])
def test_plaintext_on_a_reachable_address_is_refused(tmp_path: Path, host: str) -> None:
    # Prepare
    path = _file(tmp_path, bind_host=host, tls={"mode": "plaintext"})

    # Execute
    with pytest.raises(ConfigError) as info:
        load_topology(path, env={})

    # Assert
    message = str(info.value)
    assert "\n" not in message
    assert (
        f"tls.mode plaintext with bind_host {host}: plaintext gRPC is for loopback only" in message
    )


def test_plaintext_by_environment_on_0_0_0_0_is_refused(tmp_path: Path) -> None:
    # Prepare: the file says mtls; the container environment tries to turn it off while binding
    # everywhere
    path = _file(tmp_path, tls={"mode": "mtls", "dir": "/certs"})
    env = {"COPUR_TLS_MODE": "plaintext", "COPUR_BIND_HOST": "0.0.0.0"}

    # Execute / Assert
    with pytest.raises(ConfigError, match="plaintext gRPC is for loopback only"):
        load_topology(path, env=env)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_plaintext_on_loopback_is_allowed(tmp_path: Path, host: str) -> None:
    # Execute
    topology = load_topology(_file(tmp_path, bind_host=host, tls={"mode": "plaintext"}), env={})

    # Assert
    assert topology.tls.mode == "plaintext"
    assert is_loopback(host)
    assert identity_for(topology, "fusion") is None


def test_environment_overrides_the_tls_section(tmp_path: Path) -> None:
    # Prepare
    path = _file(tmp_path, tls={"mode": "mtls", "dir": "runs/certs"})

    # Execute
    tls = load_topology(path, env={"COPUR_TLS_DIR": "/certs", "COPUR_TLS_MODE": "plaintext"}).tls
    partial = load_topology(_file(tmp_path), env={"COPUR_TLS_DIR": "/elsewhere"}).tls

    # Assert
    assert (tls.mode, tls.dir) == ("plaintext", "/certs")
    assert (partial.mode, partial.dir) == ("mtls", "/elsewhere")


def test_an_unknown_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tls\.mode"):
        load_topology(_file(tmp_path, tls={"mode": "tls"}), env={})


def test_mtls_with_missing_files_names_the_file_and_the_fix(tmp_path: Path, certs: Path) -> None:
    # Prepare: a complete set, then one service's key removed
    folder = tmp_path / "certs"
    folder.mkdir()
    for f in ("ca.pem", "fusion.pem"):
        (folder / f).write_bytes((certs / f).read_bytes())
    topology = load_topology(_file(tmp_path, tls={"mode": "mtls", "dir": str(folder)}), env={})

    # Execute
    with pytest.raises(ConfigError) as info:
        identity_for(topology, "fusion")

    # Assert
    assert (
        str(info.value)
        == f"TLS file {folder / 'fusion-key.pem'} is missing: run `copur certs init {folder}`"
    )


def test_a_relative_dir_is_taken_from_the_working_directory(
    tmp_path: Path, certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: like `bundle`, relative to where the process runs (the launcher's children inherit
    # it)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "certs").symlink_to(certs)
    topology = load_topology(_file(tmp_path), env={})
    monkeypatch.chdir(tmp_path)

    # Execute
    identity = identity_for(topology, "fusion")

    # Assert
    assert identity == load_identity(certs, "fusion")


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
