"""ExtraSensory in its published per-user layout: ``<uuid>.features_labels.csv[.gz]``.

Each file has ``timestamp``, the sensor feature columns, ``label:<ACTIVITY>`` columns (1, 0 or
empty) and ``label_source``. ``data_dir`` is one such file or a folder of them. The feature
columns, in file order, are cut into parties by the division (default the paper's ``0 26 52 83
129 138 155 183 209 213 221``: one party per sensor group). The task is binary: the activity
named by ``label`` (default ``label:SITTING``); rows where it is unknown are dropped, missing
feature values are filled with the training mean."""

from __future__ import annotations

import warnings
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
from copur.science.data.files import read_table, require_file
from copur.science.data.spec import DatasetSpec

__all__ = ["EXTRASENSORY_DEFAULT_DIVISION", "EXTRASENSORY_DEFAULT_LABEL", "load_extrasensory"]

EXTRASENSORY_DEFAULT_DIVISION = "0 26 52 83 129 138 155 183 209 213 221"
EXTRASENSORY_DEFAULT_LABEL = "label:SITTING"


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"extrasensory: {path} is neither a file nor a directory")
    found = sorted(path.glob("*.features_labels.csv")) + sorted(
        path.glob("*.features_labels.csv.gz")
    )
    if not found:
        raise DataError(f"extrasensory: no *.features_labels.csv[.gz] file in {path}")
    return found


def _read(path: Path) -> pd.DataFrame:
    frame = read_table(require_file(path), sep=",", header=0)
    if "timestamp" not in frame.columns:
        raise DataError(
            f"extrasensory: {path} has no 'timestamp' column; is it a features_labels file?"
        )
    return frame


def load_extrasensory(spec: DatasetSpec) -> VerticalDataset:
    """Load every user file, keep rows with a known target label, impute and cut into sensor
    parties."""
    if spec.data_dir is None:
        raise DataError(
            "extrasensory needs --data-dir pointing at a features_labels file or folder"
        )
    frames = [_read(p) for p in _files(Path(spec.data_dir))]
    frame = pd.concat(frames, ignore_index=True)
    target = spec.label or EXTRASENSORY_DEFAULT_LABEL
    if target not in frame.columns:
        raise DataError(f"extrasensory: label column '{target}' not found in {spec.data_dir}")
    feature_cols = [
        c
        for c in frame.columns
        if c != "timestamp" and c != "label_source" and not c.startswith("label:")
    ]
    frame = frame[frame[target].notna()]
    if frame.empty:
        raise DataError(f"extrasensory: no row has a value for '{target}'")
    labels = frame[target].to_numpy().astype(np.int64)
    values = frame[feature_cols].to_numpy(dtype=np.float64)
    train, test = stratified_split(labels, test_fraction=spec.test_fraction, seed=spec.seed)
    # Fill missing sensor readings with the training mean (0 where a column is never observed).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nan_to_num(np.nanmean(values[train], axis=0))
    values = np.where(np.isnan(values), means, values)
    divisions = spec.divisions or (EXTRASENSORY_DEFAULT_DIVISION,)
    if len(divisions) != 1:
        raise DataError(f"extrasensory takes one column division, got {len(divisions)}")
    bounds = parse_divisions(divisions[0])
    blocks = split_columns(
        values, bounds, what=f"the ExtraSensory feature columns of {spec.data_dir}"
    )
    names = tuple(feature_cols[a].split(":")[0] + f"{k}" for k, a in enumerate(bounds[:-1]))
    return VerticalDataset(
        name="extrasensory",
        party_names=names,
        features=tuple(blocks),
        labels=labels,
        train_ids=train,
        test_ids=test,
        class_names=(f"not {target.removeprefix('label:')}", target.removeprefix("label:")),
        params={"label": target, "divisions": list(divisions)},
    )
