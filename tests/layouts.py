"""Writers of small files in the exact published layouts of NUS-WIDE and ExtraSensory."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

NUS_CONCEPTS = ("sky", "clouds", "person", "water", "animal", "grass", "buildings")
NUS_IMAGE_BLOCKS = {"CH": 64, "CM55": 225, "CORR": 144, "EDH": 73, "WT": 128}
# ExtraSensory sensor groups sized to the paper's division 0 26 52 83 129 138 155 183 209 213 221
# (+4 extra).
ES_GROUPS = (
    ("raw_acc", 26),
    ("proc_gyro", 26),
    ("raw_magnet", 31),
    ("watch_acceleration", 46),
    ("watch_heading", 9),
    ("location", 17),
    ("audio_naive", 28),
    ("discrete", 26),
    ("lf_measurements", 4),
    ("time_of_day", 8),
    ("extra", 4),
)
ES_LABELS = ("label:LYING_DOWN", "label:SITTING", "label:FIX_walking")


def _write_rows(path: Path, rows: np.ndarray, *, sep: str, fmt: str) -> None:
    # The published files end every line with a trailing separator.
    path.write_text("".join(sep.join(fmt % v for v in row) + sep + "\n" for row in rows))


def write_nus_wide(root: Path, *, n_train: int = 60, n_test: int = 30, seed: int = 0) -> Path:
    """A NUS_WIDE folder: Groundtruth/{AllLabels,TrainTestLabels}, Low_Level_Features,
    NUS_WID_Tags."""
    rng = np.random.default_rng(seed)
    (root / "Groundtruth" / "AllLabels").mkdir(parents=True)
    (root / "Groundtruth" / "TrainTestLabels").mkdir(parents=True)
    (root / "Low_Level_Features").mkdir()
    (root / "NUS_WID_Tags").mkdir()
    # Concept frequencies fall with the index, so the top five are the first five.
    weights = np.array([0.3, 0.25, 0.2, 0.12, 0.08, 0.03, 0.02])
    parts = {"Train": n_train, "Test": n_test}
    labels = {}
    for part, n in parts.items():
        onehot = np.zeros((n, len(NUS_CONCEPTS)), dtype=int)
        onehot[np.arange(n), rng.choice(len(NUS_CONCEPTS), size=n, p=weights)] = 1
        onehot[: n // 10, 0] = 1  # a few multi-label images, which the loader drops
        labels[part] = onehot
        for k, concept in enumerate(NUS_CONCEPTS):
            (root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{part}.txt").write_text(
                "".join(f"{v}\n" for v in onehot[:, k])
            )
        for block, width in NUS_IMAGE_BLOCKS.items():
            values = rng.random((n, width)) + onehot.argmax(axis=1)[:, None] * 0.1
            _write_rows(
                root / "Low_Level_Features" / f"{part}_Normalized_{block}.dat",
                values,
                sep=" ",
                fmt="%.6f",
            )
        tags = (rng.random((n, 1000)) < 0.02).astype(int)
        _write_rows(root / "NUS_WID_Tags" / f"{part}_Tags1k.dat", tags, sep="\t", fmt="%d")
    all_labels = np.concatenate([labels["Train"], labels["Test"]])
    for k, concept in enumerate(NUS_CONCEPTS):
        (root / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt").write_text(
            "".join(f"{v}\n" for v in all_labels[:, k])
        )
    return root


def extrasensory_columns() -> list[str]:
    names = [f"{group}:feature_{k}" for group, width in ES_GROUPS for k in range(width)]
    return ["timestamp", *names, *ES_LABELS, "label_source"]


def write_extrasensory_user(path: Path, *, rows: int = 80, seed: int = 0) -> Path:
    """One ``<uuid>.features_labels.csv.gz``: timestamp, sensor features (with gaps), label:*
    (with gaps)."""
    rng = np.random.default_rng(seed)
    width = sum(w for _, w in ES_GROUPS)
    sitting = rng.integers(0, 2, size=rows)
    feats = rng.normal(size=(rows, width)) + sitting[:, None] * 0.8
    feats[rng.random(feats.shape) < 0.05] = np.nan
    feats[:, -1] = np.nan  # a sensor never observed for this user
    lines = [",".join(extrasensory_columns())]
    for r in range(rows):
        lab = [str(1 - sitting[r]), "" if r % 17 == 0 else str(sitting[r]), ""]
        cells = [
            str(1440000000 + 60 * r),
            *("" if np.isnan(v) else f"{v:.6f}" for v in feats[r]),
            *lab,
            "2",
        ]
        lines.append(",".join(cells))
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return path
