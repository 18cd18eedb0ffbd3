"""The model bundle: a directory of safetensors weights and a JSON manifest with their sha256.

Layout::

    manifest.json            data set, parties, dims, configs, metrics, package version, sha256
                             per file
    party-<i>.safetensors    extractor f_i (with its standardisation statistics)
    head_vfl.safetensors     stage-1 head g (on raw embeddings)
    autoencoder.safetensors  stage-2 AE
    head_ae.safetensors      stage-3 head (on AE outputs)
    split.safetensors        train (fitted) / validation (calibration) / test sample ids
    calibration.json         per-party block scales and flag thresholds (written after training)
    bank.safetensors         the consistency bank: clean embeddings and labels of training
                             samples, which the default purifier compares received blocks with
                             (written with the calibration)

Loading verifies every file it reads against the manifest and refuses a tampered or incomplete
bundle with a :class:`BundleError` naming the file. A party loads only the manifest and its own
file."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from copur import __version__
from copur.errors import BundleError
from copur.science.config import ModelConfig, TrainConfig
from copur.science.data import DatasetSpec, VerticalDataset
from copur.science.models import ModelSet, PartyExtractor, build_models
from copur.science.train import TrainResult

__all__ = [
    "BUNDLE_FORMAT",
    "Bundle",
    "Calibration",
    "Manifest",
    "load_bundle",
    "load_party",
    "read_calibration",
    "read_manifest",
    "save_bundle",
    "write_bank",
    "write_calibration",
]

BUNDLE_FORMAT: Final = "copur-bundle/1"
MANIFEST = "manifest.json"
CALIBRATION = "calibration.json"
BANK = "bank.safetensors"


class Manifest(BaseModel):
    """What a bundle is: enough to rebuild every network and reload the same data set."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["copur-bundle/1"]
    package_version: str
    created: str
    dataset: dict[str, Any]
    party_names: list[str]
    party_dims: list[int]
    num_classes: int
    class_names: list[str]
    num_samples: int
    model: dict[str, Any]
    train: dict[str, Any]
    metrics: dict[str, float]
    files: dict[str, str]

    @property
    def num_parties(self) -> int:
        """M, the number of parties."""
        return len(self.party_names)

    @property
    def bundle_id(self) -> str:
        """The bundle's identity on the wire: the first 16 hex digits of the sha256 of the
        manifest's canonical JSON. The manifest holds the sha256 of every file (extractors, heads,
        calibration, bank), so two bundles share an id only when every file is the same."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def model_cfg(self) -> ModelConfig:
        """The networks' shapes as a :class:`ModelConfig`."""
        return ModelConfig(**self.model)

    @property
    def dataset_spec(self) -> DatasetSpec:
        """The data set the bundle was trained on, as a spec that loads it again."""
        return DatasetSpec.from_dict(self.dataset)


class Calibration(BaseModel):
    """``calibration.json``: what calibration on the clean validation split measured (see
    :func:`copur.science.calibration.calibrate_bundle`). Fields an older layout lacks are None;
    the code that needs them asks for ``copur calibrate``."""

    model_config = ConfigDict(extra="forbid")

    version: int
    #: (M,) each party's typical clean block norm s_i
    block_scale: list[float]
    #: (M, e) the mean clean block of each party
    block_mean: list[list[float]]
    #: (M,) each party's typical distance to its nearest consistency-bank row
    bank_unit: list[float] | None = None
    #: how many training samples the consistency bank holds
    bank_rows: int | None = None
    #: purifier name -> (M,) flag thresholds on its normalised block scores
    thresholds: dict[str, list[float]]
    #: the clean-score quantile and the default factor the thresholds were set from
    quantile: float
    factor: float
    #: purifier name -> the factor actually used (a purifier may fix its own)
    factors: dict[str, float] | None = None
    num_validation_samples: int


@dataclass
class Bundle:
    """A loaded bundle: manifest, all networks (eval mode) and the split."""

    path: Path
    manifest: Manifest
    models: ModelSet
    train_ids: np.ndarray
    val_ids: np.ndarray
    test_ids: np.ndarray
    calibration: Calibration | None
    #: the consistency bank ``{"rows": (N, M*e), "labels": (N,)}``, or None before calibration
    bank: dict[str, torch.Tensor] | None = None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _party_file(index: int) -> str:
    return f"party-{index}.safetensors"


