"""Bring your own data: one CSV table, a label column, and a column division over the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from copur.errors import DataError
from copur.science.data.base import (
    VerticalDataset,
    parse_divisions,
    split_columns,
    stratified_split,
)
from copur.science.data.files import read_table
from copur.science.data.spec import DatasetSpec

__all__ = ["load_csv"]


def load_csv(spec: DatasetSpec) -> VerticalDataset:
    """Load ``data_dir`` (a CSV file with a header); the columns other than ``label`` are the
    features."""
    if spec.data_dir is None:
        raise DataError("csv needs --data-dir pointing at a CSV file")
    path = Path(spec.data_dir)
    frame = read_table(path, sep=",", header=0)
    label = spec.label or "label"
    if label not in frame.columns:
        raise DataError(
            f"{path}: no label column '{label}' (columns: "
            f"{', '.join(map(str, frame.columns[:8]))}...)"
        )
    if len(spec.divisions) != 1:
        raise DataError(
            "csv needs exactly one column division (e.g. --divisions '0 10 20'), got "
            f"{len(spec.divisions)}"
        )
    features = frame.drop(columns=[label])
    non_numeric = [
        str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
    ]
    if non_numeric:
        raise DataError(f"{path}: non-numeric feature column(s) {', '.join(non_numeric[:5])}")
    values = features.to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        raise DataError(f"{path}: feature table has empty or NaN cells")
    classes, labels = np.unique(frame[label].to_numpy(), return_inverse=True)
    bounds = parse_divisions(spec.divisions[0])
    blocks = split_columns(values, bounds, what=str(path))
    train, test = stratified_split(
        labels.astype(np.int64), test_fraction=spec.test_fraction, seed=spec.seed
    )
    return VerticalDataset(
        name="csv",
        party_names=tuple(f"party{k}" for k in range(len(blocks))),
        features=tuple(blocks),
        labels=labels.astype(np.int64),
        train_ids=train,
        test_ids=test,
        class_names=tuple(str(c) for c in classes),
        params={"label": label, "divisions": list(spec.divisions)},
    )
