"""Data sets by name. Each loader maps a :class:`DatasetSpec` to a :class:`VerticalDataset`."""

from __future__ import annotations

from collections.abc import Callable

from copur.errors import DataError
from copur.science.data.base import VerticalDataset
from copur.science.data.digits import load_digits
from copur.science.data.extrasensory import load_extrasensory
from copur.science.data.mfeat import load_mfeat
from copur.science.data.nuswide import load_nus_wide
from copur.science.data.spec import DatasetSpec
from copur.science.data.table import load_csv

__all__ = ["DATASETS", "DatasetSpec", "VerticalDataset", "load_dataset"]

DATASETS: dict[str, Callable[[DatasetSpec], VerticalDataset]] = {
    "csv": load_csv,
    "digits": load_digits,
    "extrasensory": load_extrasensory,
    "mfeat": load_mfeat,
    "nus-wide": load_nus_wide,
}


def load_dataset(spec: DatasetSpec) -> VerticalDataset:
    """Load the data set ``spec`` names; an unknown name is a :class:`DataError` listing the
    known ones."""
    try:
        loader = DATASETS[spec.name]
    except KeyError:
        raise DataError(
            f"unknown data set '{spec.name}' (known: {', '.join(sorted(DATASETS))})"
        ) from None
    return loader(spec)
