"""The fusion center's bundle administration end to end, against six real in-process parties and a
real fusion center: the admin scope on every ``/v1/admin`` route and on gRPC ``FusionAdmin``, the
status at start, a rolling upgrade and its rollback over HTTP and over gRPC, no answer mixing two
bundles while a switch happens under load, every refusal a one-line detail that changes nothing,
and a party serving a foreign bundle (missing with reason ``version``, never flagged).

Two fusion centers: ``door`` never switches (its history stays empty), ``upgrade_door`` runs the
upgrades. Every test leaves its fusion center as it found it: the old bundle held and active
alone, every party holding it alone and ``up`` (the ``api`` fixtures walk back to it and check)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import torch

from bundlekit import AdminApi, Keys, copy_bundle, detail, ok
from clusterkit import wait_for
from copur.science.bundle import Bundle, load_bundle, read_manifest
from copur.science.data import load_dataset
from copur.science.defenses import Engine
from copur_client.serde import bundles_status_from_proto
from copur_client.v1 import fusion_pb2, fusion_pb2_grpc
from copur_client.wire import BundleRef, BundlesStatus, PartyBundles
from frontdoor import FrontDoor, serve_front_door

NUM_PARTIES = 6
PARTIES = range(NUM_PARTIES)
FOREIGN = 3  # the party put on another bundle
UNKNOWN_ID = "0123456789abcdef"
PROB_TOL = 1e-3  # the same samples in other batches: float noise of the batched defense
OFFLINE_TOL = 1e-5  # the server's "none" defense against the same computation offline


@dataclass(frozen=True)
class Bundles:
    """The bundle the fusion centers start with (``old``) and the retrained one (``new``)."""

    old: str
    old_path: Path
    new: str
    new_path: Path


@pytest.fixture(scope="module")
def bundles(mfeat_bundle_dir: Path, mfeat_next_bundle_dir: Path) -> Bundles:
    old, new = read_manifest(mfeat_bundle_dir).bundle_id, read_manifest(mfeat_next_bundle_dir)
    assert old != new.bundle_id
    return Bundles(
        old=old, old_path=mfeat_bundle_dir, new=new.bundle_id, new_path=mfeat_next_bundle_dir
    )


@pytest.fixture(scope="module")
def ids(mfeat_bundle: Bundle) -> list[int]:
    """24 test samples."""
    return [int(i) for i in mfeat_bundle.test_ids[:24]]


@pytest.fixture(scope="module")
def door(mfeat_bundle_dir: Path, api_keys: Keys) -> Iterator[FrontDoor]:
    """The fusion center that never switches bundles."""
    with serve_front_door(mfeat_bundle_dir, keys_file=api_keys.keys_file) as running:
        yield running


@pytest.fixture(scope="module")
def upgrade_door(mfeat_bundle_dir: Path, api_keys: Keys) -> Iterator[FrontDoor]:
    """The fusion center the upgrades and rollbacks run on."""
    with serve_front_door(mfeat_bundle_dir, keys_file=api_keys.keys_file) as running:
        yield running


def _api(front: FrontDoor, api_keys: Keys, bundles: Bundles) -> Iterator[AdminApi]:
    """The admin API of ``front`` at the old bundle alone, walked back to it afterwards."""
    api = AdminApi(url=front.url, admin_key=api_keys.admin, predict_key=api_keys.predict)
    _check_baseline(api.restore(bundles.old_path, bundles.old), bundles)
    yield api
    _check_baseline(api.restore(bundles.old_path, bundles.old), bundles)


def _check_baseline(status: dict[str, Any], bundles: Bundles) -> None:
    assert status["active"] == bundles.old
    assert status["held"] == [{"bundle_id": bundles.old, "path": str(bundles.old_path)}]
    assert status["parties"] == [
        {"party": p, "bundles": [bundles.old], "state": "up"} for p in PARTIES
    ]


@pytest.fixture
def api(door: FrontDoor, api_keys: Keys, bundles: Bundles) -> Iterator[AdminApi]:
    yield from _api(door, api_keys, bundles)


@pytest.fixture
def upgrade_api(upgrade_door: FrontDoor, api_keys: Keys, bundles: Bundles) -> Iterator[AdminApi]:
    yield from _api(upgrade_door, api_keys, bundles)


def _by_id(predictions: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {p["sample_id"]: p for p in predictions}


def _assert_same_answer(got: dict[str, Any], want: dict[str, Any], tol: float = PROB_TOL) -> None:
    """``got`` is ``want`` (the reference of its bundle): label, flags, nobody missing,
    probabilities within ``tol``."""
    where = f"sample {got['sample_id']} on {got['bundle_id']}"
    assert got["bundle_id"] == want["bundle_id"], where
    assert got["label"] == want["label"], where
    assert got["flagged_parties"] == want["flagged_parties"], where
    assert got["missing_parties"] == [] and got["missing_reasons"] == [], where
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=tol, err_msg=where)


def _held(*refs: tuple[str, Path]) -> list[dict[str, str]]:
    return [{"bundle_id": b, "path": str(p)} for b, p in refs]


def _unstated(status: BundlesStatus) -> BundlesStatus:
    """``status`` without the parties' states (what the last Info probe saw: checked apart)."""
    parties = [dataclasses.replace(p, state="") for p in status.parties]
    return dataclasses.replace(status, parties=parties)


