from pathlib import Path

import pytest
import yaml

from copur.operations.launcher import Cluster, ClusterError
from copur.transport.topology import load_topology


def test_a_process_that_dies_while_starting_is_reported_by_name(
    tmp_path: Path, tls_dir: Path
) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "bundle": str(tmp_path / "no-bundle"),
                "parties": [{"index": 0, "port": 1}],
                "fusion": {"http_port": 2, "grpc_port": 3},
                "tls": {"dir": str(tls_dir)},
                "auth": {"mode": "none"},
            }
        )
    )
    cluster = Cluster(load_topology(config, env={}), config_path=config, log_dir=tmp_path / "logs")

    with pytest.raises(
        ClusterError, match=r"party-0 exited with code 2 while starting: .*no-bundle does not exist"
    ):
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
        cluster = Cluster(
            load_topology(config, env={}), config_path=config, log_dir=tmp_path / "logs"
        )

        with pytest.raises(
            ClusterError, match=rf"port {port} \(party 0\) on 127.0.0.1 is already in use"
        ):
            cluster.start(timeout=5)

    assert all(p.popen is None for p in cluster.procs.values())  # nothing was launched


def _topology_file(tmp_path: Path, tls: dict[str, str]) -> Path:
    config = tmp_path / "cluster.yaml"
    ports = [_free_port() for _ in range(5)]
    config.write_text(
        yaml.safe_dump(
            {
                "bundle": str(tmp_path / "bundle"),
                "parties": [{"index": 0, "port": ports[0]}, {"index": 1, "port": ports[1]}],
                "adversaries": [{"party": 1, "port": ports[2], "control_port": ports[3]}],
                "fusion": {"http_port": ports[4], "grpc_port": 1},
                "tls": tls,
            }
        )
    )
    return config


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_missing_certificates_are_refused_by_name_before_anything_starts(tmp_path: Path) -> None:
    # Prepare: mtls (the default) over a directory without key pairs
    empty = tmp_path / "certs"
    config = _topology_file(tmp_path, {"mode": "mtls", "dir": str(empty)})
    cluster = Cluster(load_topology(config, env={}), config_path=config, log_dir=tmp_path / "logs")

    # Execute
    with pytest.raises(ClusterError) as info:
        cluster.start(timeout=5)

    # Assert
    assert (
        str(info.value) == f"TLS file {empty / 'ca.pem'} is missing: run `copur certs init {empty}`"
    )
    assert all(p.popen is None for p in cluster.procs.values())  # nothing was launched


@pytest.mark.parametrize("mode", ["mtls", "plaintext"])
def test_parties_and_adversaries_get_the_topologys_tls_flags(tmp_path: Path, mode: str) -> None:
    # Prepare
    config = _topology_file(tmp_path, {"mode": mode, "dir": "some/certs"})

    # Execute
    cluster = Cluster(load_topology(config, env={}), config_path=config, log_dir=tmp_path / "logs")
    argvs = {name: spec.argv for name, spec in cluster.procs.items()}

    # Assert: the fusion reads the same settings from the topology file it is given
    for name in ("party-0", "party-1", "adversary-1"):
        argv = argvs[name]
        assert argv[argv.index("--tls-mode") + 1] == mode, name
        assert argv[argv.index("--tls-dir") + 1] == "some/certs", name
    assert argvs["fusion"][-2:] == ["--config", str(config)]


def test_parties_and_adversaries_get_the_topologys_data_dir(tmp_path: Path) -> None:
    # Prepare: the adversaries read the data set's labels too (the donors of mimic by class, and of
    # sia)
    config = _topology_file(tmp_path, {"mode": "plaintext", "dir": "some/certs"})

    # Execute
    topology = load_topology(config, env={"COPUR_DATA_DIR": "/data/mine"})
    argvs = {
        name: spec.argv
        for name, spec in Cluster(topology, config_path=config, log_dir=tmp_path).procs.items()
    }

    # Assert
    for name in ("party-0", "party-1", "adversary-1"):
        argv = argvs[name]
        assert argv[argv.index("--data-dir") + 1] == "/data/mine", name
    assert "--data-dir" not in argvs["fusion"]
