"""docker compose for real: the image built offline, the default docker-compose.yml brought up,
predictions and a live adversary switch from the host, and faults done to real containers under a
steady client load (kill, start, pause, network disconnect, a lossy and a slow link inside a
container's network namespace, a restart of the fusion container)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from copur.evaluation.containers.faults import FaultResult, container_faults, run_faults
from copur.evaluation.containers.load import Load
from copur.evaluation.containers.runner import ComposeSession
from copur.operations.demo import demo_samples
from copur.science.bundle import load_bundle
from copur.transport.topology import load_topology
from copur_client import AdversaryControl, FusionClient, GrpcFusionClient, GrpcTls

pytestmark = pytest.mark.containers

REPO = Path(__file__).resolve().parents[2]

TOPOLOGY = load_topology(REPO / "deploy" / "cluster.yaml", env={})
URL = f"https://127.0.0.1:{TOPOLOGY.fusion.http_port}"  # HTTPS: tls.http follows mtls
GRPC = f"127.0.0.1:{TOPOLOGY.fusion.grpc_port}"
ADVERSARY = TOPOLOGY.adversaries[0]
CONTROL = f"https://127.0.0.1:{ADVERSARY.control_port}"
DEADLINE_MS = TOPOLOGY.fusion.deadline_ms


@pytest.fixture(scope="module")
def fusion(compose: ComposeSession) -> Iterator[FusionClient]:
    client = FusionClient(
        URL,
        timeout=60,
        api_key=compose.access.key("predict"),
        admin_key=compose.access.key("admin"),
        ca_file=compose.access.ca,
    )
    yield client
    client.close()


@pytest.fixture(scope="module")
def samples(compose: ComposeSession) -> tuple[list[int], np.ndarray]:
    return demo_samples(load_bundle(compose.access.bundle), 100)


def test_bring_up_completes_the_trainer_and_every_service_is_healthy(
    compose: ComposeSession, fusion: FusionClient
) -> None:
    # Execute
    state = {str(s["Service"]): s for s in compose.project.state()}
    parties = fusion.parties()

    # Assert
    assert state["trainer"]["State"] == "exited" and state["trainer"]["ExitCode"] == 0
    running = {name: s for name, s in state.items() if name != "trainer"}
    assert set(running) == {
        *(f"party-{p.index}" for p in TOPOLOGY.parties),
        f"adversary-{ADVERSARY.party}",
        "fusion",
    }
    for name, s in running.items():
        assert (s["State"], s["Health"]) == ("running", "healthy"), name
    assert [(p["index"], p["state"]) for p in parties] == [(i, "up") for i in range(6)]


def test_http_and_grpc_from_the_host_give_the_same_answers(
    compose: ComposeSession, fusion: FusionClient, samples: tuple[list[int], np.ndarray]
) -> None:
    # Prepare
    ids, labels = samples
    certs = compose.access.certs
    tls = GrpcTls(ca=certs / "ca.pem", cert=certs / "client.pem", key=certs / "client-key.pem")

    # Execute
    over_http = fusion.predict(ids)
    with GrpcFusionClient(GRPC, tls=tls, api_key=compose.access.key("predict")) as grpc_client:
        over_grpc = grpc_client.predict(ids)

    # Assert
    assert [p.label for p in over_http] == [p.label for p in over_grpc]
    assert np.mean([p.label for p in over_http] == labels) >= 0.95
    assert all(not p.missing_parties for p in over_http)


def test_an_adversary_switched_live_breaks_none_and_not_copur(
    compose: ComposeSession, fusion: FusionClient, samples: tuple[list[int], np.ndarray]
) -> None:
    # Prepare
    ids, labels = samples
    control = AdversaryControl(
        CONTROL, api_key=compose.access.key("admin"), ca_file=compose.access.ca
    )

    def accuracy(defense: str) -> float:
        return float(np.mean([p.label for p in fusion.predict(ids, defense=defense)] == labels))

    honest = {d: accuracy(d) for d in ("none", "copur")}

    # Execute
    control.set_policy("flip", amp=10)
    try:
        attacked = {d: accuracy(d) for d in ("none", "copur")}
        flagged = [ADVERSARY.party in p.flagged_parties for p in fusion.predict(ids)]
    finally:
        control.set_policy("none")
        control.close()

    # Assert
    assert honest["none"] >= 0.95 and honest["copur"] >= 0.95
    assert attacked["none"] <= 0.3
    assert attacked["copur"] >= 0.9
    assert np.mean(flagged) >= 0.9


@pytest.fixture(scope="module")
def faults(
    compose: ComposeSession, fusion: FusionClient, samples: tuple[list[int], np.ndarray]
) -> dict[str, FaultResult]:
    ids, _ = samples
    with Load(
        URL,
        api_key=compose.access.key("predict"),
        ids=ids,
        concurrency=4,
        ca_file=compose.access.ca,
    ) as load:
        results = run_faults(
            compose.project, container_faults(party=3), load, parties=fusion.parties
        )
    return {r.name: r for r in results}


@pytest.mark.parametrize("name", [f.name for f in container_faults()])
def test_a_container_fault_costs_no_error_and_heals(
    faults: dict[str, FaultResult], name: str
) -> None:
    # Execute
    result = faults[name]

    # Assert: the client saw no error (the fusion restart ridden across by its retries), no party
    # but the one hit went missing, and the cluster recovered
    assert result.requests > 0
    assert result.errors == 0, result.error_kinds
    assert set(result.missing_parties) <= ({result.party} if result.party is not None else set())
    assert result.recovery_s is not None and result.recovery_s < 60
    assert result.fusion_restarts == (1 if name == "fusion-restart" else 0)


@pytest.mark.parametrize("name", ["kill", "pause", "disconnect"])
def test_a_party_that_is_gone_is_reported_missing(
    faults: dict[str, FaultResult], name: str
) -> None:
    # Execute
    result = faults[name]

    # Assert
    assert result.missing_parties == [3]
    assert result.answers_with_missing > 0


def test_the_deadline_bounds_the_latency_of_a_paused_party(
    faults: dict[str, FaultResult],
) -> None:
    # Execute
    paused, baseline = faults["pause"], faults["baseline"]

    # Assert: a frozen party costs at most about one deadline per answer, never a hang
    assert paused.p99_ms <= 2 * DEADLINE_MS + 500
    assert baseline.p99_ms < DEADLINE_MS
    assert baseline.missing_parties == [] and baseline.errors == 0
