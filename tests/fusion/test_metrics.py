"""The fusion center's per-party series that the alert rules of deploy/prometheus read:
``copur_party_up`` (1 answering, 0 not), ``copur_party_missing_samples_total`` (samples, not
calls, whose block was missing), ``copur_min_parties``, and every per-party series present at zero
before anything happened. A PartyPool against fake gRPC parties on real ports: one honest, one
answering garbage in some rows, one unreachable."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from concurrent import futures
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import generate_latest

from copur.roles.fusion import FusionHandler, FusionSettings
from copur.roles.fusion.metrics import MISSING_REASONS, FusionMetrics
from copur.roles.fusion.parties import PartyPool
from copur.science.bundle import Bundle
from copur.transport.topology import FusionNode
from copur_client.serde import embed_response, party_info_to_proto
from copur_client.v1 import party_pb2, party_pb2_grpc
from copur_client.wire import PartyInfo

M, E, N = 3, 4, 100
BUNDLE = "fake-bundle"
HONEST, GARBLED, UNREACHABLE = 0, 1, 2
BAD_ROWS = [1, 3]  # positions in the request whose rows the garbling party spoils
IDS = list(range(10, 20))


class FakeParty(party_pb2_grpc.PartyServiceServicer):
    """Party ``index``: ones for every id (NaN in the rows at ``bad_rows``), or UNAVAILABLE while
    ``down``."""

    def __init__(self, index: int, bad_rows: list[int]) -> None:
        self.index, self.bad_rows, self.down = index, bad_rows, False

    def Embed(self, request: party_pb2.EmbedRequest, context: grpc.ServicerContext) -> Any:
        if self.down:
            context.abort(grpc.StatusCode.UNAVAILABLE, "party is down")
        block = np.ones((len(request.sample_ids), E), np.float32)
        block[self.bad_rows] = np.nan
        return embed_response(block, self.index, request.bundle_id)

    def Info(self, request: party_pb2.InfoRequest, context: grpc.ServicerContext) -> Any:
        return party_info_to_proto(
            PartyInfo(
                index=self.index,
                name=f"fake-{self.index}",
                feature_dim=1,
                emb_dim=E,
                dataset="fake",
                num_samples=N,
                num_parties=M,
                bundle_id=BUNDLE,
                bundles=(BUNDLE,),
            )
        )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def parties() -> Iterator[tuple[list[str], dict[int, FakeParty]]]:
    fakes = {HONEST: FakeParty(HONEST, []), GARBLED: FakeParty(GARBLED, BAD_ROWS)}
    servers, targets = [], []
    for i in range(M):
        if i not in fakes:
            targets.append(f"127.0.0.1:{_closed_port()}")
            continue
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        party_pb2_grpc.add_PartyServiceServicer_to_server(fakes[i], server)
        targets.append(f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}")
        server.start()
        servers.append(server)
    yield targets, fakes
    for server in servers:
        server.stop(0).wait()


def _pool(targets: list[str], metrics: FusionMetrics) -> PartyPool:
    return PartyPool(targets=targets, emb_dim=E, deadline_s=2.0, metrics=metrics, bundle_id=BUNDLE)


def _value(metrics: FusionMetrics, name: str, party: int) -> float | None:
    return metrics.registry.get_sample_value(name, {"party": str(party)})


def _per_party(metrics: FusionMetrics, name: str) -> list[float | None]:
    return [_value(metrics, name, i) for i in range(M)]


def _missing(metrics: FusionMetrics, reason: str | None = None) -> list[float]:
    """``copur_party_missing_samples_total`` per party, of ``reason`` or summed over all."""
    reasons = [reason] if reason else MISSING_REASONS
    get = metrics.registry.get_sample_value
    name = "copur_party_missing_samples_total"
    return [
        sum(get(name, {"party": str(i), "reason": r}) or 0.0 for r in reasons) for i in range(M)
    ]


def test_every_per_party_series_exists_at_zero_before_any_call() -> None:
    # Prepare
    metrics = FusionMetrics()

    # Execute
    metrics.init_parties(M)
    text = generate_latest(metrics.registry).decode()

    # Assert: present (so that rate() counts the first increments), and nothing counted yet
    for i in range(M):
        for series in ("copur_party_up", "copur_party_flags_total", "copur_party_ejected"):
            assert f'{series}{{party="{i}"}} 0.0' in text, (series, i)
        for reason in MISSING_REASONS:
            missing = f'copur_party_missing_samples_total{{party="{i}",reason="{reason}"}} 0.0'
            assert missing in text, (reason, i)
    assert f'party="{M}"' not in text


def test_missing_samples_are_counted_per_sample_and_failures_per_call(
    parties: tuple[list[str], dict[int, FakeParty]],
) -> None:
    # Prepare
    targets, _ = parties
    metrics = FusionMetrics()

    async def run() -> np.ndarray:
        pool = _pool(targets, metrics)
        try:
            await pool.fetch(IDS, bundle_id=BUNDLE, max_norms=[100.0] * M)
            return (await pool.fetch(IDS, bundle_id=BUNDLE, max_norms=[100.0] * M)).observed
        finally:
            await pool.close()

    # Execute: two batches of ten samples
    observed = asyncio.run(run())

    # Assert: every sample of the unreachable party, the spoiled rows of the garbling one
    assert observed.sum(axis=0).tolist() == [len(IDS), len(IDS) - len(BAD_ROWS), 0]
    assert _missing(metrics) == [0.0, 2.0 * len(BAD_ROWS), 2.0 * len(IDS)]
    assert _missing(metrics, "invalid") == [0.0, 2.0 * len(BAD_ROWS), 0.0]
    assert _missing(metrics, "error") == [0.0, 0.0, 2.0 * len(IDS)]
    failures = metrics.registry.get_sample_value(
        "copur_party_failures_total", {"party": str(UNREACHABLE), "reason": "error"}
    )
    assert failures == 2.0


def test_party_up_follows_the_probe_and_the_embed_calls(
    parties: tuple[list[str], dict[int, FakeParty]],
) -> None:
    # Prepare
    targets, fakes = parties
    metrics = FusionMetrics()
    seen: dict[str, list[float | None]] = {}

    async def run() -> None:
        pool = _pool(targets, metrics)
        try:
            seen["before"] = _per_party(metrics, "copur_party_up")
            up = await pool.probe(M)
            seen["probed"] = [*_per_party(metrics, "copur_party_up"), float(up)]
            fakes[HONEST].down = True
            await pool.fetch(IDS, bundle_id=BUNDLE, max_norms=[100.0] * M)
            seen["honest down"] = _per_party(metrics, "copur_party_up")
            fakes[HONEST].down = False
            await pool.fetch(IDS, bundle_id=BUNDLE, max_norms=[100.0] * M)
            seen["honest back"] = _per_party(metrics, "copur_party_up")
        finally:
            await pool.close()

    # Execute
    asyncio.run(run())

    # Assert: unknown is 0; the probe, then a failed call, then a good answer set it
    assert seen["before"] == [0.0, 0.0, 0.0]
    assert seen["probed"][:M] == [1.0, 1.0, 0.0]
    assert seen["probed"][M] == 2.0  # what probe() returns: the copur_parties_up value
    assert metrics.registry.get_sample_value("copur_parties_up") == 2.0
    assert seen["honest down"] == [0.0, 1.0, 0.0]
    assert seen["honest back"] == [1.0, 1.0, 0.0]


def test_min_parties_is_exported_from_the_topology(mfeat_bundle: Bundle) -> None:
    # Prepare: the handler reads the bundle, nothing else, before start()
    node = FusionNode(min_parties=2)
    targets = [f"127.0.0.1:{p}" for p in range(1, mfeat_bundle.manifest.num_parties + 1)]

    # Execute
    handler = FusionHandler(
        bundle=mfeat_bundle,
        worker=SimpleNamespace(device="cpu"),  # type: ignore[arg-type]
        settings=FusionSettings(node=node, targets=targets),
    )

    # Assert: the minimum, and the bundle batches will run on
    assert handler.metrics.registry.get_sample_value("copur_min_parties") == 2.0
    assert "copur_min_parties 2.0" in generate_latest(handler.metrics.registry).decode()
    active = {"bundle": mfeat_bundle.manifest.bundle_id}
    assert handler.metrics.registry.get_sample_value("copur_bundle_active", active) == 1.0
