"""The pure parts of the container package: where an engine started here keeps its socket, the
compose binary found, what counts as left behind, the loss rules. (The real engine, images and
compose project are exercised by tests/containers.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from copur.operations.containers.compose import Leftovers, _loss_rule
from copur.operations.containers.engine import (
    DockerError,
    Engine,
    compose_command,
    run_tool,
    runtime_dir_for,
)


def test_an_engine_started_here_keeps_its_socket_short_and_unique_per_data_root(
    tmp_path: Path,
) -> None:
    # Prepare
    deep = tmp_path.joinpath(*["a-long-folder-name"] * 12)

    # Execute
    runtime, other = runtime_dir_for(deep), runtime_dir_for(tmp_path)

    # Assert: a unix socket path is limited to 107 bytes
    assert len(str(runtime / "docker.sock").encode()) < 60
    assert runtime != other and runtime == runtime_dir_for(deep)


def test_compose_v2_is_found_beside_this_python() -> None:
    # Execute
    argv = compose_command()

    # Assert
    version = subprocess.run([*argv, "version"], capture_output=True, text=True, check=True)
    assert "v2." in version.stdout


def test_a_failing_tool_is_one_line_naming_the_command() -> None:
    # Execute
    with pytest.raises(DockerError) as err:
        run_tool(["sh", "-c", "echo first >&2; echo 'no such container: x' >&2; exit 3"], env=None)

    # Assert
    message = str(err.value)
    assert message.startswith("`sh -c ") and message.endswith("` failed: no such container: x")
    assert "\n" not in message


def test_a_missing_tool_is_named() -> None:
    with pytest.raises(DockerError, match="no-such-tool-here not found"):
        run_tool(["no-such-tool-here"], env=None)


def test_an_engine_found_running_is_never_stopped() -> None:
    # Prepare
    engine = Engine(host="unix:///nonexistent.sock")

    # Execute
    engine.stop()

    # Assert
    assert not engine.started_here
    assert engine.env()["DOCKER_HOST"] == "unix:///nonexistent.sock"


@pytest.mark.parametrize(
    ("left", "truthy", "text"),
    [
        (Leftovers(containers=[], networks=[], volumes=[]), False, "nothing"),
        (
            Leftovers(containers=["c1"], networks=[], volumes=["v1", "v2"]),
            True,
            "containers: c1; volumes: v1, v2",
        ),
    ],
)
def test_leftovers_say_what_is_left(left: Leftovers, truthy: bool, text: str) -> None:
    assert bool(left) is truthy
    assert str(left) == text


def test_the_loss_rule_is_added_and_removed_with_the_same_match() -> None:
    # Execute
    add, delete = _loss_rule("-A", "INPUT", 0.3), _loss_rule("-D", "INPUT", 0.3)

    # Assert
    assert add[:4] == ["iptables", "-w", "-A", "INPUT"]
    assert add[4:] == delete[4:]
    assert add[add.index("--probability") + 1] == "0.300"
    assert add[-2:] == ["-j", "DROP"]
