"""mimic and sia through the real adversary service: the control endpoint puts them in force (or
refuses them in one line, changing nothing), the adversary fetches the donor's block from its
upstream party over gRPC, and the gRPC proxy answers it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from adversary.support import PARTY, TableParty, embed
from copur.roles.adversary import AdversaryApp
from copur.science.bundle import Bundle
from copur.science.data import load_dataset
from copur_client.v1 import party_pb2_grpc

IDS = list(range(100, 130))


class CountingParty(TableParty):
    """Party ``PARTY`` over every sample of the data set; counts the Embed calls for each id
    list."""

    def __init__(self, table: np.ndarray) -> None:
        super().__init__(table)
        self.asked: list[list[int]] = []

    def Embed(self, request, context):
        self.asked.append(list(request.sample_ids))
        return super().Embed(request, context)


@pytest.fixture
def party(every_block: np.ndarray) -> Iterator[tuple[CountingParty, str]]:
    servicer = CountingParty(np.ascontiguousarray(every_block[:, PARTY]))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    party_pb2_grpc.add_PartyServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None).wait()


@pytest.fixture
def app(party: tuple[CountingParty, str], mfeat_bundle_dir: Path) -> Iterator[AdversaryApp]:
    adversary = AdversaryApp(upstream=party[1], bundle=mfeat_bundle_dir)
    adversary.start()
    yield adversary
    adversary.stop()


@pytest.fixture
def control(app: AdversaryApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{app.control_port}", timeout=60) as client:
        yield client


@pytest.fixture
def stub(app: AdversaryApp) -> Iterator[party_pb2_grpc.PartyServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield party_pb2_grpc.PartyServiceStub(channel)


def _donor_of(bundle: Bundle, cls: int) -> int:
    labels = load_dataset(bundle.manifest.dataset_spec).labels
    return int(min(i for i in bundle.val_ids if labels[i] == cls))


def test_mimic_by_class_answers_the_partys_block_of_the_class_donor(
    control: httpx.Client,
    stub,
    party: tuple[CountingParty, str],
    every_block: np.ndarray,
    mfeat_bundle: Bundle,
) -> None:
    # Prepare
    servicer, _ = party
    donor = _donor_of(mfeat_bundle, 3)

    # Execute
    put = control.put("/v1/policy", json={"attack": "mimic", "params": {"donor_class": 3}})
    out = embed(stub, IDS)
    got = control.get("/v1/policy").json()

    # Assert: the donor's block was fetched from the party once, when the policy was put in force
    assert put.status_code == 200, put.text
    assert put.json()["donors"] == [donor] and got["donors"] == [donor]
    assert (got["attack"], got["params"], got["calls"], got["corrupted"]) == (
        "mimic",
        {"donor_class": 3},
        1,
        1,
    )
    assert servicer.asked == [[donor], IDS]
    np.testing.assert_allclose(
        out, np.repeat(every_block[donor, PARTY][None], len(IDS), axis=0), atol=1e-6
    )


def test_mimic_by_id_with_a_factor_answers_the_blend(
    control: httpx.Client, stub, every_block: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="copur.roles.adversary"):
        put = control.put(
            "/v1/policy", json={"attack": "mimic", "params": {"donor": 1500, "factor": 0.5}}
        )
    out = embed(stub, IDS)
    metrics = control.get("/metrics").text

    honest = every_block[IDS, PARTY]
    assert put.status_code == 200, put.text
    np.testing.assert_allclose(
        out, honest + 0.5 * (every_block[1500, PARTY] - honest), rtol=1e-5, atol=1e-6
    )
    changes = [r.getMessage() for r in caplog.records if "event=policy_change" in r.getMessage()]
    assert len(changes) == 1 and changes[0].startswith("event=policy_change attack=mimic")
    assert changes[0].endswith("donors=1500")
    assert 'copur_adversary_corrupted_total{attack="mimic"} 1.0' in metrics
    assert "copur_adversary_donor_blocks_total 1.0" in metrics


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"donor": 1, "search": 8}, "parameter 'search' of attack 'mimic'"),
        ({"donor_class": 1, "nearest": True}, "parameter 'nearest' of attack 'mimic'"),
        ({"donor": 2000}, "parameter 'donor' must be a sample id 0..1999"),
        ({"donor_class": 10}, "parameter 'donor_class' must be a class index 0..9"),
        ({}, "needs exactly one of parameters 'donor'"),
        ({"donor": 4, "donor_class": 1}, "needs exactly one of parameters 'donor'"),
    ],
)
def test_a_refused_mimic_is_a_one_line_422_and_changes_nothing(
    control: httpx.Client, party: tuple[CountingParty, str], params: dict, named: str
) -> None:
    control.put("/v1/policy", json={"attack": "flip", "params": {"amp": 3}})

    put = control.put("/v1/policy", json={"attack": "mimic", "params": params})
    got = control.get("/v1/policy").json()

    assert put.status_code == 422
    detail = put.json()["detail"]
    assert isinstance(detail, str) and named in detail and "\n" not in detail
    assert (got["attack"], got["params"], got["donors"]) == ("flip", {"amp": 3}, [])
    assert party[0].asked == []


def test_sia_answers_donor_blocks_chosen_by_its_local_simulation(
    control: httpx.Client, stub, party: tuple[CountingParty, str], every_block: np.ndarray
) -> None:
    put = control.put("/v1/policy", json={"attack": "sia", "params": {"search": 4}})
    out = embed(stub, IDS)

    assert put.status_code == 200, put.text
    donors = put.json()["donors"]
    assert len(donors) == 10 and party[0].asked == [sorted(donors), IDS]
    honest = every_block[IDS, PARTY]
    moved = ~np.isclose(out, honest, atol=1e-6).all(axis=1)
    assert moved.all()
