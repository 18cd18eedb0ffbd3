"""Outlier ejection of a stalled party (Envoy's consecutive-failure ejection, a circuit breaker):
pure state, no I/O, no clock of its own (the caller passes ``now``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Breaker"]


@dataclass(kw_only=True)
class Breaker:
    """One party's breaker. After ``eject_after`` consecutive failures (deadline misses or errors;
    0: never) the party is ejected for a backoff of ``base_s``, doubled at every ejection in a row
    up to ``max_s``; while ejected no batch calls it. When the backoff has passed, one probe call
    decides: an answer re-admits it (:meth:`success`), a failure ejects it again for the next,
    longer backoff (:meth:`probe_failed`).

    Guarantee: a party that keeps failing costs batches at most ``eject_after`` deadline waits
    per ejection; a party that answers again is back within its current backoff plus one probe."""

    eject_after: int
    base_s: float
    max_s: float
    #: failures since the last answer
    consecutive: int = 0
    #: ejections since the last answer (the backoff's exponent)
    streak: int = 0
    #: ejections in all
    ejections: int = 0
    #: until when (the caller's clock) the party stays out; None: in the path
    ejected_until: float | None = None

    @property
    def ejected(self) -> bool:
        """True while the party is out of the path (until a probe answers)."""
        return self.ejected_until is not None

    @property
    def backoff_s(self) -> float:
        """The current ejection's length: ``base_s * 2**(streak - 1)``, at most ``max_s``."""
        return float(min(self.base_s * 2.0 ** max(self.streak - 1, 0), self.max_s))

    def failure(self, now: float) -> bool:
        """Count one failed call at ``now``; True when it ejects the party (the K-th in a row)."""
        self.consecutive += 1
        if self.ejected or self.eject_after <= 0 or self.consecutive < self.eject_after:
            return False
        self._eject(now)
        return True

    def success(self) -> None:
        """The party answered: back in the path, counters reset."""
        self.consecutive, self.streak, self.ejected_until = 0, 0, None

    def probe_failed(self, now: float) -> None:
        """The probe after a backoff failed: ejected again, for a longer backoff."""
        self._eject(now)

    def _eject(self, now: float) -> None:
        # Each ejection in a row doubles the backoff (capped); the total is kept for the metrics.
        self.streak += 1
        self.ejections += 1
        self.ejected_until = now + self.backoff_s