def _all_up(status: dict[str, Any]) -> bool:
    return all(p["state"] == "up" for p in status["parties"])


def _holding(status: dict[str, Any]) -> list[list[str]]:
    """What each party holds (current first), by the status."""
    return [p["bundles"] for p in status["parties"]]


# --- keys and scopes
# ---------------------------------------------------------------------------------------

ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/admin/bundles", None),
    ("POST", "/v1/admin/bundles", {"path": "/nowhere"}),
    ("POST", f"/v1/admin/bundles/{UNKNOWN_ID}/activate", {"quorum": 0, "wait_s": 0}),
    ("DELETE", f"/v1/admin/bundles/{UNKNOWN_ID}", None),
    ("POST", "/v1/admin/parties/0/bundles", {"path": "/nowhere"}),
    ("DELETE", f"/v1/admin/parties/0/bundles/{UNKNOWN_ID}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_admin_route_without_a_key_is_401(
    api: AdminApi, method: str, path: str, body: Any
) -> None:
    # Prepare
    before = api.settle(_all_up)
    # Execute
    response = httpx.request(method, f"{api.url}{path}", json=body, timeout=30)
    # Assert
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in detail(response)
    assert api.settle(lambda now: now == before) == before


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_admin_route_with_a_predict_key_is_403(
    api: AdminApi, api_keys: Keys, method: str, path: str, body: Any
) -> None:
    # Prepare
    before = api.settle(_all_up)
    # Execute
    response = httpx.request(
        method, f"{api.url}{path}", json=body, headers=api_keys.headers("predict"), timeout=30
    )
    # Assert
    assert response.status_code == 403, response.text
    assert detail(response) == "API key 'predict' lacks the 'admin' scope"
    assert api.settle(lambda now: now == before) == before


@pytest.mark.parametrize(
    ("scope", "code"),
    [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        ("predict", grpc.StatusCode.PERMISSION_DENIED),
        ("admin", grpc.StatusCode.OK),
    ],
)
def test_grpc_fusion_admin_needs_the_admin_scope(
    door: FrontDoor, api_keys: Keys, bundles: Bundles, scope: str | None, code: grpc.StatusCode
) -> None:
    # Prepare
    key = {None: None, "predict": api_keys.predict, "admin": api_keys.admin}[scope]
    metadata = () if key is None else (("authorization", f"Bearer {key}"),)
    # Execute
    with grpc.insecure_channel(door.grpc) as channel:
        stub = fusion_pb2_grpc.FusionAdminStub(channel)
        try:
            reply = stub.Bundles(fusion_pb2.BundlesRequest(), metadata=metadata, timeout=30)
            got, status = grpc.StatusCode.OK, bundles_status_from_proto(reply)
        except grpc.RpcError as exc:
            got, status = exc.code(), None
    # Assert
    assert got == code
    if code == grpc.StatusCode.OK:
        assert status is not None and status.active == bundles.old
    else:
        assert status is None


# --- the status
# ---------------------------------------------------------------------------------------


