"""The fusion center's view of the parties: one Embed call per party per batch, concurrently,
with a deadline; every answer validated. A party that errs, times out or answers garbage is a
missing block."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np

from copur.roles.fusion.metrics import FusionMetrics
from copur.transport.grpcutil import MAX_MESSAGE_BYTES, RECONNECT_OPTIONS
from copur.transport.tls.credentials import TlsIdentity, aio_channel
from copur_client.serde import SerdeError, array_from_proto, embed_request, party_info_from_proto
from copur_client.v1 import party_pb2, party_pb2_grpc

__all__ = ["Fetched", "PartyPool", "PartyState", "validate_block"]

log = logging.getLogger("copur.roles.fusion")


@dataclass
class PartyState:
    """What the fusion center knows of one party: its address, state (``up``, ``down``, ``mismatch``
    or ``unknown``), its failures (the last ten with their time) and the last error."""

    index: int
    address: str
    state: str = "unknown"  # up | down | mismatch | unknown
    last_error: str = ""
    failures: int = 0
    flags: int = 0
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=10))


@dataclass(frozen=True)
class Fetched:
    """Embeddings of a batch: h (n, M*e) with zeros where unobserved, observed (n, M)."""

    h: np.ndarray
    observed: np.ndarray


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
    ``adversary-<i>``; the target's host when ``peer_names`` is empty). None: plaintext."""

    def __init__(
        self,
        *,
        targets: Sequence[str],
        emb_dim: int,
        num_samples: int,
        max_norms: Sequence[float],
        deadline_s: float,
        metrics: FusionMetrics,
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
        self.states = [PartyState(index=i, address=t) for i, t in enumerate(targets)]
        self.emb_dim, self.num_samples = emb_dim, num_samples
        self.max_norms = list(max_norms)
        self.deadline_s = deadline_s
        self.metrics = metrics
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

    async def _embed(self, i: int, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """One party's block for ``ids`` and the per-row validity (all False when it failed)."""
        n = len(ids)
        start = time.perf_counter()
        try:
            reply = await self.stubs[i].Embed(embed_request(ids), timeout=self.deadline_s)
            block = array_from_proto(reply.embeddings, what=f"party {i} embeddings")
        except grpc.aio.AioRpcError as exc:
            reason = "timeout" if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED else "error"
            self._fail(i, reason, f"{exc.code().name}: {exc.details()}")
            self.states[i].state = (
                "down" if exc.code() == grpc.StatusCode.UNAVAILABLE else self.states[i].state
            )
            self._publish_state(i)
            return np.zeros((n, self.emb_dim), np.float32), np.zeros(n, dtype=bool)
        except SerdeError as exc:
            self._fail(i, "invalid", str(exc))
            return np.zeros((n, self.emb_dim), np.float32), np.zeros(n, dtype=bool)
        finally:
            self.metrics.party_latency.labels(party=str(i)).observe(time.perf_counter() - start)
        if (
            reply.party != i
        ):  # another party's extractor answered (a misrouted address): not block i at all
            self._fail(i, "invalid", f"answer from party {reply.party}, expected party {i}")
            return np.zeros((n, self.emb_dim), np.float32), np.zeros(n, dtype=bool)
        valid, reason = validate_block(block, n=n, emb_dim=self.emb_dim, max_norm=self.max_norms[i])
        if reason:
            self._fail(i, "invalid", f"{reason} in {int((~valid).sum())} of {n} rows")
        if valid.any():
            self.states[i].state = "up"
            self._publish_state(i)
        block = (
            np.where(valid[:, None], block, 0.0)
            if block.shape == (n, self.emb_dim)
            else np.zeros((n, self.emb_dim))
        )
        return block.astype(np.float32), valid

    async def fetch(self, ids: list[int]) -> Fetched:
        """One Embed call per party for all ``ids``, concurrently; missing blocks are zero and
        unobserved."""
        answers = await asyncio.gather(*(self._embed(i, ids) for i in range(self.num_parties)))
        h = np.concatenate([a[0] for a in answers], axis=1)
        observed = np.stack([a[1] for a in answers], axis=1)
        for i, missing in enumerate((~observed).sum(axis=0).tolist()):
            if missing:
                self.metrics.party_missing_samples.labels(party=str(i)).inc(missing)
        return Fetched(h=h, observed=observed)

    async def probe(self, expected_parties: int) -> int:
        """Ask every party's Info (short deadline); update states; return how many are up."""

        async def one(i: int) -> None:
            st = self.states[i]
            try:
                info = party_info_from_proto(
                    await self.stubs[i].Info(party_pb2.InfoRequest(), timeout=1.0)
                )
            except grpc.aio.AioRpcError as exc:
                if st.state != "down":
                    log.warning(
                        "event=party_down party=%d address=%s detail=%r",
                        i,
                        st.address,
                        exc.details(),
                    )
                st.state, st.last_error = "down", f"{exc.code().name}: {exc.details()}"
                return
            ok = (
                info.index == i
                and info.emb_dim == self.emb_dim
                and info.num_parties == expected_parties
            )
            if st.state != "up" and ok:
                log.info("event=party_up party=%d address=%s name=%s", i, st.address, info.name)
            st.state = "up" if ok else "mismatch"
            if not ok:
                st.last_error = (
                    f"party reports index {info.index}, emb_dim {info.emb_dim} of "
                    f"{info.num_parties} parties"
                )

        await asyncio.gather(*(one(i) for i in range(self.num_parties)))
        for i in range(self.num_parties):
            self._publish_state(i)
        up = sum(s.state == "up" for s in self.states)
        self.metrics.parties_up.set(up)
        return up

    async def close(self) -> None:
        """Close every channel (calls in flight are cancelled)."""
        await asyncio.gather(*(c.close() for c in self.channels))
