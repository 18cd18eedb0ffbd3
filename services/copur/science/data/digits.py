"""scikit-learn's 8x8 digits, one party per image quadrant (4 parties of 16 pixels)."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits as sk_load_digits

from copur.errors import DataError
from copur.science.data.base import VerticalDataset, stratified_split
from copur.science.data.spec import DatasetSpec

__all__ = ["load_digits"]

_QUADRANTS = (
    ("top-left", 0, 0),
    ("top-right", 0, 4),
    ("bottom-left", 4, 0),
    ("bottom-right", 4, 4),
)


def load_digits(spec: DatasetSpec) -> VerticalDataset:
    """Load the digits and cut each 8x8 image into its four 4x4 quadrants."""
    if spec.divisions:
        raise DataError("digits has one party per image quadrant; it takes no column division")
    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    features = tuple(
        np.ascontiguousarray(images[:, r : r + 4, c : c + 4].reshape(len(images), 16))
        for _, r, c in _QUADRANTS
    )
    train, test = stratified_split(labels, test_fraction=spec.test_fraction, seed=spec.seed)
    return VerticalDataset(
        name="digits",
        party_names=tuple(q for q, _, _ in _QUADRANTS),
        features=features,
        labels=labels,
        train_ids=train,
        test_ids=test,
        class_names=tuple(str(d) for d in range(10)),
    )
