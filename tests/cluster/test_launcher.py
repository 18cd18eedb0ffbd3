from pathlib import Path

import pytest
import yaml

from copur.launcher import Cluster, ClusterError
from copur.topology import load_topology


def test_a_process_that_dies_while_starting_is_reported_by_name(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "bundle": str(tmp_path / "no-bundle"),
                "parties": [{"index": 0, "port": 1}],
                "fusion": {"http_port": 2, "grpc_port": 3},
            }
        )
    )
    cluster = Cluster(load_topology(config, env={}), config_path=config, log_dir=tmp_path / "logs")

    with pytest.raises(ClusterError, match=r"party-0 exited with code 2 while starting: .*no-bundle does not exist"):
        cluster.start(timeout=60)

    assert all(p.popen is None or p.popen.poll() is not None for p in cluster.procs.values())


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "cluster.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "bundle": str(tmp_path / "bundle"),
                    "parties": [{"index": 0, "port": port}],
                    "fusion": {"http_port": port + 1 if port < 65535 else port - 1, "grpc_port": 1},
                }
            )
        )
        cluster = Cluster(load_topology(config, env={}), config_path=config, log_dir=tmp_path / "logs")

        with pytest.raises(ClusterError, match=rf"port {port} \(party 0\) on 127.0.0.1 is already in use"):
            cluster.start(timeout=5)

    assert all(p.popen is None for p in cluster.procs.values())  # nothing was launched
