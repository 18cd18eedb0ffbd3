from pathlib import Path

import pytest
import yaml

from copur.errors import ConfigError
from copur.transport.topology import load_topology

REPO = Path(__file__).resolve().parents[1]


def test_shipped_topology_and_env_overrides() -> None:
    local = load_topology(REPO / "deploy" / "cluster.yaml", env={})
    service = load_topology(
        REPO / "deploy" / "cluster.yaml", env={"COPUR_HOSTNAMES": "service", "COPUR_BUNDLE": "/b"}
    )

    assert local.num_parties == 6 and local.fusion_target(1) == "127.0.0.1:50061"
    assert local.fusion_target(0) == "127.0.0.1:50051"
    assert (
        service.fusion_target(1) == "adversary-1:50061"
        and service.party_address(1) == "party-1:50052"
    )
    assert service.bundle == "/b"


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (
            {"parties": [{"index": 0, "port": 1}, {"index": 2, "port": 2}]},
            "party indices must be 0..1",
        ),
        (
            {"parties": [{"index": 0, "port": 80}, {"index": 1, "port": 80}]},
            "port 80 is used twice",
        ),
        (
            {"adversaries": [{"party": 9, "port": 9, "control_port": 10}]},
            "party 9, which is not in the topology",
        ),
        ({"fusion": {"min_parties": 7}}, "min_parties 7 exceeds"),
        ({"fusion": {"http_port": "x"}}, "fusion.http_port"),
        ({"extra_key": 1}, "extra_key"),
    ],
)
def test_invalid_topologies_are_one_line_errors(tmp_path: Path, change: dict, text: str) -> None:
    raw = yaml.safe_load((REPO / "deploy" / "cluster.yaml").read_text()) | change
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw))

    with pytest.raises(ConfigError, match=text) as err:
        load_topology(path, env={})
    assert "\n" not in str(err.value)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("parties: [")

    with pytest.raises(ConfigError, match="does not exist"):
        load_topology(tmp_path / "nope.yaml", env={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_topology(tmp_path / "bad.yaml", env={})
