from pathlib import Path

import numpy as np
import pytest

from copur.errors import DataError
from copur.science.data import DatasetSpec, load_dataset


def _write(path: Path, rows: int = 50) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 7))
    y = np.where(x[:, 0] > 0, "yes", "no")
    lines = [
        "a,b,c,d,e,f,g,label",
        *(",".join([*(f"{v:.5f}" for v in r), t]) for r, t in zip(x, y, strict=True)),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_divides_columns_and_encodes_labels(tmp_path: Path) -> None:
    path = _write(tmp_path / "table.csv")

    data = load_dataset(DatasetSpec(name="csv", data_dir=str(path), divisions=("0 3 7",)))

    assert data.party_dims == (3, 4)
    assert data.class_names == ("no", "yes")
    raw = np.loadtxt(path, delimiter=",", skiprows=1, usecols=range(7))
    np.testing.assert_allclose(data.features[1], raw[:, 3:7], rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"divisions": ("0 3 9",)}, "'0 3 9' does not fit .*7 columns"),
        ({"divisions": ("3 1",)}, "increasing"),
        ({"divisions": ()}, "exactly one column division"),
        ({"divisions": ("0 7",), "label": "target"}, "no label column 'target'"),
    ],
)
def test_csv_errors_name_the_problem(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = _write(tmp_path / "table.csv")

    with pytest.raises(DataError, match=message):
        load_dataset(DatasetSpec(name="csv", data_dir=str(path), **kwargs))


def test_missing_csv_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing file .*absent.csv"):
        load_dataset(
            DatasetSpec(name="csv", data_dir=str(tmp_path / "absent.csv"), divisions=("0 1",))
        )


def test_unknown_dataset_lists_known_ones() -> None:
    with pytest.raises(DataError, match="unknown data set 'imagenet' \\(known: csv, digits"):
        load_dataset(DatasetSpec(name="imagenet"))
