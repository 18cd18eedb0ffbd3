"""The adversary in front of a real party holding two bundles: the bundle id a request names reaches
the party, and a corrupted answer names the bundle the party answered with, as an honest one
would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import torch

from adversary.support import PARTY
from copur.roles.adversary import AdversaryApp
from copur.roles.party import PartyApp
from copur.roles.party.bundles import HeldBundles
from copur.science.bundle import load_party, read_manifest
from copur.science.data import load_dataset
from copur_client.serde import array_from_proto, embed_request
from copur_client.v1 import party_pb2_grpc

IDS = [3, 0, 1500]


@pytest.fixture(scope="module")
def two_bundle_party(mfeat_bundle_dir: Path, mfeat_next_bundle_dir: Path) -> Iterator[PartyApp]:
    """Real party PARTY holding the mfeat bundle (current) and the next one."""
    bundles = HeldBundles.from_bundle(mfeat_bundle_dir, PARTY)
    bundles.load(mfeat_next_bundle_dir)
    app = PartyApp(bundles=bundles).start()
    yield app
    app.stop()


@pytest.fixture
def relay(
    two_bundle_party: PartyApp, mfeat_bundle_dir: Path
) -> Iterator[tuple[party_pb2_grpc.PartyServiceStub, httpx.Client]]:
    """An adversary in front of it: its PartyService stub and its control client."""
    app = AdversaryApp(upstream=f"127.0.0.1:{two_bundle_party.port}", bundle=mfeat_bundle_dir)
    app.start()
    chan = grpc.insecure_channel(f"127.0.0.1:{app.port}")
    with httpx.Client(base_url=f"http://127.0.0.1:{app.control_port}", timeout=30) as control:
        yield party_pb2_grpc.PartyServiceStub(chan), control
    chan.close()
    app.stop()


def _extracted(bundle_dir: Path) -> np.ndarray:
    """Party PARTY's extractor of ``bundle_dir`` on its features of IDS."""
    manifest, extractor = load_party(bundle_dir, PARTY)
    rows = load_dataset(manifest.dataset_spec).features[PARTY][IDS]
    with torch.no_grad():
        return extractor(torch.as_tensor(rows, dtype=torch.float32)).numpy()


def test_the_requested_bundle_reaches_the_party_and_an_honest_reply_names_it(
    relay, mfeat_next_bundle_dir: Path
) -> None:
    # Prepare
    stub, _ = relay
    nxt = read_manifest(mfeat_next_bundle_dir).bundle_id

    # Execute
    reply = stub.Embed(embed_request(IDS, nxt), timeout=30)

    # Assert: next's extractor answered, so the id reached the party
    assert reply.bundle_id == nxt
    np.testing.assert_allclose(
        array_from_proto(reply.embeddings), _extracted(mfeat_next_bundle_dir), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("which", ["current", "next", "unnamed"])
def test_a_corrupted_reply_keeps_the_bundle_id_the_party_answered_with(
    relay, mfeat_bundle_dir: Path, mfeat_next_bundle_dir: Path, which: str
) -> None:
    # Prepare
    stub, control = relay
    bundle_dir = mfeat_next_bundle_dir if which == "next" else mfeat_bundle_dir
    answered = read_manifest(bundle_dir).bundle_id
    asked = "" if which == "unnamed" else answered
    put = control.put("/v1/policy", json={"attack": "flip", "params": {"amp": 3}})

    # Execute
    reply = stub.Embed(embed_request(IDS, asked), timeout=30)

    # Assert
    assert put.status_code == 200, put.text
    assert reply.bundle_id == answered
    np.testing.assert_allclose(
        array_from_proto(reply.embeddings), -3 * _extracted(bundle_dir), rtol=1e-5, atol=1e-5
    )


def test_a_bundle_the_party_lacks_passes_its_failed_precondition_through(relay) -> None:
    # Prepare
    stub, _ = relay

    # Execute
    with pytest.raises(grpc.RpcError) as err:
        stub.Embed(embed_request(IDS, "feedfacefeedface"), timeout=30)

    # Assert
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not feedfacefeedface" in (err.value.details() or "")
