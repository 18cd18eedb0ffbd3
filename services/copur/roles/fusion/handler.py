"""The fusion center's transport-free handler: validate -> batch -> fetch -> defend -> answer.
Both front doors (FastAPI, gRPC) are thin adapters over :class:`FusionHandler`; the admin
operations on its bundles (a rolling upgrade) are in :class:`~.bundles.BundleSet`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from copur.roles.fusion.batcher import Batcher, Job
from copur.roles.fusion.bundles import BundleSet, BundleSlot
from copur.roles.fusion.metrics import FusionMetrics
from copur.roles.fusion.oip import OipModel
from copur.roles.fusion.parties import EjectionConfig, Fetched, PartyPool
from copur.roles.fusion.worker import DefenseResult, Worker
from copur.science.bundle import Bundle
from copur.science.defenses import DEFENSES, check_defense
from copur.transport.grpcutil import InvalidRequest, NotFound, TooLarge, Unavailable
from copur.transport.tls.credentials import TlsIdentity
from copur.transport.topology import FusionNode
from copur_client.wire import Certificate, Prediction

__all__ = ["FusionHandler", "FusionSettings"]

log = logging.getLogger("copur.roles.fusion")


@dataclass(frozen=True, kw_only=True)
class FusionSettings:
    """The topology's fusion section plus the party targets; ``tls``: the fusion center's
    identity for mTLS (None: plaintext), ``peer_names``: the certificate name each target must
    present; ``admin_targets`` / ``admin_peer_names``: each party's own address and name, for the
    bundle operations relayed to it (empty: the targets themselves)."""

    node: FusionNode
    targets: list[str]
    tls: TlsIdentity | None = None
    peer_names: tuple[str, ...] = ()
    admin_targets: tuple[str, ...] = ()
    admin_peer_names: tuple[str, ...] = ()


class FusionHandler:
    """The fusion center's request path, shared by both front doors: validate a request (domain
    errors with one-line messages), batch it with others, fetch every party's blocks once per batch,
    run the defense on the worker and answer each request in its own order. A sample with fewer than
    ``min_parties`` valid blocks is an Unavailable naming the missing parties; a party that errs,
    times out, answers garbage or from another bundle, or is ejected, is a missing block with that
    reason, never a failed request. Each batch runs on the bundle active when it starts, from the
    parties' blocks to the defense: every answer names that bundle, and none mixes two. Lives in
    one event loop: call :meth:`start` inside it before serving, :meth:`stop` after.
    ``make_worker`` builds the worker of a bundle loaded later (default: one on ``worker``'s
    device)."""

    def __init__(
        self,
        *,
        bundle: Bundle,
        worker: Worker,
        settings: FusionSettings,
        make_worker: Callable[[Bundle], Worker] | None = None,
    ) -> None:
        self.node = settings.node
        self.targets = settings.targets
        self.settings = settings
        self.metrics = FusionMetrics()
        self.metrics.min_parties.set(self.node.min_parties)
        self.num_parties = bundle.manifest.num_parties
        self.bundles = BundleSet(
            first=BundleSlot.of(bundle, worker, path=str(bundle.path)),
            make_worker=make_worker or (lambda b: Worker(b, device=worker.device)),
            metrics=self.metrics,
            settings=settings,
        )
        if len(self.targets) != self.num_parties:
            raise InvalidRequest(
                f"topology has {len(self.targets)} parties, bundle has {self.num_parties}"
            )
        check_defense(self.node.default_defense)
        self.pool: PartyPool | None = None
        self.batcher: Batcher | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._oip_model: OipModel | None = None
        self.parties_up = 0

    @property
    def bundle(self) -> Bundle:
        """The active bundle (what a batch starting now runs on)."""
        return self.bundles.active.bundle

    @property
    def worker(self) -> Worker:
        """The active bundle's worker."""
        return self.bundles.active.worker

    def oip_model(self) -> OipModel:
        """The Open Inference Protocol's model of the active bundle (its version: the bundle's
        id), made once per bundle."""
        bundle_id = self.bundles.active.bundle_id
        if self._oip_model is None or self._oip_model.version != bundle_id:
            self._oip_model = OipModel.from_manifest(
                self.bundle.manifest, default_defense=self.node.default_defense
            )
        return self._oip_model

    @property
    def num_samples(self) -> int:
        """How many samples the active bundle's data set has (ids 0..n-1)."""
        return self.bundle.manifest.num_samples

    async def start(self) -> None:
        """Create the party clients and the batcher inside the running loop; probe the parties."""
        self.pool = PartyPool(
            targets=self.targets,
            emb_dim=int(self.bundle.manifest.model["emb_dim"]),
            deadline_s=self.node.deadline_ms / 1000.0,
            metrics=self.metrics,
            bundle_id=self.bundles.active.bundle_id,
            ejection=EjectionConfig(
                eject_after=self.node.eject_after,
                base_s=self.node.eject_base_ms / 1000.0,
                max_s=self.node.eject_max_ms / 1000.0,
            ),
            tls=self.settings.tls,
            peer_names=self.settings.peer_names,
        )
        self.bundles.attach(self.pool)
        self.batcher = Batcher(
            process=self._process,
            max_batch=self.node.max_batch,
            max_delay_ms=self.node.max_delay_ms,
            enabled=self.node.batching,
        )
        self.batcher.start()
        self.parties_up = await self.pool.probe(self.num_parties)
        self._probe_task = asyncio.get_running_loop().create_task(self._probe_forever())

    async def _probe_forever(self) -> None:
        assert self.pool is not None
        while True:
            await asyncio.sleep(2.0)
            self.parties_up = await self.pool.probe(self.num_parties)

    async def stop(self) -> None:
        """Stop probing, let the batches in flight finish, close the party channels."""
        if self._probe_task is not None:
            self._probe_task.cancel()
        if self.batcher is not None:
            await self.batcher.stop()
        if self.pool is not None:
            await self.pool.close()
        await self.bundles.close_admin()

    def close(self) -> None:
        """End every bundle's worker thread (after :meth:`stop`)."""
        self.bundles.close_workers()

    @property
    def ready(self) -> bool:
        """Started, and at least ``min_parties`` parties answered the last probe (every 2 s)."""
        return self.pool is not None and self.parties_up >= self.node.min_parties

    def validate(self, sample_ids: list[int], defense: str | None) -> str:
        """Client input checks; the defense name to use."""
        if not sample_ids:
            raise InvalidRequest("sample_ids is empty")
        if len(sample_ids) > self.node.max_request_ids:
            raise TooLarge(
                f"{len(sample_ids)} sample ids in one request; the limit is "
                f"{self.node.max_request_ids}"
            )
        if len(set(sample_ids)) != len(sample_ids):
            dup = sorted({i for i in sample_ids if sample_ids.count(i) > 1})[:10]
            raise InvalidRequest(f"duplicate sample ids: {', '.join(map(str, dup))}")
        unknown = [i for i in sample_ids if not 0 <= i < self.num_samples][:10]
        if unknown:
            raise NotFound(
                f"unknown sample ids: {', '.join(map(str, unknown))} (known: "
                f"0..{self.num_samples - 1})"
            )
        name = defense or self.node.default_defense
        return check_defense(name)

    async def predict(
        self, sample_ids: list[int], defense: str | None, certify: bool
    ) -> list[Prediction]:
        """Answer a request in request order; 503 (Unavailable) when a sample has too few
        parties."""
        name = self.validate(sample_ids, defense)
        if self.batcher is None:
            raise Unavailable("fusion center is starting")
        result = await self.batcher.submit(sample_ids, name, certify)
        assert isinstance(result, list)
        return result

    async def _process(self, batch: list[Job]) -> None:
        """The batch on the bundle active now, to the end (a switch meanwhile does not touch it)."""
        slot = self.bundles.active
        slot.inflight += 1
        try:
            await self._process_on(slot, batch)
        finally:
            slot.inflight -= 1

    async def _process_on(self, slot: BundleSlot, batch: list[Job]) -> None:
        """One Embed call per party for the union of the batch's ids, all from ``slot``'s bundle;
        defenses grouped by (name, certify) on ``slot``'s worker."""
        assert self.pool is not None
        ids = sorted({i for job in batch for i in job.sample_ids})
        row = {sid: r for r, sid in enumerate(ids)}
        self.metrics.batch_size.observe(len(ids))
        self.metrics.batch_requests.observe(len(batch))
        fetched = await self.pool.fetch(ids, bundle_id=slot.bundle_id, max_norms=slot.max_norms)
        groups: dict[tuple[str, bool], list[Job]] = defaultdict(list)
        for job in batch:
            groups[(job.defense, job.certify)].append(job)
        for (name, certify), jobs in groups.items():
            rows = sorted({row[i] for job in jobs for i in job.sample_ids})
            enough = fetched.observed[rows].sum(axis=1) >= self.node.min_parties
            ok_rows = [r for r, e in zip(rows, enough, strict=True) if e]
            result = (
                await slot.worker.run(fetched.h[ok_rows], fetched.observed[ok_rows], name, certify)
                if ok_rows
                else None
            )
            where = {r: k for k, r in enumerate(ok_rows)}
            for job in jobs:
                rows = [row[i] for i in job.sample_ids]
                self._answer(job, rows, fetched, result, where, name, slot.bundle_id)

    def _answer(
        self,
        job: Job,
        rows: list[int],
        fetched: Fetched,
        result: DefenseResult | None,
        where: dict[int, int],
        name: str,
        bundle_id: str,
    ) -> None:
        if (
            job.future.done()
        ):  # the caller went away (cancelled): the batch's other jobs still get answers
            return
        short = [r for r in rows if r not in where]
        if short:
            missing = sorted(
                {p for r in short for p in np.flatnonzero(~fetched.observed[r]).tolist()}
            )
            job.future.set_exception(
                Unavailable(
                    f"too few parties answered ({self.node.min_parties} needed); missing parties: "
                    + ", ".join(f"{p} ({fetched.reasons[p] or 'invalid'})" for p in missing)
                )
            )
            return
        assert result is not None
        preds = []
        for sid, r in zip(job.sample_ids, rows, strict=True):
            k = where[r]
            flagged = np.flatnonzero(result.flagged[k]).tolist()
            missing = np.flatnonzero(~fetched.observed[r]).tolist()
            for p in flagged:
                self.metrics.party_flags.labels(party=str(p)).inc()
            preds.append(
                Prediction(
                    sample_id=sid,
                    label=int(result.labels[k]),
                    probabilities=result.probs[k].tolist(),
                    party_scores=result.scores[k].tolist(),
                    flagged_parties=flagged,
                    missing_parties=missing,
                    defense=name,
                    certificate=self._certificate(result, k) if job.certify else None,
                    bundle_id=bundle_id,
                    missing_reasons=[fetched.reasons[p] or "invalid" for p in missing],
                )
            )
        job.future.set_result(preds)

    @staticmethod
    def _certificate(result: DefenseResult, k: int) -> Certificate | None:
        cert = result.certificate
        if "certified_parties" in cert:
            return Certificate(
                kind="vote",
                certified_parties=int(cert["certified_parties"][k]),
                label=int(result.labels[k]),
            )
        if "radius" in cert:
            return Certificate(
                kind="smoothing", radius=float(cert["radius"][k]), label=int(cert["label"][k])
            )
        return None

    def parties(self) -> list[dict[str, Any]]:
        """Every party's address, state, failures (recent ones included), flags, why its blocks
        were last missing, the bundles it holds and its ejection, as GET /v1/parties answers
        them."""
        assert self.pool is not None
        now = time.monotonic()
        return [
            {
                "index": s.index,
                "name": self.bundle.manifest.party_names[s.index],
                "address": s.address,
                "state": s.state,
                "failures": s.failures,
                "last_error": s.last_error,
                "recent_failures": list(s.recent),
                "flags": int(self.metrics.party_flags.labels(party=str(s.index))._value.get()),
                "missing_reason": s.last_missing,
                "bundles": list(s.bundles),
                "ejected": s.breaker.ejected,
                "ejected_for_s": round(max(0.0, (s.breaker.ejected_until or now) - now), 3),
                "ejections": s.breaker.ejections,
                "consecutive_failures": s.breaker.consecutive,
            }
            for s in self.pool.states
        ]

    def observe(self, transport: str, defense: str, status: str, started: float) -> None:
        """Count one request and its latency since ``started`` (a ``perf_counter`` reading)."""
        # Label values come from a fixed set only: a client's unknown defense name is counted as
        # "invalid".
        defense = defense if defense in DEFENSES else "invalid"
        self.metrics.requests.labels(transport=transport, defense=defense, status=status).inc()
        self.metrics.latency.labels(transport=transport).observe(time.perf_counter() - started)
