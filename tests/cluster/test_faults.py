"""Faults on a real cluster (6 parties, an adversary in front of party 1, the fusion center;
processes on loopback, started by the launcher): a party SIGKILLed under load is a missing block
and rejoins once restarted; a party slowed past the deadline is missing while latency stays
bounded by the deadline; the fusion center restarted while clients call is ridden out by the
client's retries. No timing is asserted beyond the deadline bound and generous waits for
recovery."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from clusterkit import running_cluster, wait_for
from copur.operations.launcher import Cluster
from copur_client import CopurClientError, FusionClient

DEADLINE_MS = 2000.0
LATENCY_MARGIN_S = 2.5  # on top of the deadline: batching, the defense, a busy 2-core machine
# measured: under 1 s (gRPC reconnect backoff capped at 2 s); 17 s uncapped after a long outage
REJOIN_S = 15.0
KILLED, SLOWED = 3, 1  # party 1 sits behind the adversary


@pytest.fixture(scope="module")
def cluster(mfeat_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    fusion = {"deadline_ms": DEADLINE_MS, "min_parties": 4, "max_delay_ms": 2}
    with running_cluster(
        tmp_path_factory.mktemp("faults"), mfeat_bundle_dir, fusion=fusion
    ) as running:
        yield running


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    missing: (
        tuple[int, ...] | None
    )  # parties missing in the answer (the union over its ids); None: failed
    error: str = ""


@dataclass
class Load:
    """``threads`` callers, each calling predict on a few ids back to back with its own client."""

    make_client: Callable[[], FusionClient]
    threads: int = 4
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        self.workers = [
            threading.Thread(target=self._call, args=(k,), daemon=True) for k in range(self.threads)
        ]
        for w in self.workers:
            w.start()
        return self

    def _call(self, k: int) -> None:
        with self.make_client() as client:
            i = 0
            while not self.stop.is_set():
                ids = [(k * 397 + i * 5 + j) % 2000 for j in range(5)]
                started = time.monotonic()
                try:
                    preds = client.predict(ids)
                except CopurClientError as exc:
                    self.outcomes.append(Outcome(started, time.monotonic(), None, str(exc)))
                else:
                    missing = tuple(sorted({m for p in preds for m in p.missing_parties}))
                    self.outcomes.append(Outcome(started, time.monotonic(), missing))
                i += 1

    def answered(self, after: float = 0.0) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.missing is not None and o.started > after]

    def errors(self) -> list[str]:
        return [o.error for o in list(self.outcomes) if o.missing is None]

    def finish(self) -> None:
        self.stop.set()
        for w in self.workers:
            w.join(120)


def _seen(load: Load, after: float, *, missing: bool) -> bool:
    """Whether an answer to a call made after ``after`` had the killed party missing (or
    observed)."""
    return any((KILLED in (o.missing or ())) == missing for o in load.answered(after))


def _party_state(cluster: Cluster, index: int) -> dict:
    return httpx.get(f"{cluster.fusion_url}/v1/parties", timeout=30).json()["parties"][index]


def test_a_party_killed_under_load_is_missing_and_rejoins_once_restarted(cluster: Cluster) -> None:
    # Prepare: concurrent callers, no client retries (a 5xx would show)
    load = Load(lambda: FusionClient(cluster.fusion_url, timeout=60, retries=0)).start()
    try:
        wait_for("answers before the kill", lambda: len(load.answered()) >= 8, 120)
        # Execute: SIGKILL the party, keep the load on, restart it (the fusion center is not
        # touched)
        killed_at = time.monotonic()
        cluster.kill(f"party-{KILLED}")
        wait_for(
            "the killed party reported missing", lambda: _seen(load, killed_at, missing=True), 60
        )
        seen = time.monotonic()
        wait_for("answers keep flowing", lambda: len(load.answered(seen)) >= 10, 120)
        restart_began = time.monotonic()
        cluster.restart(f"party-{KILLED}", timeout=240)
        back = time.monotonic()
        rejoin_s = wait_for(
            "its block observed again", lambda: _seen(load, back, missing=False), REJOIN_S
        )
    finally:
        load.finish()
    # Assert: never an error (5 of 6 parties >= min_parties 4), the party missing while down, then
    # back
    assert load.errors() == []
    down = [o for o in load.answered(seen) if o.ended < restart_began]
    assert len(down) >= 10 and all(KILLED in (o.missing or ()) for o in down)
    assert rejoin_s < REJOIN_S
    wait_for(
        "the fusion center sees it up", lambda: _party_state(cluster, KILLED)["state"] == "up", 30
    )


def _set_policy(cluster: Cluster, attack: str, **params: float) -> None:
    r = httpx.put(
        f"{cluster.control_url(SLOWED)}/v1/policy",
        json={"attack": attack, "params": params},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def test_a_party_slowed_past_the_deadline_is_missing_and_latency_stays_bounded(
    cluster: Cluster,
) -> None:
    # Prepare: the adversary in front of party 1 holds every call three deadlines
    deadline_s = cluster.topology.fusion.deadline_ms / 1000.0
    _set_policy(cluster, "delay", ms=3 * cluster.topology.fusion.deadline_ms)
    answers, latencies = [], []
    try:
        # Execute
        with FusionClient(cluster.fusion_url, timeout=60, retries=0) as client:
            for k in range(3):
                started = time.monotonic()
                answers.append(client.predict([10 + k, 500 + k, 1500 + k]))
                latencies.append(time.monotonic() - started)
    finally:
        _set_policy(cluster, "none")
    metrics = httpx.get(f"{cluster.fusion_url}/metrics", timeout=30).text
    # Assert: answered about when the deadline passed, the slow party missing (its failure a
    # timeout)
    assert max(latencies) < deadline_s + LATENCY_MARGIN_S, latencies
    assert all(p.missing_parties == [SLOWED] for preds in answers for p in preds)
    assert f'copur_party_failures_total{{party="{SLOWED}",reason="timeout"}}' in metrics
    with FusionClient(cluster.fusion_url, timeout=60, retries=0) as client:
        wait_for(
            "the party answers again", lambda: client.predict([3])[0].missing_parties == [], 30, 0.5
        )


def test_the_fusion_center_restarted_while_clients_call_is_ridden_out(cluster: Cluster) -> None:
    # Prepare: callers with the client library's default retry policy
    load = Load(lambda: FusionClient(cluster.fusion_url, timeout=60), threads=3).start()
    budget = FusionClient(cluster.fusion_url).retry_budget_s
    try:
        wait_for("answers before the restart", lambda: len(load.answered()) >= 6, 120)
        # Execute: SIGKILL the fusion center; calls made now meet a refused port; start it again
        killed_at = time.monotonic()
        cluster.kill("fusion")
        time.sleep(1.0)
        down = (
            time.monotonic()
        )  # the fusion center is certainly not serving now: it starts only below
        cluster.restart("fusion", timeout=240)
        back = time.monotonic()
        wait_for("answers after the restart", lambda: len(load.answered(back)) >= 6, 120)
    finally:
        load.finish()
    # Assert: no call failed; calls in flight at the kill or made during the gap were answered once
    # it was back
    assert load.errors() == []
    # (Spanning the moment it was down, not `back`: a retried call can be answered a few ms before
    # the launcher's
    # readiness poll notices the restarted process.)
    across = [o for o in load.answered(killed_at - 60) if o.started < down and o.ended > down]
    assert across, "no call spanned the restart"
    assert all(
        o.ended - o.started < budget + 30 for o in across
    )  # the budget's waits and one answer