def save_bundle(
    out: str | Path,
    *,
    data: VerticalDataset,
    spec: DatasetSpec,
    config: TrainConfig,
    result: TrainResult,
) -> Manifest:
    """Write the bundle to ``out`` (created; an existing bundle there is replaced, any other
    content refused)."""
    folder = Path(out)
    if folder.exists() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
        raise BundleError(
            f"{folder} exists, is not empty and is not a bundle: refusing to write into it"
        )
    folder.mkdir(parents=True, exist_ok=True)
    models = result.models
    tensors: dict[str, dict[str, torch.Tensor]] = {
        **{_party_file(i): f.state_dict() for i, f in enumerate(models.extractors)},
        "head_vfl.safetensors": models.head_vfl.state_dict(),
        "autoencoder.safetensors": models.autoencoder.state_dict(),
        "head_ae.safetensors": models.head_ae.state_dict(),
        "split.safetensors": {
            "train_ids": torch.as_tensor(result.fit_ids),
            "val_ids": torch.as_tensor(result.val_ids),
            "test_ids": torch.as_tensor(data.test_ids),
        },
    }
    files = {}
    for name, state in tensors.items():
        raw = st_save({k: v.detach().cpu().contiguous() for k, v in state.items()})
        (folder / name).write_bytes(raw)
        files[name] = _sha256(raw)
    manifest = Manifest(
        format=BUNDLE_FORMAT,
        package_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        dataset=spec.to_dict() | {"params": data.params},
        party_names=list(data.party_names),
        party_dims=list(data.party_dims),
        num_classes=data.num_classes,
        class_names=list(data.class_names),
        num_samples=data.num_samples,
        model=config.model.__dict__.copy(),
        train={k: v for k, v in config.to_dict().items() if k != "model"},
        metrics=result.metrics,
        files=files,
    )
    (folder / CALIBRATION).unlink(missing_ok=True)
    (folder / BANK).unlink(missing_ok=True)
    _write_manifest(folder, manifest)
    return manifest


def _write_manifest(folder: Path, manifest: Manifest) -> None:
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n")
    os.replace(tmp, folder / MANIFEST)


