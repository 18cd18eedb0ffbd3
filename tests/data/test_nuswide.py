from pathlib import Path

import numpy as np
import pytest

from copur.errors import DataError
from copur.science.data import DatasetSpec, load_dataset
from layouts import NUS_CONCEPTS, write_nus_wide


@pytest.fixture
def nus_root(tmp_path: Path) -> Path:
    return write_nus_wide(tmp_path / "NUS_WIDE", n_train=60, n_test=30)


def _expected_single_label_rows(root: Path, part: str) -> int:
    cols = [
        np.loadtxt(root / "Groundtruth" / "TrainTestLabels" / f"Labels_{c}_{part}.txt", dtype=int)
        for c in NUS_CONCEPTS[:5]
    ]
    return int((np.stack(cols, axis=1).sum(axis=1) == 1).sum())


def test_loads_published_layout_with_paper_divisions(nus_root: Path) -> None:
    data = load_dataset(DatasetSpec(name="nus-wide", data_dir=str(nus_root)))

    assert data.party_dims == (360, 274, 500, 500)
    assert data.party_names == ("image0", "image1", "tags0", "tags1")
    assert data.class_names == NUS_CONCEPTS[:5]
    assert len(data.train_ids) == _expected_single_label_rows(nus_root, "Train")
    assert len(data.test_ids) == _expected_single_label_rows(nus_root, "Test")
    assert set(np.unique(data.features[2])) <= {0.0, 1.0}


def test_image_columns_follow_block_order(nus_root: Path) -> None:
    data = load_dataset(
        DatasetSpec(name="nus-wide", data_dir=str(nus_root), divisions=("0 64 634", "0 1000"))
    )
    first = np.loadtxt(nus_root / "Low_Level_Features" / "Train_Normalized_CH.dat")

    labels = np.stack(
        [
            np.loadtxt(
                nus_root / "Groundtruth" / "TrainTestLabels" / f"Labels_{c}_Train.txt", dtype=int
            )
            for c in NUS_CONCEPTS[:5]
        ],
        axis=1,
    )
    kept = first[labels.sum(axis=1) == 1]
    np.testing.assert_allclose(data.features[0][: len(kept)], kept, rtol=1e-6)


def test_division_that_does_not_fit_names_the_numbers(nus_root: Path) -> None:
    with pytest.raises(DataError, match="0 360 700.*634 columns"):
        load_dataset(
            DatasetSpec(
                name="nus-wide", data_dir=str(nus_root), divisions=("0 360 700", "0 500 1000")
            )
        )


def test_missing_file_is_named(nus_root: Path) -> None:
    (nus_root / "NUS_WID_Tags" / "Test_Tags1k.dat").unlink()

    with pytest.raises(DataError, match="missing file .*Test_Tags1k.dat"):
        load_dataset(DatasetSpec(name="nus-wide", data_dir=str(nus_root)))


def test_wrong_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(DatasetSpec(name="nus-wide", data_dir=str(tmp_path / "nope")))