def test_at_start_the_one_bundle_is_active_and_every_party_serves_it(
    api: AdminApi, bundles: Bundles
) -> None:
    # Execute
    status = api.settle(_all_up)
    parties = api.parties()
    # Assert
    assert status == {
        "active": bundles.old,
        "held": _held((bundles.old, bundles.old_path)),
        "history": [],
        "parties": [{"party": p, "bundles": [bundles.old], "state": "up"} for p in PARTIES],
    }
    assert [(p["index"], p["state"], p["bundles"]) for p in parties] == [
        (p, "up", [bundles.old]) for p in PARTIES
    ]
    assert not any(p["ejected"] for p in parties)


def test_options_on_the_bundles_is_405_listing_get_and_post(api: AdminApi) -> None:
    # Execute
    response = api.call("OPTIONS", "/v1/admin/bundles")
    # Assert
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "GET, POST"
    detail(response)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/admin/bundles/abc", "DELETE"),
        ("GET", "/v2/models/copur/infer", "POST"),
        ("GET", "/v1/predict", "POST"),
    ],
)
def test_a_405_lists_every_method_of_its_path(
    api: AdminApi, method: str, path: str, allow: str
) -> None:
    # Execute
    response = api.call(method, path)
    # Assert: routes of the app and of its included routers alike
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow


# --- a rolling upgrade and its rollback
# ---------------------------------------------------------------------------------------


def _offline_probs(bundle_dir: Path, ids: list[int]) -> np.ndarray:
    """The ``none`` defense's probabilities of ``ids`` with every party's clean block, computed
    here from the bundle at ``bundle_dir`` (no server)."""
    bundle = load_bundle(bundle_dir)
    data = load_dataset(bundle.manifest.dataset_spec)
    rows = data.party_rows(np.asarray(ids))
    with torch.no_grad():
        h = bundle.models.embed([torch.as_tensor(x) for x in rows])
        observed = torch.ones(len(ids), bundle.manifest.num_parties, dtype=torch.bool)
        out = Engine(bundle).defense("none").predict(h, observed)
    return out.probs.float().numpy()


def _relay_all(api: AdminApi, op: Callable[[int], httpx.Response]) -> list[dict[str, Any]]:
    """``op`` on every party in turn (each a 200); the status after each."""
    return [ok(op(p)) for p in PARTIES]


def test_a_rolling_upgrade_and_its_rollback_over_http(
    upgrade_api: AdminApi, bundles: Bundles, ids: list[int]
) -> None:
    api, old, new = upgrade_api, bundles.old, bundles.new
    old_ref, new_ref = (old, bundles.old_path), (new, bundles.new_path)
    up = ["up"] * NUM_PARTIES
    # Prepare: the answers before
    start = api.status()
    before = _by_id(api.predict(ids))

    # Execute + Assert: the fusion center loads the next bundle beside the active one
    loaded = ok(api.load(bundles.new_path))
    assert loaded["active"] == old and loaded["held"] == _held(old_ref, new_ref)
    assert _holding(loaded) == [[old]] * NUM_PARTIES

    # ... every party loads it through the relay, its current one staying current
    relayed = _relay_all(api, lambda p: api.party_load(p, bundles.new_path))
    for p, status in enumerate(relayed):
        assert _holding(status) == [[old, new] if q <= p else [old] for q in PARTIES]
        assert status["active"] == old
    assert api.states() == up
    during = api.predict(ids)
    assert {p["bundle_id"] for p in during} == {old}
    for got in during:
        _assert_same_answer(got, before[got["sample_id"]])

    # ... the switch
    switched = ok(api.activate(new, {"quorum": 0, "wait_s": 10}))
    assert switched["active"] == new and switched["held"] == _held(new_ref, old_ref)
    assert switched["history"] == [*_held(old_ref), *start["history"]]
    assert _holding(switched) == [[old, new]] * NUM_PARTIES
    assert api.states() == up
    after = api.predict(ids)
    assert {p["bundle_id"] for p in after} == {new}
    assert all(p["missing_parties"] == [] and p["missing_reasons"] == [] for p in after)
    changed = [
        p["sample_id"]
        for p in after
        if not np.allclose(
            p["probabilities"], before[p["sample_id"]]["probabilities"], rtol=1e-3, atol=1e-12
        )
    ]
    assert len(changed) >= 0.9 * len(ids), f"only {changed} of {ids} answer otherwise"
    plain = api.predict(ids, defense="none")
    np.testing.assert_allclose(
        [p["probabilities"] for p in plain],
        _offline_probs(bundles.new_path, ids),
        atol=OFFLINE_TOL,
    )

    # ... the old bundle dropped by the parties, then by the fusion center
    dropped_at_parties = _relay_all(api, lambda p: api.party_drop(p, old))
    dropped = ok(api.drop(old))
    assert _holding(dropped_at_parties[-1]) == [[new]] * NUM_PARTIES
    assert dropped["active"] == new and dropped["held"] == _held(new_ref)
    assert _holding(dropped) == [[new]] * NUM_PARTIES
    assert api.states() == up
    assert {p["bundle_id"] for p in api.predict(ids)} == {new}

    # ... and the rollback, the same way back (activate without a body: all parties, 10 s)
    ok(api.load(bundles.old_path))
    _relay_all(api, lambda p: api.party_load(p, bundles.old_path))
    back = ok(api.activate(old))
    assert back["active"] == old and back["history"][:2] == _held(new_ref, old_ref)
    _relay_all(api, lambda p: api.party_drop(p, new))
    final = ok(api.drop(new))
    assert final["held"] == _held(old_ref) and _holding(final) == [[old]] * NUM_PARTIES
    assert api.states() == up
    for got in api.predict(ids):
        _assert_same_answer(got, before[got["sample_id"]])


