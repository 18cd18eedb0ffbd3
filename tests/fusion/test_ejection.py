"""Ejection of stalled parties and answers from another bundle, at the party pool: real gRPC
servers on loopback that stall (hold every call past the deadline, as a SIGSTOPped process does)
or answer from a bundle other than the one asked for."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import pytest

from copur.roles.fusion.ejection import Breaker
from copur.roles.fusion.metrics import FusionMetrics
from copur.roles.fusion.parties import EjectionConfig, PartyPool
from copur_client.serde import embed_response, party_info_to_proto
from copur_client.v1 import party_pb2, party_pb2_grpc
from copur_client.wire import PartyInfo

M, E = 3, 4
BUNDLE, OTHER = "bundle-active", "bundle-foreign"
STALLER, FOREIGN = 1, 2
DEADLINE_S = 0.2
IDS = list(range(8))


class Party(party_pb2_grpc.PartyServiceServicer):
    """Party ``index`` answering ones from bundle ``bundle``; while ``stalled`` is set every call
    hangs (until cleared, at most 5 s), as a frozen process's would. ``calls`` counts Embed
    calls."""

    def __init__(self, index: int, bundle: str) -> None:
        self.index, self.bundle = index, bundle
        self.stalled = threading.Event()
        self.released = threading.Event()
        self.calls = 0

    def _hang(self) -> None:
        if self.stalled.is_set():
            self.released.wait(5.0)

    def Embed(self, request: party_pb2.EmbedRequest, context: grpc.ServicerContext) -> Any:
        self.calls += 1
        self._hang()
        block = np.ones((len(request.sample_ids), E), np.float32)
        return embed_response(block, self.index, self.bundle)

    def Info(self, request: party_pb2.InfoRequest, context: grpc.ServicerContext) -> Any:
        self._hang()
        info = PartyInfo(
            index=self.index,
            name=f"fake-{self.index}",
            feature_dim=1,
            emb_dim=E,
            dataset="fake",
            num_samples=100,
            num_parties=M,
            bundle_id=self.bundle,
            bundles=(self.bundle,),
        )
        return party_info_to_proto(info)

    def resume(self) -> None:
        self.stalled.clear()
        self.released.set()


@pytest.fixture
def parties() -> Iterator[tuple[list[str], list[Party]]]:
    fakes = [Party(0, BUNDLE), Party(STALLER, BUNDLE), Party(FOREIGN, OTHER)]
    servers, targets = [], []
    for fake in fakes:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        party_pb2_grpc.add_PartyServiceServicer_to_server(fake, server)
        targets.append(f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}")
        server.start()
        servers.append(server)
    yield targets, fakes
    for fake in fakes:
        fake.resume()
    for server in servers:
        server.stop(0).wait()


def _pool(
    targets: list[str],
    metrics: FusionMetrics,
    ejection: EjectionConfig = EjectionConfig(eject_after=2, base_s=0.3, max_s=0.6),
) -> PartyPool:
    return PartyPool(
        targets=targets,
        emb_dim=E,
        deadline_s=DEADLINE_S,
        metrics=metrics,
        bundle_id=BUNDLE,
        ejection=ejection,
    )


def _sample(metrics: FusionMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_the_breaker_ejects_after_k_failures_in_a_row_and_doubles_its_backoff() -> None:
    # Prepare
    b = Breaker(eject_after=3, base_s=1.0, max_s=3.0)

    # Execute / Assert: two failures keep it in, an answer resets the count
    assert [b.failure(0.0), b.failure(0.0)] == [False, False]
    b.success()
    assert [b.failure(0.0), b.failure(0.0), b.failure(10.0)] == [False, False, True]
    assert b.ejected and b.ejected_until == 11.0
    # a failed probe ejects again, each time twice as long, never over max_s
    b.probe_failed(20.0)
    assert b.ejected_until == 22.0
    b.probe_failed(30.0)
    assert b.ejected_until == 33.0 and b.ejections == 3
    b.success()
    assert not b.ejected and b.consecutive == 0 and b.backoff_s == 1.0


def test_eject_after_zero_never_ejects() -> None:
    b = Breaker(eject_after=0, base_s=1.0, max_s=3.0)
    assert not any(b.failure(float(t)) for t in range(100))
    assert not b.ejected


def test_a_stalled_party_is_ejected_then_readmitted_when_it_answers_again(
    parties: tuple[list[str], list[Party]],
) -> None:
    # Prepare: party STALLER frozen
    targets, fakes = parties
    metrics = FusionMetrics()
    fakes[STALLER].stalled.set()
    seen: dict[str, Any] = {}

    async def run() -> None:
        pool = _pool(targets, metrics)
        try:
            # two batches wait the deadline for it: the second ejects it
            for _ in range(2):
                fetched = await pool.fetch(IDS, bundle_id=BUNDLE, max_norms=[1e3] * M)
            seen["after two"] = (fetched.reasons[STALLER], pool.states[STALLER].state)
            calls = fakes[STALLER].calls
            started = time.perf_counter()
            ejected = await pool.fetch(IDS, bundle_id=BUNDLE, max_norms=[1e3] * M)
            seen["ejected batch s"] = time.perf_counter() - started
            seen["ejected"] = (ejected.reasons[STALLER], bool(ejected.observed[:, STALLER].any()))
            seen["calls while ejected"] = fakes[STALLER].calls - calls
            seen["gauge ejected"] = _sample(metrics, "copur_party_ejected", party=str(STALLER))
            # still frozen: the probe after the first backoff fails, it stays out
            await asyncio.sleep(0.3 + DEADLINE_S + 0.1)
            seen["still out"] = pool.states[STALLER].breaker.ejected
            # resumed: the next probe re-admits it
            fakes[STALLER].resume()
            resumed = time.perf_counter()
            while pool.states[STALLER].breaker.ejected and time.perf_counter() - resumed < 5:
                await asyncio.sleep(0.02)
            seen["readmitted s"] = time.perf_counter() - resumed
            back = await pool.fetch(IDS, bundle_id=BUNDLE, max_norms=[1e3] * M)
            seen["back"] = (back.reasons[STALLER], bool(back.observed[:, STALLER].all()))
            seen["state back"] = pool.states[STALLER].state
        finally:
            await pool.close()

    # Execute
    asyncio.run(run())

    # Assert: out after K=2 deadline misses; batches no longer wait for it nor call it
    assert seen["after two"] == ("timeout", "ejected")
    assert seen["ejected"] == ("ejected", False)
    assert seen["calls while ejected"] == 0
    assert seen["ejected batch s"] < DEADLINE_S / 2
    assert seen["gauge ejected"] == 1.0
    assert seen["still out"]
    # back within the longest backoff plus a probe
    assert seen["readmitted s"] < 0.6 + DEADLINE_S + 0.5
    assert seen["back"] == ("", True) and seen["state back"] == "up"
    assert _sample(metrics, "copur_party_ejected", party=str(STALLER)) == 0.0
    assert _sample(metrics, "copur_party_ejections_total", party=str(STALLER)) >= 2.0
    ejected_samples = _sample(
        metrics, "copur_party_missing_samples_total", party=str(STALLER), reason="ejected"
    )
    assert ejected_samples == len(IDS)


def test_an_answer_from_another_bundle_is_missing_with_reason_version_and_never_ejects(
    parties: tuple[list[str], list[Party]],
) -> None:
    # Prepare
    targets, _fakes = parties
    metrics = FusionMetrics()
    seen: dict[str, Any] = {}

    async def run() -> None:
        pool = _pool(targets, metrics)
        try:
            for _ in range(5):
                fetched = await pool.fetch(IDS, bundle_id=BUNDLE, max_norms=[1e3] * M)
            seen["fetched"] = fetched
            seen["state after embed"] = pool.states[FOREIGN].state
            await pool.probe(M)
            seen["state after probe"] = pool.states[FOREIGN].state
            seen["bundles"] = pool.states[FOREIGN].bundles
            seen["ejected"] = pool.states[FOREIGN].breaker.ejected
        finally:
            await pool.close()

    # Execute
    asyncio.run(run())

    # Assert: its blocks are missing with reason version, every other party's came
    fetched = seen["fetched"]
    assert fetched.reasons == ["", "", "version"]
    assert fetched.observed[:, :FOREIGN].all() and not fetched.observed[:, FOREIGN].any()
    assert seen["state after embed"] == seen["state after probe"] == "version"
    assert seen["bundles"] == [OTHER]
    assert not seen["ejected"]
    assert _sample(
        metrics, "copur_party_missing_samples_total", party=str(FOREIGN), reason="version"
    ) == 5 * len(IDS)
    assert _sample(metrics, "copur_party_up", party=str(FOREIGN)) == 0.0
    assert _sample(metrics, "copur_party_ejections_total", party=str(FOREIGN)) == 0.0


def test_an_ejected_party_whose_info_answers_is_probed_at_once(
    parties: tuple[list[str], list[Party]],
) -> None:
    # Prepare: a long backoff, party STALLER frozen until ejected
    targets, fakes = parties
    metrics = FusionMetrics()
    fakes[STALLER].stalled.set()
    seen: dict[str, Any] = {}

    async def run() -> None:
        pool = _pool(targets, metrics, EjectionConfig(eject_after=1, base_s=30.0, max_s=60.0))
        try:
            await pool.fetch(IDS, bundle_id=BUNDLE, max_norms=[1e3] * M)
            seen["ejected"] = pool.states[STALLER].breaker.ejected
            # Execute: it answers again; the fusion center's periodic Info probe sees it
            fakes[STALLER].resume()
            started = time.perf_counter()
            await pool.probe(M)
            while pool.states[STALLER].breaker.ejected and time.perf_counter() - started < 5:
                await asyncio.sleep(0.02)
            seen["readmitted s"] = time.perf_counter() - started
        finally:
            await pool.close()

    asyncio.run(run())

    # Assert: back long before its 30 s backoff ended
    assert seen["ejected"]
    assert seen["readmitted s"] < 2.0
