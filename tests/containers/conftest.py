"""The container tests: the real image, a real docker compose bring-up on a docker engine (started
here when none answers), the host calling the published ports. Marked ``containers``: `make test`
deselects them, `make test-containers` (the second step of .ci/run) runs them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from copur.evaluation.containers.runner import ComposeSession, compose_session

REPO = Path(__file__).resolve().parents[2]
PROJECT = "copur-test"


@pytest.fixture(scope="session")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeSession]:
    """The default docker-compose.yml up and healthy (project ``copur-test``); afterwards nothing
    of it is left on the engine and an engine started here is gone (checked)."""
    work = tmp_path_factory.mktemp("compose")
    engine_pid: int | None = None
    with compose_session(
        REPO, work=work, engine_root=REPO / "runs" / "engine", name=PROJECT
    ) as session:
        if session.engine.process is not None:
            engine_pid = session.engine.process.pid
        yield session
    # compose_session raised if a container, network or volume of the project was left
    if engine_pid is not None:
        assert not psutil.pid_exists(engine_pid), f"dockerd {engine_pid} still runs"
        assert not any(
            "dockerd" in (p.info["name"] or "")
            and str(REPO / "runs" / "engine") in " ".join(p.info["cmdline"] or [])
            for p in psutil.process_iter(["name", "cmdline"])
        )