def test_a_rolling_upgrade_and_its_rollback_over_grpc_fusion_admin(
    upgrade_door: FrontDoor,
    upgrade_api: AdminApi,
    api_keys: Keys,
    bundles: Bundles,
    ids: list[int],
) -> None:
    old, new = bundles.old, bundles.new
    old_ref = BundleRef(bundle_id=old, path=str(bundles.old_path))
    new_ref = BundleRef(bundle_id=new, path=str(bundles.new_path))
    metadata = (("authorization", f"Bearer {api_keys.admin}"),)

    def parties(held: list[str]) -> list[PartyBundles]:
        return [PartyBundles(party=p, bundles=held, state="") for p in PARTIES]

    with grpc.insecure_channel(upgrade_door.grpc) as channel:
        stub = fusion_pb2_grpc.FusionAdminStub(channel)

        def call(method: str, request: Any) -> BundlesStatus:
            reply = getattr(stub, method)(request, metadata=metadata, timeout=120)
            return _unstated(bundles_status_from_proto(reply))

        def relay(method: str, **fields: Any) -> BundlesStatus:
            for p in PARTIES:
                status = call(method, fusion_pb2.PartyBundleRequest(party=p, **fields))
            return status

        # Prepare
        start = call("Bundles", fusion_pb2.BundlesRequest())
        # Execute: the upgrade
        loaded = call("LoadBundle", fusion_pb2.BundlePathRequest(path=str(bundles.new_path)))
        relayed = relay("LoadPartyBundle", path=str(bundles.new_path))
        with pytest.raises(grpc.RpcError) as refused:
            stub.DropBundle(fusion_pb2.BundleIdRequest(bundle_id=old), metadata=metadata)
        switched = call("Activate", fusion_pb2.ActivateRequest(bundle_id=new, quorum=0, wait_s=10))
        upgraded, states_upgraded = upgrade_api.predict(ids), upgrade_api.states()
        parties_dropped = relay("DropPartyBundle", bundle_id=old)
        dropped = call("DropBundle", fusion_pb2.BundleIdRequest(bundle_id=old))
        # Execute: the rollback
        call("LoadBundle", fusion_pb2.BundlePathRequest(path=str(bundles.old_path)))
        relay("LoadPartyBundle", path=str(bundles.old_path))
        back = call("Activate", fusion_pb2.ActivateRequest(bundle_id=old, quorum=6, wait_s=10))
        relay("DropPartyBundle", bundle_id=new)
        final = call("DropBundle", fusion_pb2.BundleIdRequest(bundle_id=new))
        rolled_back, states_back = upgrade_api.predict(ids), upgrade_api.states()

    # Assert
    assert start.active == old and start.held == [old_ref] and start.parties == parties([old])
    assert loaded == BundlesStatus(
        active=old, held=[old_ref, new_ref], history=start.history, parties=parties([old])
    )
    assert relayed.parties == parties([old, new])
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details() == f"bundle {old} is the active one: activate another first"
    assert switched == BundlesStatus(
        active=new,
        held=[new_ref, old_ref],
        history=[old_ref, *start.history],
        parties=parties([old, new]),
    )
    assert {p["bundle_id"] for p in upgraded} == {new}
    assert states_upgraded == states_back == ["up"] * NUM_PARTIES
    assert parties_dropped.parties == parties([new])
    assert dropped.active == new and dropped.held == [new_ref]
    assert back.active == old and back.history[:2] == [new_ref, old_ref]
    assert final == BundlesStatus(
        active=old, held=[old_ref], history=back.history, parties=parties([old])
    )
    assert {p["bundle_id"] for p in rolled_back} == {old}


