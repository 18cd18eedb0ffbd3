"""The defense worker: owns the models on one device (cuda when present) and runs defenses off the
event loop, one batch at a time, in its own thread."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from copur.science.bundle import Bundle
from copur.science.defenses import Engine, EngineConfig
from copur.science.purify.fastgrad import small_batch_threads

__all__ = ["DefenseResult", "Worker"]


@dataclass(frozen=True)
class DefenseResult:
    """Numpy view of a DefenseOutput for a batch."""

    probs: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    flagged: np.ndarray
    certificate: dict[str, np.ndarray]


class Worker:
    """Owns the defense engine on ``device`` and runs it on ONE thread of its own, one batch at a
    time, in submission order: the event loop never blocks on a model, and models are never used
    concurrently."""

    def __init__(
        self, bundle: Bundle, *, device: torch.device, config: EngineConfig | None = None
    ) -> None:
        self.engine = Engine(bundle, device=device, config=config)
        self.device = device
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copur-worker")
        threads = max(1, torch.get_num_threads())
        self.executor.submit(torch.set_num_threads, threads).result()

    def run_sync(
        self, h: np.ndarray, observed: np.ndarray, defense: str, certify: bool
    ) -> DefenseResult:
        """``defense`` on the blocks ``h`` (n, M*e) with the ``observed`` mask (n, M), on the
        calling thread (without gradients); :meth:`run` is the way in from the event loop."""
        # Small batches on one intra-op thread: the head's and the purifier's tiny matmuls stall on
        # a busy
        # machine when split over threads (profiled under load: most of the worker's time).
        with torch.no_grad(), small_batch_threads(len(h), self.device):
            out = self.engine.defense(defense).predict(
                torch.as_tensor(h, device=self.device),
                torch.as_tensor(observed, device=self.device),
                certify=certify,
            )
        return DefenseResult(
            probs=out.probs.float().cpu().numpy(),
            labels=out.labels.cpu().numpy(),
            scores=out.scores.float().cpu().numpy(),
            flagged=out.flagged.cpu().numpy(),
            certificate={k: v.cpu().numpy() for k, v in out.certificate.items()},
        )

    async def run(
        self, h: np.ndarray, observed: np.ndarray, defense: str, certify: bool
    ) -> DefenseResult:
        """Run ``defense`` on the worker thread without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, self.run_sync, h, observed, defense, certify
        )

    def close(self) -> None:
        """Let the batches already submitted run, then end the worker thread."""
        self.executor.shutdown(wait=True)
