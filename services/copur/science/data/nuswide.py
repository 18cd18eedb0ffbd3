"""NUS-WIDE in its published layout: low-level image features + Tags1k, top-k single-label
concepts.

Expected under ``data_dir`` (the ``NUS_WIDE`` folder of the download)::

    Groundtruth/AllLabels/Labels_<concept>.txt                 one 0/1 per image
    Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt
    Low_Level_Features/{Train,Test}_Normalized_{CH,CM55,CORR,EDH,WT}.dat   space separated
    NUS_WID_Tags/{Train,Test}_Tags1k.dat                        tab separated

The image table (CH, CM55, CORR, EDH, WT concatenated: 634 columns) is cut by the first division
(default ``0 360 634``), the tag table (1000 columns) by the second (default ``0 500 1000``).
Samples carrying exactly one of the selected concepts are kept; the published train/test split is
kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from copur.errors import DataError
from copur.science.data.base import VerticalDataset, parse_divisions, split_columns
from copur.science.data.files import read_table, require_dir
from copur.science.data.spec import DatasetSpec

__all__ = ["IMAGE_BLOCKS", "NUS_DEFAULT_DIVISIONS", "load_nus_wide"]

IMAGE_BLOCKS = ("CH", "CM55", "CORR", "EDH", "WT")
NUS_DEFAULT_DIVISIONS = ("0 360 634", "0 500 1000")
_TOP_K = 5


def _top_concepts(root: Path, k: int) -> list[str]:
    folder = root / "Groundtruth" / "AllLabels"
    if not folder.is_dir():
        raise DataError(f"nus-wide: missing folder {folder}")
    counts = {}
    for path in sorted(folder.glob("Labels_*.txt")):
        counts[path.stem.removeprefix("Labels_")] = int(
            read_table(path, sep=" ", header=None).iloc[:, 0].sum()
        )
    if len(counts) < k:
        raise DataError(f"nus-wide: {folder} has {len(counts)} concept files, need at least {k}")
    return [name for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def _part(root: Path, concepts: list[str], part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image table, tag table and labels of one published part (Train or Test), single-label rows
    only."""
    label_dir = root / "Groundtruth" / "TrainTestLabels"
    onehot = pd.concat(
        [
            read_table(label_dir / f"Labels_{c}_{part}.txt", sep=" ", header=None).iloc[:, :1]
            for c in concepts
        ],
        axis=1,
    ).to_numpy()
    keep = onehot.sum(axis=1) == 1
    images = [
        read_table(
            root / "Low_Level_Features" / f"{part}_Normalized_{b}.dat", sep=" ", header=None
        ).to_numpy()
        for b in IMAGE_BLOCKS
    ]
    tags = read_table(
        root / "NUS_WID_Tags" / f"{part}_Tags1k.dat", sep="\t", header=None
    ).to_numpy()
    rows = {len(onehot), len(tags), *(len(x) for x in images)}
    if len(rows) != 1:
        raise DataError(
            f"nus-wide {part}: label, image and tag files disagree on the number of rows: "
            f"{sorted(rows)}"
        )
    image = np.concatenate(images, axis=1)[keep]
    return (
        image.astype(np.float32),
        tags[keep].astype(np.float32),
        onehot[keep].argmax(axis=1).astype(np.int64),
    )


def load_nus_wide(spec: DatasetSpec) -> VerticalDataset:
    """Load the two published parts, keep single-label samples of the top concepts, cut into
    parties."""
    root = require_dir(spec.data_dir, dataset="nus-wide")
    divisions = spec.divisions or NUS_DEFAULT_DIVISIONS
    if len(divisions) != 2:
        raise DataError(f"nus-wide takes two column divisions (image, tags), got {len(divisions)}")
    concepts = spec.label.split(",") if spec.label else _top_concepts(root, _TOP_K)
    img_train, tag_train, y_train = _part(root, concepts, "Train")
    img_test, tag_test, y_test = _part(root, concepts, "Test")
    image_bounds, tag_bounds = parse_divisions(divisions[0]), parse_divisions(divisions[1])
    image = np.concatenate([img_train, img_test])
    tags = np.concatenate([tag_train, tag_test])
    blocks = split_columns(image, image_bounds, what="the NUS-WIDE image features")
    blocks += split_columns(tags, tag_bounds, what="the NUS-WIDE Tags1k table")
    names = tuple(f"image{k}" for k in range(len(image_bounds) - 1)) + tuple(
        f"tags{k}" for k in range(len(tag_bounds) - 1)
    )
    n_train = len(y_train)
    return VerticalDataset(
        name="nus-wide",
        party_names=names,
        features=tuple(blocks),
        labels=np.concatenate([y_train, y_test]),
        train_ids=np.arange(n_train, dtype=np.int64),
        test_ids=np.arange(n_train, n_train + len(y_test), dtype=np.int64),
        class_names=tuple(concepts),
        params={"concepts": concepts, "divisions": list(divisions)},
    )
