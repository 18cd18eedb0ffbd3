"""The fusion center's bundles during a rolling upgrade: at most two held (the active one and the
next), the switch between them, and the bundle operations relayed to the parties' PartyAdmin.

A batch takes the active slot when it starts and keeps it to its end (:class:`BundleSlot.inflight`
counts it): a switch changes what the NEXT batch runs on, atomically, and :meth:`BundleSet.activate`
returns only once the batches on the old bundle are done, so that the parties may drop it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import grpc
import numpy as np

from copur.errors import BundleError
from copur.roles.fusion.metrics import FusionMetrics
from copur.roles.fusion.parties import PartyPool
from copur.roles.fusion.worker import Worker
from copur.science.bundle import Bundle, load_bundle, read_manifest
from copur.transport.grpcutil import (
    Conflict,
    InvalidRequest,
    NotFound,
    Unavailable,
)
from copur.transport.tls.credentials import aio_channel
from copur_client.serde import bundle_list_from_proto
from copur_client.v1 import party_pb2, party_pb2_grpc
from copur_client.wire import BundleRef, BundlesStatus, PartyBundles

if TYPE_CHECKING:
    from copur.roles.fusion.handler import FusionSettings

__all__ = ["MAX_HELD", "MAX_NORM_FACTOR", "BundleSet", "BundleSlot"]

log = logging.getLogger("copur.roles.fusion")
T = TypeVar("T")

MAX_HELD = 2  # the active bundle and the next one
MAX_WAIT_S = 600.0  # the longest an activate waits for the parties (the admin lock is held)
MAX_HISTORY = 10  # bundles served before, remembered for `copur rollout --rollback`
MAX_NORM_FACTOR = 1000.0  # a block above 1000x its party's typical clean norm is garbage
PARTY_ADMIN_TIMEOUT_S = 120.0  # a party loads a bundle's extractor and its data set's columns
DRAIN_TIMEOUT_S = 60.0  # a batch on the old bundle ends within a deadline plus its defense


@dataclass(kw_only=True)
class BundleSlot:
    """A bundle the fusion center holds: the bundle, its worker, the path it was loaded from, each
    party's norm limit under it, and how many batches run on it now."""

    bundle: Bundle
    worker: Worker
    path: str
    max_norms: list[float]
    inflight: int = 0
    bundle_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.bundle_id = self.bundle.manifest.bundle_id

    @classmethod
    def of(cls, bundle: Bundle, worker: Worker, *, path: str) -> BundleSlot:
        """The slot of a loaded, calibrated ``bundle`` (BundleError when it is not calibrated)."""
        if bundle.calibration is None:
            raise BundleError(f"bundle {path} is not calibrated: run `copur calibrate {path}`")
        scale = np.asarray(bundle.calibration.block_scale, dtype=np.float64)
        return cls(bundle=bundle, worker=worker, path=path, max_norms=list(scale * MAX_NORM_FACTOR))


