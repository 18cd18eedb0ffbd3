"""The gateway batcher: a lone job leaves at once, jobs arriving while the slots are busy go out
as one batch, a failing ``process`` fails its jobs without killing the batcher, batching off
is one job a batch."""

from __future__ import annotations

import asyncio
import time

import pytest

from copur.roles.fusion.batcher import Batcher, Job


class Recorder:
    """A ``process`` that records each batch and answers it once ``gate`` is open."""

    def __init__(self) -> None:
        self.batches: list[list[list[int]]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, batch: list[Job]) -> None:
        self.batches.append([job.sample_ids for job in batch])
        await self.gate.wait()
        for job in batch:
            job.future.set_result(job.sample_ids)


async def _submit_all(batcher: Batcher, ids: list[list[int]]) -> list[object]:
    return list(await asyncio.gather(*(batcher.submit(i, "copur", False) for i in ids)))


def test_a_lone_job_does_not_wait_for_company() -> None:
    async def main() -> float:
        recorder = Recorder()
        batcher = Batcher(process=recorder, max_batch=64, max_delay_ms=2000)
        batcher.start()
        started = time.monotonic()
        assert await batcher.submit([7], "copur", False) == [7]
        elapsed = time.monotonic() - started
        await batcher.stop()
        return elapsed

    assert asyncio.run(main()) < 1.0  # far below max_delay_ms: the pipeline was idle


def test_jobs_arriving_while_slots_are_busy_go_out_as_one_batch() -> None:
    async def main() -> list[list[list[int]]]:
        recorder = Recorder()
        batcher = Batcher(process=recorder, max_batch=64, max_delay_ms=5, max_inflight=1)
        batcher.start()
        recorder.gate.clear()
        first = asyncio.create_task(batcher.submit([0], "copur", False))
        while not recorder.batches:  # the first job is in flight, holding the only slot
            await asyncio.sleep(0.001)
        rest = asyncio.create_task(_submit_all(batcher, [[i] for i in range(1, 11)]))
        await asyncio.sleep(0.05)
        recorder.gate.set()
        await first
        assert await rest == [[i] for i in range(1, 11)]
        await batcher.stop()
        return recorder.batches

    batches = asyncio.run(main())

    assert batches == [[[0]], [[i] for i in range(1, 11)]]


def test_max_batch_bounds_a_batch() -> None:
    async def main() -> list[list[list[int]]]:
        recorder = Recorder()
        batcher = Batcher(process=recorder, max_batch=4, max_delay_ms=5, max_inflight=1)
        batcher.start()
        recorder.gate.clear()
        first = asyncio.create_task(batcher.submit([0], "copur", False))
        while not recorder.batches:
            await asyncio.sleep(0.001)
        rest = asyncio.create_task(_submit_all(batcher, [[i] for i in range(1, 11)]))
        await asyncio.sleep(0.05)
        recorder.gate.set()
        await asyncio.gather(first, rest)
        await batcher.stop()
        return recorder.batches

    batches = asyncio.run(main())

    assert [len(b) for b in batches] == [1, 4, 4, 2]
    assert sorted(i for b in batches for ids in b for i in ids) == list(range(11))


def test_batching_off_is_one_job_a_batch() -> None:
    async def main() -> list[list[list[int]]]:
        recorder = Recorder()
        batcher = Batcher(process=recorder, max_batch=64, max_delay_ms=5, enabled=False)
        batcher.start()
        await _submit_all(batcher, [[i] for i in range(6)])
        await batcher.stop()
        return recorder.batches

    assert all(len(b) == 1 for b in asyncio.run(main()))


def test_a_failing_process_fails_its_jobs_and_frees_its_slot() -> None:
    calls = 0

    async def flaky(batch: list[Job]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        for job in batch:
            job.future.set_result("ok")

    async def main() -> object:
        batcher = Batcher(process=flaky, max_batch=8, max_delay_ms=5, max_inflight=1)
        batcher.start()
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit([1], "copur", False)
        answer = await asyncio.wait_for(batcher.submit([2], "copur", False), 5)
        await batcher.stop()
        return answer

    assert asyncio.run(main()) == "ok"
