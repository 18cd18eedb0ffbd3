"""Inference under attack through the Open Inference Protocol: five honest parties and one liar
(a party server whose answers are rewritten per test) in front of a real fusion handler, asked
through ``/v1/predict`` and ``POST /v2/models/copur/infer`` alike. The v2 ``flagged`` output
shows the liar the defense caught, ``missing`` the party that did not answer, and labels,
flags and missing parties are those of /v1 for the same ids."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import numpy as np
import pytest
import torch

from copur.roles.fusion import FusionHandler, FusionSettings
from copur.roles.fusion.http_api import create_http_app
from copur.roles.fusion.worker import Worker
from copur.roles.party import PartyApp, PartyCore
from copur.science.bundle import Bundle
from copur.transport.topology import FusionNode
from copur_client.serde import embed_response, party_info_to_proto
from copur_client.v1 import party_pb2, party_pb2_grpc

LIAR = 2
M = 6
IDS = list(range(0, 2000, 50))  # 40 samples spread over the data set
T = TypeVar("T")
Lie = Callable[[np.ndarray], np.ndarray]


class LyingParty(party_pb2_grpc.PartyServiceServicer):
    """Party LIAR's real extractor behind a switch: ``lie`` rewrites its honest block; None makes
    it unavailable."""

    def __init__(self, core: PartyCore) -> None:
        self.core = core
        self.lie: Lie | None = lambda block: block

    def Embed(
        self, request: party_pb2.EmbedRequest, context: grpc.ServicerContext
    ) -> party_pb2.EmbedResponse:
        lie = self.lie
        if lie is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "party is down")
        block = self.core.embed_ids(list(request.sample_ids))
        return embed_response(np.ascontiguousarray(lie(block), dtype=np.float32), LIAR)

    def Info(
        self, request: party_pb2.InfoRequest, context: grpc.ServicerContext
    ) -> party_pb2.PartyInfo:
        return party_info_to_proto(self.core.info)


class Fusion:
    """A FusionHandler and its FastAPI app (no keys) on an event loop in a background thread."""

    def __init__(self, handler: FusionHandler) -> None:
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(handler.start())
        self.client = self.call(self._client())

    async def _client(self) -> httpx.AsyncClient:
        app = create_http_app(self.handler, auth=None)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fc")

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.call(self.client.post(path, json=body, timeout=120))

    def close(self) -> None:
        self.call(self.client.aclose())
        self.call(self.handler.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def cluster(mfeat_bundle_dir: Path, mfeat_bundle: Bundle) -> Iterator[tuple[Fusion, LyingParty]]:
    honest = [
        PartyApp(core=PartyCore.from_bundle(mfeat_bundle_dir, i)).start()
        for i in range(M)
        if i != LIAR
    ]
    liar = LyingParty(PartyCore.from_bundle(mfeat_bundle_dir, LIAR))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    party_pb2_grpc.add_PartyServiceServicer_to_server(liar, server)
    liar_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ports = iter(app.port for app in honest)
    targets = [f"127.0.0.1:{liar_port if i == LIAR else next(ports)}" for i in range(M)]
    worker = Worker(mfeat_bundle, device=torch.device("cpu"))
    node = FusionNode(min_parties=4, deadline_ms=10_000, max_delay_ms=1)
    handler = FusionHandler(
        bundle=mfeat_bundle, worker=worker, settings=FusionSettings(node=node, targets=targets)
    )
    fusion = Fusion(handler)
    yield fusion, liar
    fusion.close()
    worker.close()
    server.stop(1).wait()
    for app in honest:
        app.stop()


def _both(fusion: Fusion) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """/v1's predictions and /v2's outputs (JSON) for IDS with the copur defense."""
    v1 = fusion.post("/v1/predict", {"sample_ids": IDS, "defense": "copur"})
    v2 = fusion.post(
        "/v2/models/copur/infer",
        {
            "parameters": {"defense": "copur"},
            "inputs": [
                {"name": "sample_ids", "datatype": "INT64", "shape": [len(IDS)], "data": IDS}
            ],
        },
    )
    assert v1.status_code == 200 and v2.status_code == 200, (v1.text, v2.text)
    outputs = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in v2.json()["outputs"]}
    return v1.json()["predictions"], outputs


def _masks(predictions: list[dict[str, Any]], key: str) -> np.ndarray:
    out = np.zeros((len(predictions), M), dtype=bool)
    for row, p in enumerate(predictions):
        out[row, p[key]] = True
    return out


LIES: dict[str, Lie] = {
    "flipped and scaled": lambda block: -3.0 * block,
    "rows of other ids": lambda block: np.roll(block, 7, axis=0),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_v2_flags_the_liar_and_agrees_with_v1(cluster: tuple[Fusion, LyingParty], lie: str) -> None:
    # Prepare
    fusion, liar = cluster
    liar.lie = lambda block: block
    _, honest = _both(fusion)
    liar.lie = LIES[lie]
    # Execute
    try:
        v1, v2 = _both(fusion)
    finally:
        liar.lie = lambda block: block
    # Assert: /v1 and /v2 say the same; the liar is flagged in (nearly) every row and the honest
    # parties in (nearly) none, nobody is missing (the lies are well formed), and the labels
    # survive the lie (measured for both lies: the liar flagged in 40 of 40 rows, no honest party
    # flagged, every label the honest run's)
    assert v2["label"].tolist() == [p["label"] for p in v1]
    np.testing.assert_array_equal(v2["flagged"], _masks(v1, "flagged_parties"))
    np.testing.assert_array_equal(v2["missing"], _masks(v1, "missing_parties"))
    np.testing.assert_allclose(v2["probabilities"], [p["probabilities"] for p in v1], atol=1e-6)
    per_party = v2["flagged"].mean(axis=0)
    assert per_party[LIAR] >= 0.9 and np.delete(per_party, LIAR).max() <= 0.1, per_party
    assert not v2["missing"].any()
    assert np.mean(v2["label"] == honest["label"]) >= 0.9


def test_v2_shows_a_silent_party_as_missing(cluster: tuple[Fusion, LyingParty]) -> None:
    # Prepare
    fusion, liar = cluster
    liar.lie = None
    # Execute
    try:
        v1, v2 = _both(fusion)
    finally:
        liar.lie = lambda block: block
    # Assert
    assert v2["missing"][:, LIAR].all() and v2["missing"].sum() == len(IDS)
    np.testing.assert_array_equal(v2["missing"], _masks(v1, "missing_parties"))
    assert v2["label"].tolist() == [p["label"] for p in v1]
