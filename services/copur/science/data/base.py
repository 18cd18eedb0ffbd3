"""The vertically partitioned data set every loader returns, and helpers shared by loaders."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import train_test_split

from copur.errors import DataError

__all__ = ["VerticalDataset", "parse_divisions", "split_columns", "stratified_split"]


@dataclass(frozen=True)
class VerticalDataset:
    """Per-party feature matrices of the same samples, joined by row index (the sample id).

    ``features[i]`` is party i's float32 matrix of shape (num_samples, party_dims[i]);
    ``labels`` are int64 class indices; ``train_ids`` / ``test_ids`` index rows.
    """

    name: str
    party_names: tuple[str, ...]
    features: tuple[np.ndarray, ...]
    labels: np.ndarray
    train_ids: np.ndarray
    test_ids: np.ndarray
    class_names: tuple[str, ...]
    params: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if len(self.features) != len(self.party_names):
            raise DataError(
                f"{self.name}: {len(self.features)} feature blocks for {len(self.party_names)} "
                "parties"
            )
        for name, x in zip(self.party_names, self.features, strict=True):
            if x.ndim != 2 or x.shape[0] != n:
                raise DataError(f"{self.name}: party {name} has shape {x.shape}, expected ({n}, d)")

    @property
    def num_parties(self) -> int:
        """M, the number of parties (feature tables)."""
        return len(self.features)

    @property
    def num_samples(self) -> int:
        """The number of samples (rows shared by every party)."""
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        """The number of classes of the labels."""
        return len(self.class_names)

    @property
    def party_dims(self) -> tuple[int, ...]:
        """Each party's number of feature columns."""
        return tuple(int(x.shape[1]) for x in self.features)

    def party_rows(self, ids: np.ndarray) -> list[np.ndarray]:
        """Every party's feature rows for the given sample ids."""
        return [x[ids] for x in self.features]


def stratified_split(
    labels: np.ndarray, *, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train/test split of row indices (sorted within each part)."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test fraction {test_fraction} is not in (0, 1)")
    ids = np.arange(len(labels))
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    train, test = train_test_split(
        ids, test_size=test_fraction, random_state=seed, stratify=stratify
    )
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


def parse_divisions(divisions: Sequence[int] | str) -> tuple[int, ...]:
    """Parse a column division such as ``"0 360 634"`` into strictly increasing boundaries."""
    if isinstance(divisions, str):
        try:
            bounds = tuple(int(t) for t in divisions.replace(",", " ").split())
        except ValueError:
            raise DataError(f"column division {divisions!r} is not a list of integers") from None
    else:
        bounds = tuple(int(t) for t in divisions)
    if len(bounds) < 2 or bounds[0] < 0 or any(b >= a for b, a in itertools.pairwise(bounds)):
        shown = " ".join(str(b) for b in bounds)
        raise DataError(
            f"column division '{shown}' must be at least two increasing non-negative integers"
        )
    return bounds


def split_columns(matrix: np.ndarray, bounds: Sequence[int], *, what: str) -> list[np.ndarray]:
    """Cut ``matrix`` into column blocks [bounds[k], bounds[k+1]); the division must fit."""
    if bounds[-1] > matrix.shape[1]:
        shown = " ".join(str(b) for b in bounds)
        raise DataError(
            f"column division '{shown}' does not fit {what}: it has {matrix.shape[1]} columns"
        )
    return [
        np.ascontiguousarray(matrix[:, a:b], dtype=np.float32)
        for a, b in itertools.pairwise(bounds)
    ]
