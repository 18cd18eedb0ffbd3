"""The lying-party harness of the fusion tests (tests/fusion/test_lying_party.py and
test_oip_attack.py): five honest parties (real party servers, in process) and one liar, party
LIAR, a party server on a real port whose answers are crafted per test, in front of a real
FusionHandler whose FastAPI app is driven through ``httpx.ASGITransport`` on an event loop of its
own. A spy on the defense worker records every batch that reaches the defense."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent import futures
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import numpy as np
import torch

from copur.roles.fusion import FusionHandler, FusionSettings
from copur.roles.fusion.http_api import create_http_app
from copur.roles.fusion.worker import DefenseResult, Worker
from copur.roles.party import PartyApp, PartyCore
from copur.science.bundle import Bundle
from copur.transport.topology import FusionNode
from copur_client.serde import embed_response, party_info_to_proto
from copur_client.v1 import party_pb2, party_pb2_grpc

__all__ = [
    "LIAR",
    "Answer",
    "Craft",
    "Fusion",
    "Lie",
    "LyingParty",
    "M",
    "Spy",
    "answer",
    "lying",
    "lying_cluster",
]

LIAR = 2  # the lying party's index
M = 6  # parties in all
T = TypeVar("T")
Craft = Callable[[np.ndarray], party_pb2.EmbedResponse]
"""The liar's honest block -> the answer it sends."""
Lie = Callable[[np.ndarray], np.ndarray]
"""The liar's honest block -> the block it sends (as a well-formed float32 answer)."""


def answer(block: np.ndarray, party: int = LIAR) -> party_pb2.EmbedResponse:
    """A well-formed answer carrying ``block`` (any shape) as float32: the honest craft."""
    return embed_response(block, party)


def lying(lie: Lie) -> Craft:
    """The craft that sends ``lie`` of the honest block as a well-formed float32 answer."""

    def craft(block: np.ndarray) -> party_pb2.EmbedResponse:
        return answer(np.ascontiguousarray(lie(block), dtype=np.float32))

    return craft


class LyingParty(party_pb2_grpc.PartyServiceServicer):
    """Party LIAR's real extractor behind a switch: ``craft`` turns its honest block into the
    answer sent (``answer``: the honest one); None makes it unavailable (the reference for a
    missing block)."""

    def __init__(self, core: PartyCore) -> None:
        self.core = core
        self.craft: Craft | None = answer

    def Embed(
        self, request: party_pb2.EmbedRequest, context: grpc.ServicerContext
    ) -> party_pb2.EmbedResponse:
        craft = self.craft
        if craft is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "party is down")
            raise AssertionError("context.abort returned")  # it raises; its stub says None
        reply = craft(self.core.embed_ids(list(request.sample_ids)))
        reply.bundle_id = (
            self.core.bundle_id
        )  # a liar names the bundle asked for, as honest ones do
        return reply

    def Info(
        self, request: party_pb2.InfoRequest, context: grpc.ServicerContext
    ) -> party_pb2.PartyInfo:
        bundle = self.core.bundle_id
        return party_info_to_proto(replace(self.core.info, bundle_id=bundle, bundles=(bundle,)))


@dataclass
class Spy:
    """Every (h, observed) handed to the defense worker."""

    calls: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def wrap(self, run_sync: Callable[..., DefenseResult]) -> Callable[..., DefenseResult]:
        """``run_sync`` recording its (h, observed) first."""

        def spied(
            h: np.ndarray, observed: np.ndarray, defense: str, certify: bool
        ) -> DefenseResult:
            self.calls.append((h.copy(), observed.copy()))
            return run_sync(h, observed, defense, certify)

        return spied


@dataclass
class Answer:
    """A /v1/predict answer and what reached the defense for it."""

    status: int
    predictions: list[dict[str, Any]]
    h: np.ndarray  # what reached the defense: (n, M*e)
    observed: np.ndarray  # (n, M)


class Fusion:
    """A FusionHandler and its FastAPI app (no keys) on an event loop of its own (a background
    thread)."""

    def __init__(self, handler: FusionHandler, spy: Spy) -> None:
        self.handler, self.spy = handler, spy
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="fusion-loop", daemon=True
        )
        self.thread.start()
        self.call(handler.start())
        self.client = self.call(self._client())

    async def _client(self) -> httpx.AsyncClient:
        # API keys are not what is tested here: the app runs without.
        app = create_http_app(self.handler, auth=None)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fc")

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the fusion loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST ``body`` (JSON) to ``path``."""
        return self.call(self.client.post(path, json=body, timeout=120))

    def predict(self, ids: list[int]) -> Answer:
        """POST /v1/predict with the copur defense; what reached the worker for it."""
        self.spy.calls.clear()
        r = self.post("/v1/predict", {"sample_ids": ids, "defense": "copur"})
        assert len(self.spy.calls) <= 1
        h, observed = (
            self.spy.calls[0] if self.spy.calls else (np.zeros((0, 0)), np.zeros((0, M), bool))
        )
        return Answer(
            r.status_code,
            r.json().get("predictions", []) if r.status_code == 200 else [],
            h,
            observed,
        )

    def close(self) -> None:
        """Close the client, stop the handler and the loop."""
        self.call(self.client.aclose())
        self.call(self.handler.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@contextmanager
def lying_cluster(bundle_dir: Path, bundle: Bundle) -> Iterator[tuple[Fusion, LyingParty]]:
    """The whole set-up over ``bundle``: the honest parties, the liar's gRPC server, a spied CPU
    worker and a FusionHandler (FusionNode(min_parties=4, deadline_ms=10_000, max_delay_ms=1))
    over all M; (fusion, liar), the liar honest. Everything is stopped on the way out."""
    with ExitStack() as stack:
        honest: list[PartyApp] = []
        for i in range(M):
            if i != LIAR:
                app = PartyApp(core=PartyCore.from_bundle(bundle_dir, i)).start()
                stack.callback(app.stop)
                honest.append(app)
        liar = LyingParty(PartyCore.from_bundle(bundle_dir, LIAR))
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        party_pb2_grpc.add_PartyServiceServicer_to_server(liar, server)
        liar_port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        stack.callback(lambda: server.stop(1).wait())
        ports = iter(app.port for app in honest)
        targets = [f"127.0.0.1:{liar_port if i == LIAR else next(ports)}" for i in range(M)]
        spy = Spy()
        worker = Worker(bundle, device=torch.device("cpu"))
        stack.callback(worker.close)
        worker.run_sync = spy.wrap(worker.run_sync)  # type: ignore[method-assign]
        node = FusionNode(min_parties=4, deadline_ms=10_000, max_delay_ms=1)
        handler = FusionHandler(
            bundle=bundle, worker=worker, settings=FusionSettings(node=node, targets=targets)
        )
        fusion = Fusion(handler, spy)
        stack.callback(fusion.close)
        yield fusion, liar