class BundleSet:
    """The bundles held (``first`` active at the start), the ones served before, and the admin
    operations; lives in the handler's event loop (operations are serialised by one lock)."""

    def __init__(
        self,
        *,
        first: BundleSlot,
        make_worker: Callable[[Bundle], Worker],
        metrics: FusionMetrics,
        settings: FusionSettings,
    ) -> None:
        self.slots: dict[str, BundleSlot] = {first.bundle_id: first}
        self.active = first
        self.history: list[BundleRef] = []
        self.make_worker = make_worker
        self.metrics = metrics
        self.settings = settings
        self.pool: PartyPool | None = None
        self._lock = asyncio.Lock()
        self._admin: list[party_pb2_grpc.PartyAdminStub] = []
        self._admin_channels: list[grpc.aio.Channel] = []
        metrics.bundle_active.labels(bundle=first.bundle_id).set(1)

    def attach(self, pool: PartyPool) -> None:
        """Use ``pool`` (its party states) and open the admin channels to every party's own
        address; call inside the running loop."""
        self.pool = pool
        s = self.settings
        targets = list(s.admin_targets) or list(s.targets)
        names: list[str | None] = list(s.admin_peer_names or s.peer_names) or [None] * len(targets)
        self._admin_channels = [
            aio_channel(t, s.tls, server_name=n) for t, n in zip(targets, names, strict=True)
        ]
        self._admin = [party_pb2_grpc.PartyAdminStub(c) for c in self._admin_channels]

    async def close_admin(self) -> None:
        """Close the admin channels."""
        await asyncio.gather(*(c.close() for c in self._admin_channels))

    def close_workers(self) -> None:
        """End every held bundle's worker."""
        for slot in self.slots.values():
            slot.worker.close()

    def status(self) -> BundlesStatus:
        """The active bundle, every one held (active first), the history and each party's
        bundles."""
        held = [self.active, *(s for s in self.slots.values() if s is not self.active)]
        states = self.pool.states if self.pool is not None else []
        return BundlesStatus(
            active=self.active.bundle_id,
            held=[BundleRef(bundle_id=s.bundle_id, path=s.path) for s in held],
            history=list(self.history),
            parties=[
                PartyBundles(party=st.index, bundles=list(st.bundles), state=st.state)
                for st in states
            ],
        )

    def _held(self, bundle_id: str) -> BundleSlot:
        slot = self.slots.get(bundle_id)
        if slot is None:
            raise Conflict(
                f"bundle {bundle_id} is not held (held: {', '.join(self.slots)}); load it first"
            )
        return slot

    async def load(self, path: str) -> BundlesStatus:
        """Load the bundle at ``path`` beside the active one (verified, calibrated, with the same
        parties and embedding width); loading one already held changes nothing."""
        async with self._lock:
            # The manifest first (cheap): a bundle held, a full set or another shape is answered
            # before the weights and the bank are read and verified.
            got = await self._read(path, read_manifest)
            bundle_id = got.bundle_id
            if bundle_id in self.slots:
                return self.status()
            if len(self.slots) >= MAX_HELD:
                raise Conflict(
                    f"{MAX_HELD} bundles held already ({', '.join(self.slots)}): drop one first"
                )
            want = self.active.bundle.manifest
            if got.num_parties != want.num_parties or got.model["emb_dim"] != want.model["emb_dim"]:
                raise Conflict(
                    f"bundle {path} has {got.num_parties} parties of emb_dim "
                    f"{got.model['emb_dim']}; this cluster has {want.num_parties} of "
                    f"{want.model['emb_dim']}"
                )
            bundle = await self._read(path, load_bundle)
            if bundle.calibration is None:
                raise Conflict(f"bundle {path} is not calibrated: run `copur calibrate {path}`")
            worker = await asyncio.to_thread(self.make_worker, bundle)
            self.slots[bundle_id] = BundleSlot.of(bundle, worker, path=path)
            self.metrics.bundle_active.labels(bundle=bundle_id).set(0)
            log.info("event=bundle_loaded bundle=%s path=%s", bundle_id, path)
            return self.status()

    @staticmethod
    async def _read(path: str, reader: Callable[[str], T]) -> T:
        """``reader(path)`` off the event loop: NotFound when there is no folder at ``path``,
        Conflict when what is there is no usable bundle (incomplete, tampered, of another format;
        one line each)."""
        try:
            exists = await asyncio.to_thread(Path(path).is_dir)
        except OSError:  # a name too long for the file system
            exists = False
        if not exists:
            raise NotFound(f"bundle {path[:200]} does not exist on the fusion center's host")
        try:
            return await asyncio.to_thread(reader, path)
        except BundleError as exc:
            raise Conflict(str(exc)) from None
        except (OSError, ValueError) as exc:  # no permission, a file vanished meanwhile
            raise Conflict(f"bundle {path[:200]}: {exc}") from None

    def _serving(self, bundle_id: str) -> list[int]:
        assert self.pool is not None
        return [
            s.index
            for s in self.pool.states
            if bundle_id in s.bundles and s.state not in ("down", "ejected", "mismatch")
        ]

    async def activate(self, bundle_id: str, *, quorum: int, wait_s: float) -> BundlesStatus:
        """Switch to held bundle ``bundle_id`` once at least ``quorum`` parties (0: all) serve it,
        waiting up to ``wait_s`` for them; then wait until no batch runs on the old one. Conflict
        when too few parties serve it by then (nothing switched)."""
        assert self.pool is not None
        num = self.pool.num_parties
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise InvalidRequest(f"wait_s {wait_s}: between 0 and {MAX_WAIT_S:.0f} seconds")
        if not 0 <= quorum <= num:
            raise Conflict(f"quorum {quorum}: this cluster has {num} parties (0: all of them)")
        need = quorum or num
        async with self._lock:
            slot = self._held(bundle_id)
            if slot is self.active:
                return self.status()
            # Wait (probing the parties' Info) until enough of them hold the bundle.
            deadline = time.monotonic() + wait_s
            while True:
                await self.pool.probe(self.pool.num_parties)
                serving = self._serving(bundle_id)
                if len(serving) >= need or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.25)
            if len(serving) < need:
                others = [i for i in range(num) if i not in serving]
                raise Conflict(
                    f"only {len(serving)} of {num} parties serve bundle {bundle_id} ({need} "
                    f"needed); not serving it: {', '.join(map(str, others))}"
                )
            # The switch: one assignment; batches that started before keep the old slot.
            old, self.active = self.active, slot
            self.pool.bundle_id = bundle_id
            self.history.insert(0, BundleRef(bundle_id=old.bundle_id, path=old.path))
            del self.history[MAX_HISTORY:]
            self.metrics.bundle_active.labels(bundle=old.bundle_id).set(0)
            self.metrics.bundle_active.labels(bundle=bundle_id).set(1)
            self.metrics.bundle_switches.inc()
            log.info(
                "event=bundle_switched from=%s to=%s parties_serving=%d",
                old.bundle_id,
                bundle_id,
                len(serving),
            )
            await self._drain(old)
            await self.pool.probe(self.pool.num_parties)
            return self.status()

    @staticmethod
    async def _drain(slot: BundleSlot) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while slot.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def drop(self, bundle_id: str) -> BundlesStatus:
        """Drop held bundle ``bundle_id`` (not the active one) and end its worker."""
        async with self._lock:
            slot = self._held(bundle_id)
            if slot is self.active:
                raise Conflict(f"bundle {bundle_id} is the active one: activate another first")
            del self.slots[bundle_id]
            await self._drain(slot)
            await asyncio.to_thread(slot.worker.close)
            self.metrics.bundle_active.remove(bundle_id)
            log.info("event=bundle_dropped bundle=%s", bundle_id)
            return self.status()

    def _admin_stub(self, party: int) -> party_pb2_grpc.PartyAdminStub:
        if not 0 <= party < len(self._admin):
            raise NotFound(f"party {party} unknown (parties: 0..{len(self._admin) - 1})")
        return self._admin[party]

    async def relay_load(self, party: int, path: str) -> BundlesStatus:
        """PartyAdmin.LoadBundle(``path``) on party ``party``, then its Info read again."""
        if not path:
            raise InvalidRequest("path is empty: the bundle's folder on the party's host")
        request = party_pb2.LoadBundleRequest(path=path)
        return await self._relay(party, "LoadBundle", request, what=f"loaded={path}")

    async def relay_drop(self, party: int, bundle_id: str) -> BundlesStatus:
        """PartyAdmin.DropBundle(``bundle_id``) on party ``party``, then its Info read again."""
        if not bundle_id:
            raise InvalidRequest("bundle_id is empty")
        request = party_pb2.DropBundleRequest(bundle_id=bundle_id)
        return await self._relay(party, "DropBundle", request, what=f"dropped={bundle_id}")

    async def _relay(self, party: int, method: str, request: object, *, what: str) -> BundlesStatus:
        """One PartyAdmin call on party ``party``. Its refusal is a Conflict (its bundles' state)
        or InvalidRequest (a bad bundle) naming it; an unreachable party an Unavailable."""
        assert self.pool is not None
        call = getattr(self._admin_stub(party), method)
        try:
            reply = await call(request, timeout=PARTY_ADMIN_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            detail = f"party {party}: {exc.details() or exc.code().name}"
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise Conflict(detail) from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:  # its own bundle refused
                raise Conflict(detail) from None
            raise Unavailable(f"{detail} ({exc.code().name})") from None
        held = [b.bundle_id for b in bundle_list_from_proto(reply)]
        self.pool.states[party].bundles = held
        log.info("event=party_bundles party=%d %s holds=%s", party, what, ",".join(held))
        await self.pool.probe(self.pool.num_parties)
        return self.status()