def read_manifest(path: str | Path) -> Manifest:
    """Read and validate ``manifest.json`` of the bundle at ``path``."""
    folder = Path(path)
    if not folder.is_dir():
        raise BundleError(f"bundle {folder} does not exist")
    file = folder / MANIFEST
    if not file.is_file():
        raise BundleError(f"{folder} is not a model bundle: no {MANIFEST}")
    try:
        raw = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle {folder}: {MANIFEST} is not valid JSON ({exc})") from None
    if isinstance(raw, dict) and raw.get("format") not in (None, BUNDLE_FORMAT):
        raise BundleError(
            f"bundle {folder}: unknown format {raw.get('format')!r} (this version reads "
            f"{BUNDLE_FORMAT})"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise BundleError(f"bundle {folder}: {MANIFEST} field '{where}': {err['msg']}") from None


def _verified_bytes(folder: Path, manifest: Manifest, name: str) -> bytes:
    expected = manifest.files.get(name)
    if expected is None:
        raise BundleError(f"bundle {folder}: manifest lists no file {name}")
    file = folder / name
    if not file.is_file():
        raise BundleError(f"bundle {folder} is incomplete: missing {name}")
    raw = file.read_bytes()
    if _sha256(raw) != expected:
        raise BundleError(
            f"bundle {folder}: {name} does not match its sha256 in the manifest (tampered or "
            "corrupt)"
        )
    return raw


def _read_verified(folder: Path, manifest: Manifest, name: str) -> dict[str, torch.Tensor]:
    raw = _verified_bytes(folder, manifest, name)
    try:
        return st_load(raw)
    except SafetensorError as exc:  # pragma: no cover - the checksum matched a broken file
        raise BundleError(f"bundle {folder}: {name} is not a safetensors file ({exc})") from None


def _load_state(
    module: nn.Module, state: dict[str, torch.Tensor], *, folder: Path, name: str
) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError:
        raise BundleError(
            f"bundle {folder}: {name} does not fit the shapes in the manifest"
        ) from None


def load_party(path: str | Path, index: int) -> tuple[Manifest, PartyExtractor]:
    """Load only party ``index``'s extractor (verified), in eval mode."""
    folder = Path(path)
    manifest = read_manifest(folder)
    if not 0 <= index < manifest.num_parties:
        raise BundleError(f"bundle {folder} has parties 0..{manifest.num_parties - 1}, not {index}")
    cfg = manifest.model_cfg
    extractor = PartyExtractor(
        in_dim=manifest.party_dims[index], hidden=cfg.extractor_hidden, emb_dim=cfg.emb_dim
    )
    name = _party_file(index)
    _load_state(extractor, _read_verified(folder, manifest, name), folder=folder, name=name)
    return manifest, extractor.eval()


def load_bundle(path: str | Path, *, device: torch.device | str = "cpu") -> Bundle:
    """Load and verify every file of the bundle; networks in eval mode on ``device``."""
    folder = Path(path)
    manifest = read_manifest(folder)
    models = build_models(
        party_dims=manifest.party_dims, num_classes=manifest.num_classes, config=manifest.model_cfg
    )
    modules: dict[str, nn.Module] = {
        **{_party_file(i): f for i, f in enumerate(models.extractors)},
        "head_vfl.safetensors": models.head_vfl,
        "autoencoder.safetensors": models.autoencoder,
        "head_ae.safetensors": models.head_ae,
    }
    for name, module in modules.items():
        _load_state(module, _read_verified(folder, manifest, name), folder=folder, name=name)
    split = _read_verified(folder, manifest, "split.safetensors")
    return Bundle(
        path=folder,
        manifest=manifest,
        models=models.eval().to(device),
        train_ids=split["train_ids"].numpy(),
        val_ids=split["val_ids"].numpy(),
        test_ids=split["test_ids"].numpy(),
        calibration=read_calibration(folder, manifest),
        bank=_read_bank(folder, manifest, device),
    )


def _read_bank(
    folder: Path, manifest: Manifest, device: torch.device | str
) -> dict[str, torch.Tensor] | None:
    if BANK not in manifest.files:
        return None
    bank = _read_verified(folder, manifest, BANK)
    width = manifest.num_parties * int(manifest.model["emb_dim"])
    rows, labels = bank.get("rows"), bank.get("labels")
    if (
        rows is None
        or labels is None
        or rows.dim() != 2
        or rows.shape[1] != width
        or labels.shape != rows.shape[:1]
    ):
        raise BundleError(f"bundle {folder}: {BANK} does not fit the shapes in the manifest")
    return {"rows": rows.to(device), "labels": labels.to(device)}


def write_bank(path: str | Path, rows: torch.Tensor, labels: torch.Tensor) -> None:
    """Store the consistency bank (clean embeddings (N, M*e) and labels (N,)) and record its
    sha256."""
    folder = Path(path)
    manifest = read_manifest(folder)
    raw = st_save(
        {"rows": rows.detach().cpu().contiguous(), "labels": labels.detach().cpu().contiguous()}
    )
    (folder / BANK).write_bytes(raw)
    manifest.files[BANK] = _sha256(raw)
    _write_manifest(folder, manifest)


def write_calibration(path: str | Path, calibration: Calibration) -> None:
    """Store ``calibration.json`` in the bundle and record its sha256 in the manifest."""
    folder = Path(path)
    manifest = read_manifest(folder)
    raw = (
        json.dumps(calibration.model_dump(exclude_none=True), indent=2, sort_keys=True) + "\n"
    ).encode()
    (folder / CALIBRATION).write_bytes(raw)
    manifest.files[CALIBRATION] = _sha256(raw)
    _write_manifest(folder, manifest)


def read_calibration(folder: Path, manifest: Manifest) -> Calibration | None:
    """The verified calibration of the bundle, or None when it has none yet."""
    if CALIBRATION not in manifest.files:
        return None
    raw = _verified_bytes(folder, manifest, CALIBRATION)
    try:
        loaded = json.loads(raw)
    except json.JSONDecodeError as exc:  # pragma: no cover - the checksum matched a broken file
        raise BundleError(f"bundle {folder}: {CALIBRATION} is not valid JSON ({exc})") from None
    if not isinstance(loaded, dict):
        raise BundleError(f"bundle {folder}: {CALIBRATION} must hold a JSON object")
    try:
        return Calibration.model_validate(loaded)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BundleError(
            f"bundle {folder}: {CALIBRATION} {where}: {first['msg']} (another version's layout): "
            f"run `copur calibrate {folder}`"
        ) from None
