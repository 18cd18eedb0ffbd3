"""A party serving two bundles at once (a rolling upgrade) over real gRPC on loopback: Embed by
bundle id, PartyAdmin's LoadBundle / DropBundle / ListBundles, and who may call PartyAdmin under
mTLS."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from copur.roles.party import PartyApp
from copur.roles.party.bundles import HeldBundles
from copur.science.bundle import load_party, read_manifest
from copur.science.data import load_dataset
from copur.transport.tls.certs import write_certs
from copur.transport.tls.credentials import channel, load_identity
from copur_client.serde import (
    array_from_proto,
    array_to_proto,
    bundle_list_from_proto,
    embed_request,
    party_info_from_proto,
)
from copur_client.v1 import party_pb2, party_pb2_grpc

PARTY = 2
IDS = [5, 0, 1999]
UNKNOWN = "feedfacefeedface"


@dataclass
class Served:
    """A started party and stubs of both its services."""

    app: PartyApp
    party: party_pb2_grpc.PartyServiceStub
    admin: party_pb2_grpc.PartyAdminStub

    def load(self, path: Path) -> list[str]:
        reply = self.admin.LoadBundle(party_pb2.LoadBundleRequest(path=str(path)), timeout=60)
        return [b.bundle_id for b in bundle_list_from_proto(reply)]

    def drop(self, bundle_id: str) -> list[str]:
        reply = self.admin.DropBundle(party_pb2.DropBundleRequest(bundle_id=bundle_id), timeout=10)
        return [b.bundle_id for b in bundle_list_from_proto(reply)]

    def held(self) -> list[str]:
        reply = self.admin.ListBundles(party_pb2.ListBundlesRequest(), timeout=10)
        return [b.bundle_id for b in bundle_list_from_proto(reply)]

    def embed(self, bundle_id: str) -> tuple[np.ndarray, str]:
        reply = self.party.Embed(embed_request(IDS, bundle_id), timeout=10)
        assert reply.party == PARTY
        return array_from_proto(reply.embeddings), reply.bundle_id


def _expected(bundle_dir: Path, rows: np.ndarray) -> np.ndarray:
    """Party PARTY's extractor of ``bundle_dir`` on ``rows``."""
    _, extractor = load_party(bundle_dir, PARTY)
    with torch.no_grad():
        return extractor(torch.as_tensor(rows, dtype=torch.float32)).numpy()


def _refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


@pytest.fixture(scope="module")
def ids(mfeat_bundle_dir: Path, mfeat_next_bundle_dir: Path) -> tuple[str, str]:
    """(current, next): the two bundles' ids."""
    return (
        read_manifest(mfeat_bundle_dir).bundle_id,
        read_manifest(mfeat_next_bundle_dir).bundle_id,
    )


@pytest.fixture(scope="module")
def rows(mfeat_bundle_dir: Path) -> np.ndarray:
    """Party PARTY's features of IDS."""
    return load_dataset(read_manifest(mfeat_bundle_dir).dataset_spec).features[PARTY][IDS]


