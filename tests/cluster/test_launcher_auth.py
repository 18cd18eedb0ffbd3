"""The launcher and the topology's ``auth``: adversaries get it as flags, every child the same
view in its environment, a missing keys file is refused by name before anything starts, and
the development keys beside the keys file are what self-starting commands use."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clusterkit import free_ports
from copur.operations.launcher import Cluster, ClusterError
from copur.transport.auth import init_keys
from copur.transport.topology import load_topology


def _config(tmp_path: Path, auth: dict[str, str]) -> Path:
    # Free ports, not fixed ones: a port in the ephemeral range may be some other test's client
    # socket, and the launcher refuses a taken port before it looks at the keys.
    ports = free_ports(6)
    config = tmp_path / "cluster.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "bundle": str(tmp_path / "bundle"),
                "parties": [{"index": 0, "port": ports[0]}, {"index": 1, "port": ports[1]}],
                "adversaries": [{"party": 1, "port": ports[2], "control_port": ports[3]}],
                "fusion": {"http_port": ports[4], "grpc_port": ports[5]},
                "tls": {"mode": "plaintext"},
                "auth": auth,
            }
        )
    )
    return config


def _cluster(tmp_path: Path, auth: dict[str, str]) -> Cluster:
    config = _config(tmp_path, auth)
    return Cluster(load_topology(config, env={}), config_path=config, log_dir=tmp_path / "logs")


def test_adversaries_and_every_child_get_the_topologys_auth(tmp_path: Path) -> None:
    # Execute
    cluster = _cluster(tmp_path, {"mode": "keys", "keys_file": "some/api-keys.json"})
    argv = cluster.procs["adversary-1"].argv
    # Assert
    assert argv[argv.index("--auth-mode") + 1] == "keys"
    assert argv[argv.index("--api-keys-file") + 1] == "some/api-keys.json"
    assert "--api-keys-file" not in cluster.procs["party-0"].argv  # parties serve no front door
    assert (cluster.env["COPUR_AUTH_MODE"], cluster.env["COPUR_API_KEYS_FILE"]) == (
        "keys",
        "some/api-keys.json",
    )


def test_a_missing_keys_file_is_refused_by_name_before_anything_starts(tmp_path: Path) -> None:
    # Prepare
    missing = tmp_path / "nowhere" / "api-keys.json"
    cluster = _cluster(tmp_path, {"mode": "keys", "keys_file": str(missing)})
    # Execute
    with pytest.raises(ClusterError) as info:
        cluster.start(timeout=5)
    # Assert
    assert str(info.value).startswith(f"API keys file {missing} does not exist")
    assert all(p.popen is None for p in cluster.procs.values())


def test_the_development_keys_beside_the_keys_file_are_found(tmp_path: Path) -> None:
    # Prepare
    made = init_keys(tmp_path / "certs")
    # Execute
    cluster = _cluster(tmp_path, {"mode": "keys", "keys_file": str(made.keys_file)})
    open_cluster = _cluster(tmp_path, {"mode": "none"})
    # Assert
    assert cluster.dev_key("predict") == made.key_files["predict"].read_text().strip()
    assert cluster.dev_key("admin") == made.key_files["admin"].read_text().strip()
    assert open_cluster.dev_key("predict") is None