def test_no_answer_mixes_bundles_during_a_switch_under_load(
    upgrade_api: AdminApi, bundles: Bundles, ids: list[int]
) -> None:
    api, old, new = upgrade_api, bundles.old, bundles.new
    # Prepare: both bundles everywhere, the reference answers of the old one
    ok(api.load(bundles.new_path))
    _relay_all(api, lambda p: api.party_load(p, bundles.new_path))
    reference = {old: _by_id(api.predict(ids))}
    chunks = [ids[k : k + 5] for k in range(0, len(ids), 5)]
    lock, stop = threading.Lock(), threading.Event()
    answers: list[tuple[int, list[dict[str, Any]]]] = []  # (client, predictions) in order
    spans: list[tuple[float, float]] = []  # when each answered request was sent, answered
    errors: list[str] = []

    def client(n: int) -> None:
        with httpx.Client() as session:
            k = n
            while not stop.is_set():
                chunk, k = chunks[k % len(chunks)], k + 1
                sent = time.monotonic()
                try:
                    predictions = api.predict(chunk, client=session)
                except Exception as exc:  # every failure is a finding
                    with lock:
                        errors.append(f"client {n}: {exc!r}")
                    continue
                with lock:
                    answers.append((n, predictions))
                    spans.append((sent, time.monotonic()))

    # Execute: eight clients predicting while the switch happens
    with ThreadPoolExecutor(max_workers=8) as pool:
        running = [pool.submit(client, n) for n in range(8)]
        try:
            wait_for("answers before the switch", lambda: len(answers) >= 16, timeout=120)
            activating = time.monotonic()
            switched = ok(api.activate(new, {"quorum": 0, "wait_s": 10}))
            activated = time.monotonic()
            count = len(answers)
            wait_for("answers after the switch", lambda: len(answers) >= count + 16, timeout=120)
        finally:
            stop.set()
            for future in running:
                future.result()
    reference[new] = _by_id(api.predict(ids))

    # Assert
    assert errors == []
    assert switched["active"] == new
    assert any(sent < activated and answered > activating for sent, answered in spans)
    named = [{p["bundle_id"] for p in predictions} for _, predictions in answers]
    assert all(len(b) == 1 for b in named), "an answer names two bundles"
    assert {b for (b,) in named} == {old, new}
    for n in range(8):  # once a client got the new bundle, it never gets the old one again
        seen = [predictions[0]["bundle_id"] for c, predictions in answers if c == n]
        assert seen == sorted(seen, key=lambda b: b == new), f"client {n}: {seen}"
    for _, predictions in answers:
        for got in predictions:
            _assert_same_answer(got, reference[got["bundle_id"]][got["sample_id"]])


# --- refusals: one line each, nothing changed
# ---------------------------------------------------------------------------------------


def test_a_path_with_no_folder_is_404_naming_it(api: AdminApi, tmp_path: Path) -> None:
    # Prepare
    before, missing = api.settle(_all_up), tmp_path / "no-such-bundle"
    # Execute
    response = api.load(missing)
    # Assert
    assert response.status_code == 404, response.text
    assert str(missing) in detail(response)
    assert api.settle(lambda now: now == before) == before