@pytest.fixture(scope="module")
def third_bundle_dir(mfeat_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The current bundle's files under another manifest (another ``created``): a third id."""
    out = tmp_path_factory.mktemp("bundle") / "mfeat-third"
    shutil.copytree(mfeat_bundle_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["created"] = "2000-01-01T00:00:00+00:00"
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture
def served(mfeat_bundle_dir: Path) -> Iterator[Served]:
    app = PartyApp(bundles=HeldBundles.from_bundle(mfeat_bundle_dir, PARTY)).start()
    chan = grpc.insecure_channel(f"127.0.0.1:{app.port}")
    yield Served(app, party_pb2_grpc.PartyServiceStub(chan), party_pb2_grpc.PartyAdminStub(chan))
    chan.close()
    app.stop()


def test_embed_without_an_id_or_with_the_current_one_answers_the_current_bundle(
    served: Served, ids: tuple[str, str], rows: np.ndarray, mfeat_bundle_dir: Path
) -> None:
    # Prepare
    current, _ = ids
    expected = _expected(mfeat_bundle_dir, rows)

    # Execute
    unnamed, unnamed_id = served.embed("")
    named, named_id = served.embed(current)

    # Assert
    assert (unnamed_id, named_id) == (current, current)
    np.testing.assert_allclose(unnamed, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(named, unnamed)


def test_a_loaded_bundle_answers_when_named_and_the_current_one_otherwise(
    served: Served,
    ids: tuple[str, str],
    rows: np.ndarray,
    mfeat_bundle_dir: Path,
    mfeat_next_bundle_dir: Path,
) -> None:
    # Prepare
    current, nxt = ids

    # Execute
    held = served.load(mfeat_next_bundle_dir)
    by_next, next_id = served.embed(nxt)
    unnamed, unnamed_id = served.embed("")
    features = served.party.EmbedFeatures(
        party_pb2.EmbedFeaturesRequest(features=array_to_proto(rows), bundle_id=nxt), timeout=10
    )

    # Assert
    assert held == [current, nxt]
    assert (next_id, unnamed_id, features.bundle_id) == (nxt, current, nxt)
    expected_next = _expected(mfeat_next_bundle_dir, rows)
    np.testing.assert_allclose(by_next, expected_next, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        array_from_proto(features.embeddings), expected_next, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(unnamed, _expected(mfeat_bundle_dir, rows), rtol=1e-5, atol=1e-5)
    assert not np.allclose(by_next, unnamed, atol=1e-3)


def test_a_bundle_not_held_is_failed_precondition_naming_those_held(
    served: Served, ids: tuple[str, str], rows: np.ndarray
) -> None:
    # Prepare
    current, _ = ids

    # Execute
    embed = _refused(lambda: served.embed(UNKNOWN))
    features = _refused(
        lambda: served.party.EmbedFeatures(
            party_pb2.EmbedFeaturesRequest(features=array_to_proto(rows), bundle_id=UNKNOWN),
            timeout=10,
        )
    )

    # Assert
    for err in (embed, features):
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.details() == f"party {PARTY} holds bundle(s) {current}, not {UNKNOWN}"


def test_info_names_the_current_bundle_and_every_one_held(
    served: Served, ids: tuple[str, str], mfeat_next_bundle_dir: Path
) -> None:
    # Prepare
    current, nxt = ids

    # Execute
    before = party_info_from_proto(served.party.Info(party_pb2.InfoRequest(), timeout=10))
    served.load(mfeat_next_bundle_dir)
    after = party_info_from_proto(served.party.Info(party_pb2.InfoRequest(), timeout=10))

    # Assert
    assert (before.bundle_id, before.bundles) == (current, (current,))
    assert (after.bundle_id, after.bundles) == (current, (current, nxt))
    assert (after.index, after.name, after.feature_dim, after.num_parties) == (PARTY, "kar", 64, 6)


def test_loading_a_held_bundle_again_changes_nothing(
    served: Served, ids: tuple[str, str], mfeat_bundle_dir: Path, mfeat_next_bundle_dir: Path
) -> None:
    # Prepare
    first = served.load(mfeat_next_bundle_dir)

    # Execute
    again = served.load(mfeat_next_bundle_dir)
    current_again = served.load(mfeat_bundle_dir)

    # Assert
    assert first == again == current_again == served.held() == list(ids)


def test_a_third_bundle_is_failed_precondition_and_changes_nothing(
    served: Served, ids: tuple[str, str], mfeat_next_bundle_dir: Path, third_bundle_dir: Path
) -> None:
    # Prepare
    current, nxt = ids
    served.load(mfeat_next_bundle_dir)

    # Execute
    err = _refused(lambda: served.load(third_bundle_dir))

    # Assert
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == (
        f"party {PARTY} holds 2 bundles already ({current}, {nxt}): drop one first"
    )
    assert served.held() == [current, nxt]


def test_dropping_the_current_bundle_makes_the_other_one_current(
    served: Served, ids: tuple[str, str], rows: np.ndarray, mfeat_next_bundle_dir: Path
) -> None:
    # Prepare
    current, nxt = ids
    served.load(mfeat_next_bundle_dir)

    # Execute
    held = served.drop(current)
    info = party_info_from_proto(served.party.Info(party_pb2.InfoRequest(), timeout=10))
    unnamed, unnamed_id = served.embed("")
    gone = _refused(lambda: served.embed(current))

    # Assert
    assert held == [nxt] == served.held()
    assert (info.bundle_id, info.bundles) == (nxt, (nxt,))
    assert unnamed_id == nxt
    np.testing.assert_allclose(
        unnamed, _expected(mfeat_next_bundle_dir, rows), rtol=1e-5, atol=1e-5
    )
    assert gone.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert gone.details() == f"party {PARTY} holds bundle(s) {nxt}, not {current}"


def test_dropping_the_last_or_an_unknown_bundle_is_failed_precondition(
    served: Served, ids: tuple[str, str]
) -> None:
    # Prepare
    current, _ = ids

    # Execute
    last = _refused(lambda: served.drop(current))
    unknown = _refused(lambda: served.drop(UNKNOWN))

    # Assert
    assert last.code() == unknown.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (last.details() or "").startswith(f"party {PARTY} would hold no bundle")
    assert unknown.details() == f"party {PARTY} holds bundle(s) {current}, not {UNKNOWN}"
    assert served.held() == [current]


@pytest.mark.parametrize("kind", ["missing", "not a bundle"])
def test_a_bad_path_is_invalid_argument_naming_it(
    served: Served, ids: tuple[str, str], tmp_path: Path, kind: str
) -> None:
    # Prepare
    path = tmp_path / "nowhere" if kind == "missing" else tmp_path

    # Execute
    err = _refused(lambda: served.load(path))

    # Assert
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.details() or ""
    assert str(path) in details and "\n" not in details
    assert served.held() == [ids[0]]


def test_a_load_and_a_drop_log_one_line_each(
    served: Served,
    ids: tuple[str, str],
    mfeat_bundle_dir: Path,
    mfeat_next_bundle_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare
    current, nxt = ids

    # Execute
    with caplog.at_level(logging.INFO, logger="copur.roles.party"):
        served.load(mfeat_next_bundle_dir)
        served.drop(current)

    # Assert
    lines = [r.getMessage() for r in caplog.records if "event=bundle_" in r.getMessage()]
    assert lines == [
        f"event=bundle_loaded party={PARTY} bundle={nxt} path={mfeat_next_bundle_dir} "
        f"current={current}",
        f"event=bundle_dropped party={PARTY} bundle={current} path={mfeat_bundle_dir} "
        f"current={nxt}",
    ]


def test_health_serves_party_admin(served: Served) -> None:
    # Prepare
    with grpc.insecure_channel(f"127.0.0.1:{served.app.port}") as chan:
        stub = health_pb2_grpc.HealthStub(chan)

        # Execute
        reply = stub.Check(health_pb2.HealthCheckRequest(service="copur.v1.PartyAdmin"), timeout=5)

    # Assert
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


# -- PartyAdmin under mTLS ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("party-admin-certs")
    write_certs(out, [f"party-{PARTY}", f"adversary-{PARTY}", "party-1", "fusion"])
    return out


@pytest.fixture(scope="module")
def mtls_party(mfeat_bundle_dir: Path, certs: Path) -> Iterator[PartyApp]:
    bundles = HeldBundles.from_bundle(mfeat_bundle_dir, PARTY)
    app = PartyApp(bundles=bundles, tls=load_identity(certs, f"party-{PARTY}")).start()
    yield app
    app.stop()


def _as(caller: str, app: PartyApp, certs: Path) -> grpc.Channel:
    target = f"127.0.0.1:{app.port}"
    options = [("grpc.use_local_subchannel_pool", 1)]
    return channel(
        target, load_identity(certs, caller), server_name=f"party-{PARTY}", options=options
    )


@pytest.mark.parametrize("caller", ["fusion", f"party-{PARTY}"])
def test_the_fusion_and_the_party_itself_may_call_party_admin(
    mtls_party: PartyApp, certs: Path, ids: tuple[str, str], caller: str
) -> None:
    # Prepare
    with _as(caller, mtls_party, certs) as chan:
        admin = party_pb2_grpc.PartyAdminStub(chan)

        # Execute
        reply = admin.ListBundles(party_pb2.ListBundlesRequest(), timeout=10)

    # Assert
    assert [b.bundle_id for b in bundle_list_from_proto(reply)] == [ids[0]]


@pytest.mark.parametrize("caller", [f"adversary-{PARTY}", "party-1"])
def test_an_adversary_slot_or_another_party_may_not_call_party_admin(
    mtls_party: PartyApp, certs: Path, ids: tuple[str, str], caller: str
) -> None:
    # Prepare
    with _as(caller, mtls_party, certs) as chan:
        admin = party_pb2_grpc.PartyAdminStub(chan)

        # Execute
        drop = _refused(
            lambda: admin.DropBundle(party_pb2.DropBundleRequest(bundle_id=ids[0]), timeout=10)
        )
        listing = _refused(lambda: admin.ListBundles(party_pb2.ListBundlesRequest(), timeout=10))

    # Assert
    for err in (drop, listing):
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert err.details() == (
            f"the admin of party {PARTY} serves fusion, party-{PARTY} only, not {caller}"
        )
    assert mtls_party.bundles.info().bundles == (ids[0],)


def test_the_adversary_slot_may_still_call_embed(
    mtls_party: PartyApp, certs: Path, ids: tuple[str, str]
) -> None:
    # Prepare
    with _as(f"adversary-{PARTY}", mtls_party, certs) as chan:
        stub = party_pb2_grpc.PartyServiceStub(chan)

        # Execute
        reply = stub.Embed(embed_request(IDS, ids[0]), timeout=10)

    # Assert
    assert (reply.party, reply.bundle_id) == (PARTY, ids[0])
    assert array_from_proto(reply.embeddings).shape == (len(IDS), 16)
