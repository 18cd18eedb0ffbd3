"""HeldBundles without gRPC: what it refuses, and concurrent loads of one bundle."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from copur.errors import BundleError
from copur.roles.party.bundles import HeldBundles
from copur.roles.party.core import PartyCore
from copur.science.bundle import read_manifest
from copur.science.models import PartyExtractor
from copur.transport.grpcutil import Conflict, InvalidRequest
from copur_client.wire import BundleRef, PartyInfo


def _tiny_core(index: int, *, num_parties: int) -> PartyCore:
    """A hand-built party (random 4 -> 3 extractor, 10 samples) of a bundle of ``num_parties``."""
    torch.manual_seed(index)
    info = PartyInfo(
        index=index,
        name=f"p{index}",
        feature_dim=4,
        emb_dim=3,
        dataset="tiny",
        num_samples=10,
        num_parties=num_parties,
    )
    return PartyCore(
        extractor=PartyExtractor(in_dim=4, hidden=8, emb_dim=3).eval(),
        features=np.ones((10, 4), np.float32),
        info=info,
        max_ids=100,
        bundle_id="0123456789abcdef",
        path="/bundles/tiny",
    )


def test_a_bundle_of_another_shape_is_refused_naming_its_path(mfeat_bundle_dir: Path) -> None:
    # Prepare: party 2 of a 3-party bundle; mfeat has 6
    held = HeldBundles(core=_tiny_core(2, num_parties=3), index=2, data_dir=None, max_ids=100)

    # Execute
    with pytest.raises(BundleError) as err:
        held.load(mfeat_bundle_dir)

    # Assert
    assert str(err.value) == (
        f"bundle {mfeat_bundle_dir} has 6 parties; party 2 serves bundles of 3"
    )
    assert held.refs() == [BundleRef(bundle_id="0123456789abcdef", path="/bundles/tiny")]


def test_an_index_the_bundle_lacks_is_refused_naming_its_path(mfeat_bundle_dir: Path) -> None:
    # Prepare
    held = HeldBundles(core=_tiny_core(7, num_parties=8), index=7, data_dir=None, max_ids=100)

    # Execute
    with pytest.raises(BundleError) as err:
        held.load(mfeat_bundle_dir)

    # Assert
    assert str(err.value) == f"bundle {mfeat_bundle_dir} has parties 0..5, not 7"


def test_an_empty_path_or_id_is_an_invalid_request() -> None:
    # Prepare
    held = HeldBundles(core=_tiny_core(1, num_parties=3), index=1, data_dir=None, max_ids=100)

    # Execute / Assert
    with pytest.raises(InvalidRequest):
        held.load("")
    with pytest.raises(InvalidRequest):
        held.drop("")


def test_an_empty_id_gets_the_current_bundle_and_an_unknown_one_is_a_conflict() -> None:
    # Prepare
    core = _tiny_core(1, num_parties=3)
    held = HeldBundles(core=core, index=1, data_dir=None, max_ids=100)

    # Execute
    got = held.get("")
    with pytest.raises(Conflict) as err:
        held.get("nope")

    # Assert
    assert got is core is held.current
    assert str(err.value) == "party 1 holds bundle(s) 0123456789abcdef, not nope"
    assert held.info().bundle_id == "0123456789abcdef"
    assert held.info().bundles == ("0123456789abcdef",)


def test_concurrent_loads_of_one_bundle_hold_it_once(
    mfeat_bundle_dir: Path, mfeat_next_bundle_dir: Path
) -> None:
    # Prepare
    held = HeldBundles.from_bundle(mfeat_bundle_dir, 2)
    results: list[list[BundleRef]] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            results.append(held.load(mfeat_next_bundle_dir))
        except BaseException as exc:  # any failure fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]

    # Execute
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    # Assert
    current = read_manifest(mfeat_bundle_dir).bundle_id
    nxt = read_manifest(mfeat_next_bundle_dir).bundle_id
    assert not errors
    assert [[r.bundle_id for r in refs] for refs in results] == [[current, nxt]] * 3
    assert held.current.bundle_id == current
