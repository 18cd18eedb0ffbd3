"""A steady client load on the fusion center's HTTP front door, recorded per request: when it
started, how long it took, whether it failed (after the client's own retries), which parties the
answer reported missing, and (``keep_answers``) each prediction's label, probabilities, bundle and
missing and flagged parties."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from copur_client import CopurClientError, FusionClient

__all__ = ["Answered", "Load", "Record", "answered"]


@dataclass(frozen=True, kw_only=True)
class Answered:
    """One prediction as answered: its sample, label, probabilities, the bundle it names, the
    parties missing from it with why (``(party, reason)``) and the parties flagged."""

    sample_id: int
    label: int
    probabilities: tuple[float, ...]
    bundle_id: str
    missing: tuple[tuple[int, str], ...]
    flagged: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class Record:
    """One request: monotonic start and end, the error's first line (None when answered), the
    parties missing from the answer, and its predictions when the load keeps them."""

    start: float
    end: float
    error: str | None
    missing: frozenset[int]
    answers: tuple[Answered, ...] = ()

    @property
    def latency_ms(self) -> float:
        """End minus start, in milliseconds."""
        return (self.end - self.start) * 1000.0


class Load:
    """``concurrency`` client threads, each with its own :class:`FusionClient` (its default
    retries, so a restarting server is ridden across the way an application would), asking for
    ``batch`` of ``ids`` at a time with ``defense`` until :meth:`stop`; ``ca_file`` verifies an
    ``https://`` ``url``; ``keep_answers`` records every prediction (:class:`Answered`)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None,
        ids: Sequence[int],
        concurrency: int = 4,
        batch: int = 8,
        defense: str = "copur",
        timeout_s: float = 30.0,
        ca_file: Path | None = None,
        keep_answers: bool = False,
    ) -> None:
        self.url, self.api_key, self.ids = url, api_key, list(ids)
        self.keep_answers = keep_answers
        self.ca_file = ca_file
        self.batch, self.defense, self.timeout_s = batch, defense, timeout_s
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(k,), name=f"load-{k}", daemon=True)
            for k in range(concurrency)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every thread after its request in flight."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s * 4)

    def between(self, start: float, end: float) -> list[Record]:
        """The records of requests that started in [start, end]."""
        with self._lock:
            return [r for r in self.records if start <= r.start <= end]

    def answered_after(self, t: float, *, complete: bool) -> bool:
        """True when a request started after ``t`` was answered (with no party missing when
        ``complete``)."""
        with self._lock:
            return any(
                r.start >= t and r.error is None and (not complete or not r.missing)
                for r in self.records
            )

    def _run(self, k: int) -> None:
        client = FusionClient(
            self.url, timeout=self.timeout_s, api_key=self.api_key, ca_file=self.ca_file
        )
        offset = k * self.batch
        try:
            while not self._stop.is_set():
                chunk = [self.ids[(offset + j) % len(self.ids)] for j in range(self.batch)]
                offset += self.batch * len(self._threads)
                start = time.monotonic()
                error, missing = None, frozenset[int]()
                answers: tuple[Answered, ...] = ()
                try:
                    answer = client.predict_json(chunk, defense=self.defense)
                    missing = frozenset(
                        m for p in answer["predictions"] for m in p["missing_parties"]
                    )
                    if self.keep_answers:
                        answers = tuple(answered(p) for p in answer["predictions"])
                except CopurClientError as exc:
                    error = str(exc).splitlines()[0]
                record = Record(
                    start=start, end=time.monotonic(), error=error, missing=missing, answers=answers
                )
                with self._lock:
                    self.records.append(record)
                if error is not None:
                    time.sleep(0.05)
        finally:
            client.close()


def answered(p: dict[str, Any]) -> Answered:
    """One prediction of the server's JSON (an element of ``predictions``) as an
    :class:`Answered`."""
    reasons = p.get("missing_reasons") or [""] * len(p["missing_parties"])
    return Answered(
        sample_id=int(p["sample_id"]),
        label=int(p["label"]),
        probabilities=tuple(float(x) for x in p["probabilities"]),
        bundle_id=str(p.get("bundle_id", "")),
        missing=tuple(zip(map(int, p["missing_parties"]), map(str, reasons), strict=True)),
        flagged=tuple(int(x) for x in p["flagged_parties"]),
    )
