"""Gateway batching: requests collected for up to ``max_delay_ms`` or ``max_batch`` samples are
served by ONE Embed call per party, then the defenses run on the whole batch (grouped by
defense)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["Batcher", "Job"]


@dataclass
class Job:
    """One request waiting in the batcher: its ids, defense and ``certify`` flag, and the future its
    answer (a list of predictions) or its error is set on, exactly once."""

    sample_ids: list[int]
    defense: str
    certify: bool
    future: asyncio.Future[object] = field(repr=False)


class Batcher:
    """Collects jobs into batches and hands each batch to ``process``; with ``enabled`` False
    every job is its own batch. ``process`` must resolve every job's future.

    With batching enabled at most ``max_inflight`` batches are processed at once (one fetching
    from the parties while another runs on the worker): jobs arriving meanwhile wait in the queue
    and go out as one batch when a slot frees, so batches grow with the load instead of queueing
    as tiny batches behind the single worker thread. A batch waits up to ``max_delay_ms`` for
    more jobs only while another batch is in flight; on an idle pipeline it leaves at once (a
    lone request pays no batching delay)."""

    def __init__(
        self,
        *,
        process: Callable[[list[Job]], Awaitable[None]],
        max_batch: int,
        max_delay_ms: float,
        enabled: bool = True,
        max_inflight: int = 2,
    ) -> None:
        self.process = process
        self.max_batch = max_batch
        self.max_delay_s = max_delay_ms / 1000.0
        self.enabled = enabled
        self._slots = asyncio.Semaphore(max(1, max_inflight)) if enabled else None
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start collecting batches on the running event loop (call once, inside it)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, sample_ids: list[int], defense: str, certify: bool) -> object:
        """Queue one job and wait for its answer (what ``process`` set on its future, or its
        error)."""
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        await self.queue.put(Job(sample_ids, defense, certify, future))
        return await future

    async def _collect(self) -> list[Job]:
        batch = [await self.queue.get()]
        size = len(batch[0].sample_ids)
        deadline = time.monotonic() + self.max_delay_s
        while self.enabled and size < self.max_batch:
            try:  # jobs already queued join without a timer
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                if (
                    not self._inflight
                ):  # nothing else in flight: waiting for company only adds latency
                    break
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), timeout)
                except TimeoutError:
                    break
            batch.append(job)
            size += len(job.sample_ids)
        return batch

    async def _run(self) -> None:
        while True:
            if self._slots is not None:
                await self._slots.acquire()
            try:
                batch = await self._collect()
            except BaseException:
                if self._slots is not None:
                    self._slots.release()
                raise
            # Batches overlap: the next one is collected while this one waits on parties and the
            # worker.
            task = asyncio.get_running_loop().create_task(self._guarded(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _guarded(self, batch: list[Job]) -> None:
        try:
            await self.process(batch)
        except Exception as exc:  # a bug must fail the requests, not kill the batcher
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
        finally:
            if self._slots is not None:
                self._slots.release()

    async def stop(self) -> None:
        """Stop collecting; batches in flight finish first (jobs still queued get no answer)."""
        if self._task is not None:
            self._task.cancel()
        for task in list(self._inflight):
            await asyncio.gather(task, return_exceptions=True)