def test_a_folder_that_is_not_a_bundle_is_409(api: AdminApi, tmp_path: Path) -> None:
    # Prepare
    before, folder = api.settle(_all_up), tmp_path / "empty"
    folder.mkdir()
    # Execute
    response = api.load(folder)
    # Assert
    assert response.status_code == 409, response.text
    assert str(folder) in detail(response)
    assert api.settle(lambda now: now == before) == before


def test_loading_the_held_bundle_again_or_an_identical_copy_changes_nothing(
    api: AdminApi, bundles: Bundles, tmp_path: Path
) -> None:
    # Prepare
    before = api.settle(_all_up)
    twin = copy_bundle(bundles.old_path, tmp_path / "twin")
    # Execute
    again = api.load(bundles.old_path)
    copied = api.load(twin)
    # Assert: the same id, so the same bundle: held once, from its first path
    assert again.status_code == 200 and again.json() == before
    assert copied.status_code == 200 and copied.json() == before
    assert before["held"] == _held((bundles.old, bundles.old_path))


def test_a_third_bundle_is_409(api: AdminApi, bundles: Bundles, tmp_path: Path) -> None:
    # Prepare: two held; a third one, the old bundle under another id
    third = copy_bundle(bundles.old_path, tmp_path / "third", created="2001-01-01T00:00:00+00:00")
    third_id = read_manifest(third).bundle_id
    assert third_id not in (bundles.old, bundles.new)
    before = ok(api.load(bundles.new_path))
    # Execute
    response = api.load(third)
    # Assert
    assert response.status_code == 409, response.text
    assert (
        detail(response) == f"2 bundles held already ({bundles.old}, {bundles.new}): drop one first"
    )
    assert api.settle(lambda now: now == before) == before


def test_dropping_the_active_bundle_is_409(api: AdminApi, bundles: Bundles) -> None:
    # Prepare
    before = api.settle(_all_up)
    # Execute
    response = api.drop(bundles.old)
    # Assert
    assert response.status_code == 409, response.text
    assert detail(response) == f"bundle {bundles.old} is the active one: activate another first"
    assert api.settle(lambda now: now == before) == before


@pytest.mark.parametrize("op", ["activate", "drop"])
def test_activating_or_dropping_a_bundle_not_held_is_409(
    api: AdminApi, bundles: Bundles, op: str
) -> None:
    # Prepare
    before = api.settle(_all_up)
    # Execute
    response = api.activate(bundles.new) if op == "activate" else api.drop(bundles.new)
    # Assert
    assert response.status_code == 409, response.text
    assert detail(response) == (
        f"bundle {bundles.new} is not held (held: {bundles.old}); load it first"
    )
    assert api.settle(lambda now: now == before) == before


def test_activating_a_bundle_no_party_serves_is_409_naming_them(
    api: AdminApi, bundles: Bundles
) -> None:
    # Prepare: held by the fusion center only
    before = ok(api.load(bundles.new_path))
    # Execute
    response = api.activate(bundles.new, {"quorum": 0, "wait_s": 0})
    # Assert
    assert response.status_code == 409, response.text
    assert detail(response) == (
        f"only 0 of 6 parties serve bundle {bundles.new} (6 needed); not serving it: "
        "0, 1, 2, 3, 4, 5"
    )
    after = api.settle(lambda now: now == before)
    assert after == before and after["active"] == bundles.old


def test_a_quorum_above_the_party_count_is_409(api: AdminApi, bundles: Bundles) -> None:
    # Prepare
    before = api.settle(_all_up)
    # Execute
    response = api.activate(bundles.old, {"quorum": 7, "wait_s": 0})
    # Assert
    assert response.status_code == 409, response.text
    assert detail(response) == "quorum 7: this cluster has 6 parties (0: all of them)"
    assert api.settle(lambda now: now == before) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"quorum": "x"}, "quorum"),
        ({"quorum": True}, "quorum"),
        ({"wait_s": "1"}, "wait_s"),
        ({"quorum": 0, "hurry": True}, "hurry"),
        ([0, 10], ""),
    ],
    ids=["quorum string", "quorum boolean", "wait_s string", "unknown field", "a list"],
)
def test_an_activate_body_of_the_wrong_shape_is_422(
    api: AdminApi, bundles: Bundles, body: Any, field: str
) -> None:
    # Prepare
    before = api.settle(_all_up)
    # Execute
    response = api.activate(bundles.old, body)
    # Assert
    assert response.status_code == 422, response.text
    assert field in detail(response)
    assert api.settle(lambda now: now == before) == before


