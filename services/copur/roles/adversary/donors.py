"""Donor samples for the live mimicry attacks (``mimic``, ``sia``): which samples, and their
blocks.

A compromised party can produce its block of ANY sample of the data set: it runs its own
extractor on that sample's features. The adversary does exactly that through its upstream party
(one ``Embed`` call for the donor's sample id, through the ``embed`` callable the server hands
in) and caches the answer per id.

A donor by class is a deterministic choice: the lowest id of the bundle's validation split with
that label (then, if the split has too few, the lowest ids of the rest of the data set). So two
adversaries given the same donor id or the same donor class send their blocks of one and the same
sample, and their lies agree with each other, without the adversaries talking to each other. The
labels are the data set's own (:func:`copur.science.data.load_dataset`), loaded once, on first
use.

No transport here: the upstream is reached only through ``embed``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from copur.errors import ConfigError, CopurError

__all__ = ["DonorBook", "Embedder"]

Embedder = Callable[[Sequence[int]], np.ndarray]
"""sample ids -> the upstream party's own blocks of them, (n, e)."""


class DonorBook:
    """The data set's labels (``labels``: the array, or a loader called once), the validation
    split's ids, and a cache of this party's blocks of donor samples, fetched through ``embed``
    (None: set it before the first fetch). Thread-safe: one lock guards the labels, the cache and
    every fetch."""

    def __init__(
        self,
        *,
        num_classes: int,
        emb_dim: int,
        val_ids: np.ndarray,
        labels: np.ndarray | Callable[[], np.ndarray],
        embed: Embedder | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.emb_dim = emb_dim
        self.val_ids = np.sort(np.asarray(val_ids, dtype=np.int64))
        self.embed = embed
        self._labels: np.ndarray | None = None
        self._load = labels if callable(labels) else None
        if not callable(labels):
            self._labels = np.asarray(labels, dtype=np.int64)
        self._blocks: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def labels(self) -> np.ndarray:
        """The class of every sample of the data set (loaded on first use)."""
        with self._lock:
            if self._labels is None:
                assert self._load is not None
                try:
                    self._labels = np.asarray(self._load(), dtype=np.int64)
                except CopurError as exc:
                    raise ConfigError(f"the donors' classes are unknown: {exc}") from None
            return self._labels

    @property
    def num_samples(self) -> int:
        """How many samples the data set holds (valid donor ids: 0 .. num_samples - 1)."""
        return len(self.labels)

    def check_donor(self, donor: int) -> None:
        """Refuse (ConfigError) a donor id outside the data set."""
        if not 0 <= donor < self.num_samples:
            raise ConfigError(
                f"parameter 'donor' must be a sample id 0..{self.num_samples - 1}, got {donor}"
            )

    def check_class(self, cls: int) -> None:
        """Refuse (ConfigError) a class index out of range, or a class no sample has."""
        if not 0 <= cls < self.num_classes:
            raise ConfigError(
                f"parameter 'donor_class' must be a class index 0..{self.num_classes - 1}, got "
                f"{cls}"
            )
        if not (self.labels == cls).any():
            raise ConfigError(f"parameter 'donor_class': no sample of the data set has class {cls}")

    def of_class(self, cls: int, count: int = 1) -> list[int]:
        """The first ``count`` donor ids of class ``cls`` (fewer when the data set has fewer):
        the validation split's ids of that class in increasing order, then the rest of the
        data set's. The first one is THE donor of the class, the same for every adversary of
        the same bundle."""
        labels = self.labels
        val = self.val_ids[labels[self.val_ids] == cls]
        ids = [int(i) for i in val[:count]]
        if len(ids) < count:
            rest = np.setdiff1d(np.flatnonzero(labels == cls), val, assume_unique=True)
            ids += [int(i) for i in rest[: count - len(ids)]]
        return ids

    def blocks(self, ids: Sequence[int]) -> np.ndarray:
        """This party's blocks of ``ids`` (len(ids), e): cached ones, the others fetched in one
        ``embed`` call (CopurError when it fails or answers something else than (n, e) finite
        rows)."""
        ids = [int(i) for i in ids]
        with self._lock:
            missing = sorted({i for i in ids if i not in self._blocks})
            if missing:
                if self.embed is None:
                    raise ConfigError(
                        "this adversary has no upstream party to fetch donor blocks from"
                    )
                fetched = np.asarray(self.embed(missing), dtype=np.float32)
                if fetched.shape != (len(missing), self.emb_dim) or not np.isfinite(fetched).all():
                    raise CopurError(
                        f"the upstream answered donor blocks of shape {fetched.shape} (or not "
                        "finite), "
                        f"expected ({len(missing)}, {self.emb_dim})"
                    )
                self._blocks.update(zip(missing, fetched.copy(), strict=True))
            if not ids:
                return np.zeros((0, self.emb_dim), dtype=np.float32)
            return np.stack([self._blocks[i] for i in ids])

    def cached(self) -> list[int]:
        """The donor ids whose blocks are cached, sorted."""
        with self._lock:
            return sorted(self._blocks)
