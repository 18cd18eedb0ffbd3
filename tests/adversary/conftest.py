"""A real upstream PartyService (embeddings from a table) and a real adversary in front of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import torch

from adversary.support import PARTY, Clean, E, M, TableParty
from copur.roles.adversary import AdversaryApp
from copur.science.bundle import Bundle
from copur.science.data import load_dataset
from copur.science.defenses import Engine
from copur_client.v1 import party_pb2_grpc


@pytest.fixture(scope="session")
def clean(mfeat_bundle: Bundle, test_batch) -> Clean:
    h, _ = test_batch
    table = np.ascontiguousarray(h[:, PARTY * E : (PARTY + 1) * E].numpy(), dtype=np.float32)
    assert mfeat_bundle.calibration is not None
    return Clean(
        table=table, block_mean=np.asarray(mfeat_bundle.calibration.block_mean, dtype=np.float32)
    )


@pytest.fixture(scope="session")
def every_block(mfeat_bundle: Bundle) -> np.ndarray:
    """(N, M, E): every party's block of every sample of the data set (row = sample id), what the
    real parties embed."""
    data = load_dataset(mfeat_bundle.manifest.dataset_spec)
    with torch.no_grad():
        h = mfeat_bundle.models.embed(
            [torch.as_tensor(x) for x in data.party_rows(np.arange(len(data.labels)))]
        )
    return np.ascontiguousarray(h.numpy().reshape(len(h), M, E), dtype=np.float32)


@pytest.fixture
def upstream(clean: Clean) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    party_pb2_grpc.add_PartyServiceServicer_to_server(TableParty(clean.table), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None).wait()


@pytest.fixture
def adversary(upstream: str, mfeat_bundle_dir: Path) -> Iterator[AdversaryApp]:
    app = AdversaryApp(upstream=upstream, bundle=mfeat_bundle_dir)
    app.start()
    yield app
    app.stop()


@pytest.fixture
def channel(adversary: AdversaryApp) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(f"127.0.0.1:{adversary.port}")
    yield ch
    ch.close()


@pytest.fixture
def stub(channel: grpc.Channel) -> party_pb2_grpc.PartyServiceStub:
    return party_pb2_grpc.PartyServiceStub(channel)


@pytest.fixture
def control(adversary: AdversaryApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{adversary.control_port}", timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def head(engine: Engine) -> Callable[[torch.Tensor], torch.Tensor]:
    """Labels of the undefended head on an assembled h."""
    return lambda h: (
        engine.defense("none").predict(h, torch.ones(len(h), M, dtype=torch.bool)).labels
    )