@pytest.mark.parametrize("body", [{"path": 3}, {"path": ""}, {}, {"path": "/x", "id": "y"}])
def test_a_load_body_of_the_wrong_shape_is_422(api: AdminApi, body: Any) -> None:
    # Prepare
    before = api.settle(_all_up)
    # Execute
    response = api.call("POST", "/v1/admin/bundles", body)
    # Assert
    assert response.status_code == 422, response.text
    detail(response)
    assert api.settle(lambda now: now == before) == before


def test_a_party_relay_with_no_bundle_at_the_path_is_409_naming_the_party(
    api: AdminApi, tmp_path: Path
) -> None:
    # Prepare
    before, missing = api.settle(_all_up), tmp_path / "nowhere"
    # Execute
    response = api.party_load(2, missing)
    # Assert
    assert response.status_code == 409, response.text
    text = detail(response)
    assert text.startswith("party 2: ") and str(missing) in text
    assert api.settle(lambda now: now == before) == before


def test_dropping_a_partys_only_bundle_is_409(api: AdminApi, bundles: Bundles) -> None:
    # Prepare
    before = api.settle(_all_up)
    # Execute
    response = api.party_drop(2, bundles.old)
    # Assert
    assert response.status_code == 409, response.text
    assert detail(response) == (
        f"party 2: party 2 would hold no bundle: {bundles.old} is the only one it holds "
        "(load another first)"
    )
    assert api.settle(lambda now: now == before) == before


# --- a party on another bundle
# ---------------------------------------------------------------------------------------


def test_a_party_on_another_bundle_is_missing_for_version_never_flagged(
    api: AdminApi, bundles: Bundles, ids: list[int]
) -> None:
    party = str(FOREIGN)
    # Prepare: party 3 holds the next bundle only
    flags_before = api.metric("copur_party_flags_total", party=party)
    missing_before = api.metric("copur_party_missing_samples_total", party=party, reason="version")
    loaded = ok(api.party_load(FOREIGN, bundles.new_path))
    foreign = ok(api.party_drop(FOREIGN, bundles.old))
    foreign_states = ["version" if p == FOREIGN else "up" for p in PARTIES]
    settled = api.settle(lambda s: [p["state"] for p in s["parties"]] == foreign_states)
    # Execute
    predictions = api.predict(ids)
    parties = api.parties()
    # Assert
    assert loaded["parties"][FOREIGN]["bundles"] == [bundles.old, bundles.new]
    assert _holding(foreign) == [[bundles.new] if p == FOREIGN else [bundles.old] for p in PARTIES]
    assert [p["state"] for p in settled["parties"]] == foreign_states
    assert settled["active"] == bundles.old
    for p in predictions:
        assert p["bundle_id"] == bundles.old
        assert p["missing_parties"] == [FOREIGN] and p["missing_reasons"] == ["version"]
        assert FOREIGN not in p["flagged_parties"]
    assert {k: parties[FOREIGN][k] for k in ("state", "bundles", "missing_reason", "ejected")} == {
        "state": "version",
        "bundles": [bundles.new],
        "missing_reason": "version",
        "ejected": False,
    }
    assert all(q["state"] == "up" for q in parties if q["index"] != FOREIGN)
    missing = api.metric("copur_party_missing_samples_total", party=party, reason="version")
    assert missing - missing_before == len(ids)
    assert api.metric("copur_party_flags_total", party=party) == flags_before

    # Execute + Assert: back on the active bundle, party 3 is up and answers again
    ok(api.party_load(FOREIGN, bundles.old_path))
    ok(api.party_drop(FOREIGN, bundles.new))
    wait_for(
        "party 3 up again",
        lambda: api.parties()[FOREIGN]["state"] == "up",
        timeout=5,
    )
    for p in api.predict(ids):
        assert p["missing_parties"] == [] and p["bundle_id"] == bundles.old
