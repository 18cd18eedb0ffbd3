"""Calibrating a bundle on its clean data: the consistency bank, block scales and per-purifier
flag thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import torch

from copur.errors import BundleError
from copur.science.bundle import Bundle, Calibration, load_bundle, write_bank, write_calibration
from copur.science.data import load_dataset
from copur.science.purify import PURIFIERS, Bank, block_scales, flag_thresholds, make_purifier
from copur.science.purify.bank import nearest_unit

__all__ = ["BANK_ROWS", "CALIBRATION_VERSION", "bundle_bank", "calibrate_bundle", "embed_ids"]

# : the most training samples the consistency bank keeps (a class-stratified, seeded choice beyond
# that)
BANK_ROWS: Final = 16384
#: calibration.json's layout; an older one lacks what this version's purifiers need
CALIBRATION_VERSION: Final = 2


@torch.no_grad()
def embed_ids(bundle: Bundle, xs: list[torch.Tensor]) -> torch.Tensor:
    """Clean concatenated embeddings of raw party features (already on the bundle's device)."""
    return bundle.models.embed(xs)


def _bank_ids(ids: np.ndarray, labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """``ids`` when there are at most ``limit``, else a seeded choice of ``limit`` with every
    class in proportion."""
    if len(ids) <= limit:
        return ids
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = ids[labels == cls]
        take = max(1, round(limit * len(members) / len(ids)))
        chosen.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))[:limit]


def bundle_bank(bundle: Bundle) -> Bank:
    """The bundle's consistency bank with the unit distances of its calibration (on the bundle's
    device)."""
    calibration = bundle.calibration
    if bundle.bank is None or calibration is None or calibration.bank_unit is None:
        raise BundleError(
            f"bundle {bundle.path} has no consistency bank (calibrated by an older version): "
            f"run `copur calibrate {bundle.path}`"
        )
    rows = bundle.bank["rows"]
    return Bank(
        rows=rows,
        labels=bundle.bank["labels"],
        unit=torch.tensor(calibration.bank_unit, device=rows.device),
    )


def calibrate_bundle(
    path: str | Path, *, quantile: float = 0.99, factor: float = 3.0, bank_rows: int = BANK_ROWS
) -> Calibration:
    """Compute and store the consistency bank (``bank.safetensors``: clean embeddings and labels
    of up to ``bank_rows`` training samples) and ``calibration.json``: block scales, mean
    blocks (M, e) and bank units of the validation embeddings, and for every purifier the flag
    threshold ``factor`` (or the purifier's own ``flag_factor``) x its ``quantile`` clean
    score per party. calibration.json is written last."""
    bundle = load_bundle(path)
    data = load_dataset(bundle.manifest.dataset_spec)
    m = bundle.manifest.num_parties
    # Step 1: the bank: clean embeddings of (up to bank_rows of) the samples the networks were
    # fitted on.
    seed = int(bundle.manifest.train.get("seed", 0))
    ids = _bank_ids(bundle.train_ids, data.labels[bundle.train_ids], bank_rows, seed)
    rows = embed_ids(bundle, [torch.as_tensor(x) for x in data.party_rows(ids)])
    labels = torch.as_tensor(data.labels[ids])
    write_bank(path, rows, labels)
    # Step 2: scales and units on the held-out validation split (never fitted on, never in the
    # bank).
    h_val = embed_ids(bundle, [torch.as_tensor(x) for x in data.party_rows(bundle.val_ids)])
    scale = block_scales(h_val, m)
    bank = Bank(rows=rows, labels=labels, unit=nearest_unit(h_val, rows, m, scale))
    # Step 3: every purifier's flag threshold from its scores on clean validation data.
    thresholds = {}
    factors = {}
    for name in sorted(PURIFIERS):
        purifier = make_purifier(
            name, autoencoder=bundle.models.autoencoder, num_parties=m, block_scale=scale, bank=bank
        )
        factors[name] = purifier.flag_factor if purifier.flag_factor is not None else factor
        thresholds[name] = flag_thresholds(
            purifier, h_val, quantile=quantile, factor=factors[name]
        ).tolist()
    calibration = Calibration(
        version=CALIBRATION_VERSION,
        block_scale=scale.tolist(),
        block_mean=h_val.mean(dim=0).unflatten(0, (m, -1)).tolist(),
        bank_unit=bank.unit.tolist(),
        bank_rows=len(ids),
        thresholds=thresholds,
        quantile=quantile,
        factor=factor,
        factors=factors,
        num_validation_samples=len(bundle.val_ids),
    )
    write_calibration(path, calibration)
    return calibration
