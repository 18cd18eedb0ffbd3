import json
import shutil
from pathlib import Path

import pytest
import torch

from copur.errors import BundleError
from copur.science.bundle import load_bundle, load_party, read_manifest


@pytest.fixture
def bundle_copy(mfeat_bundle_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(mfeat_bundle_dir, tmp_path / "bundle"))


def test_round_trip_restores_every_network(mfeat_bundle_dir: Path) -> None:
    a = load_bundle(mfeat_bundle_dir)
    b = load_bundle(mfeat_bundle_dir)
    h = torch.randn(5, 96)

    with torch.no_grad():
        assert torch.equal(
            a.models.head_ae(a.models.autoencoder(h)), b.models.head_ae(b.models.autoencoder(h))
        )
    manifest = read_manifest(mfeat_bundle_dir)
    assert manifest.party_dims == [76, 216, 64, 240, 47, 6]
    assert manifest.dataset["name"] == "mfeat"
    assert set(manifest.files) == {
        *(f"party-{i}.safetensors" for i in range(6)),
        "head_vfl.safetensors",
        "autoencoder.safetensors",
        "head_ae.safetensors",
        "split.safetensors",
        "calibration.json",
        "bank.safetensors",
    }
    assert a.calibration is not None and len(a.calibration.thresholds["copur"]) == 6
    assert (
        a.bank is not None
        and a.bank["rows"].shape == (1440, 96)
        and a.bank["labels"].shape == (1440,)
    )
    assert len(a.test_ids) == 400 and len(a.val_ids) == 160 and len(a.train_ids) == 1440


def test_party_loads_only_its_own_extractor(bundle_copy: Path) -> None:
    # Remove everything party 2 does not need: it must still load.
    for f in bundle_copy.iterdir():
        if f.name not in ("manifest.json", "party-2.safetensors"):
            f.unlink()

    manifest, extractor = load_party(bundle_copy, 2)

    assert manifest.party_names[2] == "kar"
    assert extractor(torch.zeros(3, 64)).shape == (3, 16)


@pytest.mark.parametrize(
    "name", ["head_ae.safetensors", "party-0.safetensors", "split.safetensors", "calibration.json"]
)
def test_tampered_file_is_refused_by_name(bundle_copy: Path, name: str) -> None:
    raw = bytearray((bundle_copy / name).read_bytes())
    raw[-1] ^= 0x01
    (bundle_copy / name).write_bytes(bytes(raw))

    with pytest.raises(BundleError, match=f"{name} does not match its sha256"):
        load_bundle(bundle_copy)


def test_incomplete_bundle_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "autoencoder.safetensors").unlink()

    with pytest.raises(BundleError, match="incomplete: missing autoencoder.safetensors"):
        load_bundle(bundle_copy)


def test_manifest_problems_are_named(bundle_copy: Path, tmp_path: Path) -> None:
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    del manifest["party_dims"]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(BundleError, match="field 'party_dims'"):
        read_manifest(bundle_copy)
    with pytest.raises(BundleError, match="not a model bundle"):
        read_manifest(tmp_path)


def test_unknown_party_index(mfeat_bundle_dir: Path) -> None:
    with pytest.raises(BundleError, match="parties 0..5, not 6"):
        load_party(mfeat_bundle_dir, 6)
