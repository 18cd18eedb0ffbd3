"""UCI Multiple Features, embedded: 2000 digits, six views, one party per view (see
PROVENANCE.md)."""

from __future__ import annotations

import hashlib
import io
from importlib import resources

import numpy as np

from copur.errors import DataError
from copur.science.data.base import VerticalDataset, stratified_split
from copur.science.data.spec import DatasetSpec

__all__ = ["MFEAT_SHA256", "MFEAT_VIEWS", "load_mfeat"]

MFEAT_SHA256 = "75d7bfe9511c9ed1d3854a835b332454ee831a3d1986d0bce8f3df22feb380bb"
MFEAT_VIEWS = ("fou", "fac", "kar", "pix", "zer", "mor")


def load_mfeat(spec: DatasetSpec) -> VerticalDataset:
    """Load the embedded file, verify its checksum, split it (stratified, seeded)."""
    if spec.divisions:
        raise DataError("mfeat has one party per view; it takes no column division")
    raw = resources.files("copur.science.data").joinpath("mfeat.npz").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MFEAT_SHA256:
        raise DataError(
            f"embedded mfeat.npz has sha256 {digest}, expected {MFEAT_SHA256}: the package is "
            "corrupt"
        )
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        features = tuple(npz[v].astype(np.float32) for v in MFEAT_VIEWS)
        labels = npz["labels"].astype(np.int64)
    train, test = stratified_split(labels, test_fraction=spec.test_fraction, seed=spec.seed)
    return VerticalDataset(
        name="mfeat",
        party_names=MFEAT_VIEWS,
        features=features,
        labels=labels,
        train_ids=train,
        test_ids=test,
        class_names=tuple(str(d) for d in range(10)),
    )
