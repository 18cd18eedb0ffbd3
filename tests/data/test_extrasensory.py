from pathlib import Path

import numpy as np
import pytest

from copur.errors import DataError
from copur.science.data import DatasetSpec, load_dataset
from layouts import write_extrasensory_user


@pytest.fixture
def es_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ExtraSensory"
    folder.mkdir()
    write_extrasensory_user(
        folder / "1155FF54-63D3-4AB2-9863-8385D0BD0A13.features_labels.csv.gz", rows=80, seed=1
    )
    write_extrasensory_user(
        folder / "0A986513-7828-4D53-AA1F-E02D6DF9561B.features_labels.csv.gz", rows=60, seed=2
    )
    return folder


def test_loads_user_files_with_paper_division(es_dir: Path) -> None:
    data = load_dataset(DatasetSpec(name="extrasensory", data_dir=str(es_dir)))

    assert data.party_dims == (26, 26, 31, 46, 9, 17, 28, 26, 4, 8)
    assert data.party_names[0] == "raw_acc0" and data.party_names[3] == "watch_acceleration3"
    # rows whose SITTING label is empty are dropped: every 17th row of each user
    assert data.num_samples == (80 - len(range(0, 80, 17))) + (60 - len(range(0, 60, 17)))
    assert data.num_classes == 2
    assert all(np.isfinite(x).all() for x in data.features)


def test_one_file_and_another_label(es_dir: Path) -> None:
    one = sorted(es_dir.iterdir())[0]

    data = load_dataset(
        DatasetSpec(name="extrasensory", data_dir=str(one), label="label:LYING_DOWN")
    )

    assert data.num_samples == 60
    assert data.class_names == ("not LYING_DOWN", "LYING_DOWN")


@pytest.mark.parametrize(
    ("spec_kwargs", "message"),
    [
        ({"label": "label:FLYING"}, "label column 'label:FLYING' not found"),
        ({"divisions": ("0 26 300",)}, "0 26 300.*225 columns"),
        ({"divisions": ("0 x",)}, "not a list of integers"),
    ],
)
def test_bad_arguments_are_one_line_errors(es_dir: Path, spec_kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_dataset(DatasetSpec(name="extrasensory", data_dir=str(es_dir), **spec_kwargs))


def test_folder_without_user_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no \\*.features_labels"):
        load_dataset(DatasetSpec(name="extrasensory", data_dir=str(tmp_path)))
