from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from copur.science.bundle import Bundle, load_bundle, save_bundle
from copur.science.calibration import calibrate_bundle
from copur.science.config import TrainConfig
from copur.science.data import DatasetSpec, load_dataset
from copur.science.defenses import Engine, EngineConfig
from copur.science.train import train_all
from copur.transport.auth import init_keys
from copur.transport.tls.certs import service_names, write_certs
from copur.transport.topology import load_topology

REPO = Path(__file__).resolve().parents[1]


def _train_mfeat(out: Path, *, seed: int) -> Path:
    """mfeat on its seed-0 split, trained with ``seed``, saved and calibrated at ``out``."""
    spec = DatasetSpec(name="mfeat", seed=0)
    config = TrainConfig(seed=seed)
    data = load_dataset(spec)
    result = train_all(data, config, device=torch.device("cpu"), progress=False)
    save_bundle(out, data=data, spec=spec, config=config, result=result)
    calibrate_bundle(out)
    return out


@pytest.fixture(scope="session")
def mfeat_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mfeat bundle trained with the default configuration (what `make demo` trains)."""
    return _train_mfeat(tmp_path_factory.mktemp("bundle") / "mfeat", seed=0)


@pytest.fixture(scope="session")
def mfeat_next_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mfeat bundle retrained with another seed (the same data split, other extractors: another
    embedding space): the "next" bundle of a rolling upgrade, or a foreign one."""
    return _train_mfeat(tmp_path_factory.mktemp("bundle") / "mfeat-next", seed=1)


@pytest.fixture(scope="session")
def mfeat_bundle(mfeat_bundle_dir: Path) -> Bundle:
    return load_bundle(mfeat_bundle_dir)


@pytest.fixture(scope="session")
def engine(mfeat_bundle: Bundle) -> Engine:
    return Engine(mfeat_bundle, config=EngineConfig(predict_samples=100))


@pytest.fixture(scope="session")
def test_batch(mfeat_bundle: Bundle) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean embeddings and labels of the first 120 test samples."""
    data = load_dataset(mfeat_bundle.manifest.dataset_spec)
    ids = mfeat_bundle.test_ids[:120]
    with torch.no_grad():
        h = mfeat_bundle.models.embed([torch.as_tensor(x) for x in data.party_rows(ids)])
    return h, torch.as_tensor(data.labels[ids])


@pytest.fixture(scope="session")
def donor_pool(mfeat_bundle: Bundle) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean embeddings and labels of the training and validation samples: donors for mimicry."""
    import numpy as np

    data = load_dataset(mfeat_bundle.manifest.dataset_spec)
    ids = np.concatenate([mfeat_bundle.train_ids, mfeat_bundle.val_ids])
    with torch.no_grad():
        h = mfeat_bundle.models.embed([torch.as_tensor(x) for x in data.party_rows(ids)])
    return h, torch.as_tensor(data.labels[ids])


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`copur certs init` output for every service of deploy/cluster.yaml and
    deploy/cluster-scenarios.yaml (parties 0-5, adversaries 0-5, fusion, client): what `make
    demo` creates in runs/certs."""
    out = tmp_path_factory.mktemp("certs")
    topologies = [
        load_topology(REPO / "deploy" / f, env={})
        for f in ("cluster.yaml", "cluster-scenarios.yaml")
    ]
    write_certs(out, service_names(topologies), force=True)
    return out


@pytest.fixture(scope="module")
def cluster_tls(tls_dir: Path) -> Iterator[Path]:
    """COPUR_TLS_DIR -> :func:`tls_dir` for one test module: clusters it launches (topology
    tls.mode mtls, the default) find their key pairs there, whatever the working directory
    holds."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COPUR_TLS_DIR", str(tls_dir))
        yield tls_dir


@dataclass(frozen=True)
class ApiKeys:
    """`copur keys init` output: the keys file and the raw development keys beside it."""

    keys_file: Path
    predict: str
    admin: str

    def headers(self, scope: str = "predict") -> dict[str, str]:
        """``Authorization: Bearer <key>`` for the development key of ``scope``."""
        return {"Authorization": f"Bearer {self.admin if scope == 'admin' else self.predict}"}


@pytest.fixture(scope="session")
def api_keys(tmp_path_factory: pytest.TempPathFactory) -> ApiKeys:
    """`copur keys init` into a temporary directory: what `make demo` creates in runs/certs."""
    result = init_keys(tmp_path_factory.mktemp("keys"))
    read = {scope: path.read_text().strip() for scope, path in result.key_files.items()}
    return ApiKeys(keys_file=result.keys_file, predict=read["predict"], admin=read["admin"])


@pytest.fixture(scope="session", autouse=True)
def _api_keys_env(api_keys: ApiKeys) -> Iterator[ApiKeys]:
    """COPUR_API_KEYS_FILE -> :func:`api_keys` for the whole session: every cluster a test
    launches from a topology (auth.mode keys, the default) finds its keys there, whatever the
    working directory holds."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COPUR_API_KEYS_FILE", str(api_keys.keys_file))
        for var in ("COPUR_API_KEYS", "COPUR_AUTH_MODE", "COPUR_API_KEY", "COPUR_ADMIN_KEY"):
            patch.delenv(var, raising=False)
        yield api_keys
