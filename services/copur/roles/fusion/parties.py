"""The fusion center's view of the parties: one Embed call per party per batch, concurrently,
with a deadline, for the bundle the batch runs on; every answer validated. A party that errs,
times out, answers garbage or answers from another bundle is a missing block with that reason; a
party that keeps missing its deadline is ejected (not called) until a background probe answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import grpc
import numpy as np

from copur.roles.fusion.ejection import Breaker
from copur.roles.fusion.metrics import MISSING_REASONS, FusionMetrics
from copur.transport.grpcutil import MAX_MESSAGE_BYTES, RECONNECT_OPTIONS
from copur.transport.tls.credentials import TlsIdentity, aio_channel
from copur_client.serde import SerdeError, array_from_proto, embed_request, party_info_from_proto
from copur_client.v1 import party_pb2, party_pb2_grpc

__all__ = ["EjectionConfig", "Fetched", "PartyPool", "PartyState", "validate_block"]

log = logging.getLogger("copur.roles.fusion")

PROBE_SAMPLE = 0  # the sample id an ejected party is probed with (every data set has it)


@dataclass(frozen=True, kw_only=True)
class EjectionConfig:
    """When a stalled party is taken out of the path: after ``eject_after`` consecutive deadline
    misses or errors (0: never), for ``base_s`` doubling per ejection in a row up to ``max_s``."""

    eject_after: int = 3
    base_s: float = 1.0
    max_s: float = 8.0


@dataclass
class PartyState:
    """What the fusion center knows of one party: its address, state (``up``, ``down``,
    ``ejected``, ``version`` (it does not serve the active bundle), ``mismatch`` or ``unknown``),
    its failures (the last ten with their time), the last error and the last reason a block of it
    was missing, the bundles its last Info listed (current first) and its breaker."""

    index: int
    address: str
    breaker: Breaker
    state: str = "unknown"
    last_error: str = ""
    last_missing: str = ""
    failures: int = 0
    bundles: list[str] = field(default_factory=list)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=10))


@dataclass(frozen=True)
class Fetched:
    """Embeddings of a batch: h (n, M*e) with zeros where unobserved, observed (n, M), and per
    party why its unobserved rows are missing (``""`` when every row came)."""

    h: np.ndarray
    observed: np.ndarray
    reasons: list[str]


def validate_block(
    block: np.ndarray, *, n: int, emb_dim: int, max_norm: float
) -> tuple[np.ndarray, str]:
    """Per-row validity of one party's answer: right shape, finite, norm under ``max_norm``, no
    subnormal values (no extractor output is that small, but integer or byte-swapped data read as
    float32 is: the int32 1 reads as 1.4e-45).

    Returns (valid rows (n,), reason) — all False with a reason when the whole answer is
    unusable; the reason names the first kind of fault found (non-finite, then absurd norm, then
    subnormal)."""
    if block.shape != (n, emb_dim):
        return np.zeros(n, dtype=bool), f"shape {block.shape}, expected {(n, emb_dim)}"
    finite = np.isfinite(block).all(axis=1)
    clean = np.where(finite[:, None], block, 0.0).astype(
        np.float64
    )  # float64: no overflow near float32's max
    sane = np.linalg.norm(clean, axis=1) <= max_norm
    normal = ~((clean != 0) & (np.abs(clean) < np.finfo(np.float32).tiny)).any(axis=1)
    valid = finite & sane & normal
    faults = [
        (finite, "non-finite values"),
        (sane, "absurd norm"),
        (normal, "subnormal values (not float32 data)"),
    ]
    return valid, next((why for ok, why in faults if not ok.all()), "")


class PartyPool:
    """gRPC clients for every party (asyncio); created inside the running event loop.

    With ``tls`` every channel presents the fusion center's certificate and accepts only a server
    certificate signed by the CA that names ``peer_names[i]`` (``party-<i>`` or
    ``adversary-<i>``; the target's host when ``peer_names`` is empty). None: plaintext.
    ``bundle_id``: the active bundle (probes ask for it; :meth:`fetch` is told the batch's)."""

    def __init__(
        self,
        *,
        targets: Sequence[str],
        emb_dim: int,
        deadline_s: float,
        metrics: FusionMetrics,
        bundle_id: str,
        ejection: EjectionConfig | None = None,
        tls: TlsIdentity | None = None,
        peer_names: Sequence[str] = (),
    ) -> None:
        opts = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), *RECONNECT_OPTIONS]
        names: list[str | None] = [*peer_names] if peer_names else [None] * len(targets)
        self.channels = [
            aio_channel(t, tls, server_name=n, options=opts)
            for t, n in zip(targets, names, strict=True)
        ]
        self.stubs = [party_pb2_grpc.PartyServiceStub(c) for c in self.channels]
        eject = ejection or EjectionConfig()
        self.states = [
            PartyState(
                index=i,
                address=t,
                breaker=Breaker(
                    eject_after=eject.eject_after, base_s=eject.base_s, max_s=eject.max_s
                ),
            )
            for i, t in enumerate(targets)
        ]
        self.emb_dim = emb_dim
        self.deadline_s = deadline_s
        self.metrics = metrics
        self.bundle_id = bundle_id
        self._readmitting: dict[int, asyncio.Task[None]] = {}
        self._wake: dict[int, asyncio.Event] = {}  # set when an ejected party's Info answers
        metrics.init_parties(len(targets))

    @property
    def num_parties(self) -> int:
        """How many parties the pool reaches."""
        return len(self.stubs)

    def _fail(self, i: int, reason: str, detail: str) -> None:
        st = self.states[i]
        st.failures += 1
        st.last_error = detail
        st.recent.append(f"{time.strftime('%H:%M:%S')} {reason}: {detail}")
        self.metrics.party_failures.labels(party=str(i), reason=reason).inc()
        log.warning("event=party_failure party=%d reason=%s detail=%r", i, reason, detail)

    def _publish_state(self, i: int) -> None:
        """``copur_party_up{party=i}``: 1 while party ``i``'s state is ``up``, else 0."""
        self.metrics.party_up.labels(party=str(i)).set(int(self.states[i].state == "up"))

    def _stalled(self, i: int) -> None:
        """A deadline miss or error of party ``i``: counted by its breaker, which may eject it."""
        st = self.states[i]
        if st.breaker.failure(time.monotonic()):
            st.state = "ejected"
            self._publish_state(i)
            self.metrics.party_ejected.labels(party=str(i)).set(1)
            self.metrics.party_ejections.labels(party=str(i)).inc()
            log.warning(
                "event=party_ejected party=%d consecutive_failures=%d backoff_s=%.1f",
                i,
                st.breaker.consecutive,
                st.breaker.backoff_s,
            )
            if i not in self._readmitting:
                task = asyncio.get_running_loop().create_task(self._readmit(i))
                self._readmitting[i] = task
                task.add_done_callback(partial(self._readmitted, i))

    def _readmitted(self, i: int, _task: asyncio.Task[None]) -> None:
        self._readmitting.pop(i, None)

    async def _readmit(self, i: int) -> None:
        """Background: after each backoff (or as soon as its Info answers again), probe ejected
        party ``i`` with one Embed call; an answer puts it back in the path, a failure ejects it
        again for a longer backoff."""
        st = self.states[i]
        ejected_at = time.monotonic()
        wake = self._wake.setdefault(i, asyncio.Event())
        while st.breaker.ejected_until is not None:
            # The backoff, cut short when the party's Info answers again (a restarted process).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    wake.wait(), max(0.0, st.breaker.ejected_until - time.monotonic())
                )
            wake.clear()
            if await self._answers(i):
                st.breaker.success()
                st.state = "up"
                self._publish_state(i)
                self.metrics.party_ejected.labels(party=str(i)).set(0)
                log.info(
                    "event=party_readmitted party=%d ejected_s=%.1f",
                    i,
                    time.monotonic() - ejected_at,
                )
                return
            st.breaker.probe_failed(time.monotonic())
            self.metrics.party_ejections.labels(party=str(i)).inc()
            log.warning(
                "event=party_still_stalled party=%d backoff_s=%.1f", i, st.breaker.backoff_s
            )

    async def _answers(self, i: int) -> bool:
        """One probe Embed of party ``i`` within the deadline: True when it answered at all (an
        answer for another bundle is an answer: the party is not stalled)."""
        try:
            await self.stubs[i].Embed(
                embed_request([PROBE_SAMPLE], self.bundle_id), timeout=self.deadline_s
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        return True

    def _missing(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((n, self.emb_dim), np.float32), np.zeros(n, dtype=bool)

    async def _embed(
        self, i: int, ids: list[int], bundle_id: str, max_norm: float
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """One party's block for ``ids`` from bundle ``bundle_id``, the per-row validity (all
        False when it failed) and the reason for the rows missing."""
        n = len(ids)
        st = self.states[i]
        if st.breaker.ejected:
            return (*self._missing(n), "ejected")
        start = time.perf_counter()
        try:
            reply = await self.stubs[i].Embed(
                embed_request(ids, bundle_id), timeout=self.deadline_s
            )
            block = array_from_proto(reply.embeddings, what=f"party {i} embeddings")
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:  # it holds no such bundle
                st.breaker.success()
                self._version(i, f"{exc.code().name}: {exc.details()}")
                return (*self._missing(n), "version")
            reason = "timeout" if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED else "error"
            self._fail(i, reason, f"{exc.code().name}: {exc.details()}")
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                st.state = "down"
            self._publish_state(i)
            self._stalled(i)
            return (*self._missing(n), reason)
        except SerdeError as exc:
            self._fail(i, "invalid", str(exc))
            return (*self._missing(n), "invalid")
        finally:
            self.metrics.party_latency.labels(party=str(i)).observe(time.perf_counter() - start)
        st.breaker.success()
        if reply.party != i:  # another party's extractor answered (a misrouted address)
            self._fail(i, "invalid", f"answer from party {reply.party}, expected party {i}")
            return (*self._missing(n), "invalid")
        if reply.bundle_id != bundle_id:  # another embedding space: not a lie, not usable
            self._version(i, f"answered from bundle {reply.bundle_id or '(none)'}")
            return (*self._missing(n), "version")
        valid, reason = validate_block(block, n=n, emb_dim=self.emb_dim, max_norm=max_norm)
        if reason:
            self._fail(i, "invalid", f"{reason} in {int((~valid).sum())} of {n} rows")
        if valid.any():
            st.state = "up"
            self._publish_state(i)
        block = (
            np.where(valid[:, None], block, 0.0)
            if block.shape == (n, self.emb_dim)
            else np.zeros((n, self.emb_dim))
        )
        return block.astype(np.float32), valid, "" if valid.all() else "invalid"

    def _version(self, i: int, detail: str) -> None:
        """Party ``i`` does not serve the bundle asked for: state ``version``, the detail kept."""
        st = self.states[i]
        st.state, st.last_error = "version", f"bundle {self.bundle_id} asked; {detail}"
        self._publish_state(i)

    async def fetch(self, ids: list[int], *, bundle_id: str, max_norms: Sequence[float]) -> Fetched:
        """One Embed call per party in the path for all ``ids`` from bundle ``bundle_id``,
        concurrently; missing blocks are zero and unobserved, with their reason."""
        answers = await asyncio.gather(
            *(self._embed(i, ids, bundle_id, max_norms[i]) for i in range(self.num_parties))
        )
        h = np.concatenate([a[0] for a in answers], axis=1)
        observed = np.stack([a[1] for a in answers], axis=1)
        reasons = [a[2] for a in answers]
        for i, missing in enumerate((~observed).sum(axis=0).tolist()):
            if missing:
                reason = reasons[i] if reasons[i] in MISSING_REASONS else "invalid"
                self.states[i].last_missing = reason
                self.metrics.party_missing_samples.labels(party=str(i), reason=reason).inc(missing)
        return Fetched(h=h, observed=observed, reasons=reasons)

    async def probe(self, expected_parties: int) -> int:
        """Ask every party's Info (short deadline); update states and the bundles each holds;
        return how many are up (answering, fit, serving the active bundle, not ejected)."""

        async def one(i: int) -> None:
            st = self.states[i]
            try:
                info = party_info_from_proto(
                    await self.stubs[i].Info(party_pb2.InfoRequest(), timeout=1.0)
                )
            except grpc.aio.AioRpcError as exc:
                if st.state not in ("down", "ejected"):
                    log.warning(
                        "event=party_down party=%d address=%s detail=%r",
                        i,
                        st.address,
                        exc.details(),
                    )
                st.last_error = f"{exc.code().name}: {exc.details()}"
                st.state = "ejected" if st.breaker.ejected else "down"
                return
            if st.breaker.ejected and i in self._wake:  # it answers: probe it now
                self._wake[i].set()
            st.bundles = list(info.bundles) or ([info.bundle_id] if info.bundle_id else [])
            fits = (
                info.index == i
                and info.emb_dim == self.emb_dim
                and info.num_parties == expected_parties
            )
            serves = self.bundle_id in st.bundles
            state = "mismatch" if not fits else "version" if not serves else "up"
            if st.breaker.ejected:
                state = "ejected"
            if st.state != "up" and state == "up":
                log.info("event=party_up party=%d address=%s name=%s", i, st.address, info.name)
            st.state = state
            if not fits:
                st.last_error = (
                    f"party reports index {info.index}, emb_dim {info.emb_dim} of "
                    f"{info.num_parties} parties"
                )
            elif not serves:
                st.last_error = (
                    f"party holds bundle(s) {', '.join(st.bundles) or '(none)'}, "
                    f"not the active {self.bundle_id}"
                )

        await asyncio.gather(*(one(i) for i in range(self.num_parties)))
        for i in range(self.num_parties):
            self._publish_state(i)
        up = sum(s.state == "up" for s in self.states)
        self.metrics.parties_up.set(up)
        return up

    async def close(self) -> None:
        """Stop the probes of ejected parties, close every channel (calls in flight are
        cancelled)."""
        for task in list(self._readmitting.values()):
            task.cancel()
        await asyncio.gather(*self._readmitting.values(), return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.channels))
