"""The client's retry policy, on tenacity: which failures are retried, how long to wait, when to
give up.

Two budgets, kept apart: ``retries`` for a server that is not there (a 503, or a connection
refused or dropped before the answer: the server is restarting, and every call retried is
idempotent), waiting ``backoff_s`` doubling up to ``max_backoff_s``; and ``rate_retries`` for a
429, waiting what its ``Retry-After`` asks when that is at most :data:`MAX_RETRY_AFTER_S`. Every
other error is raised at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from copur_client.errors import CopurClientError, RateLimited, Unavailable

__all__ = ["MAX_BACKOFF_S", "MAX_RETRY_AFTER_S", "RetryPolicy"]

MAX_BACKOFF_S = 4.0
"""The longest wait between two retries of a 503 or a refused / lost connection."""
MAX_RETRY_AFTER_S = 30.0
"""A server asking for a longer wait than this is answered with :class:`RateLimited` at once."""

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how long to retry one call (see the module docstring)."""

    retries: int = 0
    backoff_s: float = 0.25
    max_backoff_s: float = MAX_BACKOFF_S
    rate_retries: int = 0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.rate_retries < 0:
            raise ValueError(
                f"retries and rate_retries must be >= 0, got {self.retries} and {self.rate_retries}"
            )

    def backoff(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1, 2, ...) of an absent server: doubling,
        capped."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))

    @property
    def budget_s(self) -> float:
        """The most time spent waiting between the attempts of one call for an absent server."""
        return sum(self.backoff(a) for a in range(1, self.retries + 1))

    def call(
        self,
        attempt: Callable[[], T],
        *,
        absent: Callable[[CopurClientError], bool] = lambda exc: False,
        retry_unavailable: bool = True,
    ) -> T:
        """``attempt()`` until it returns, retrying its :class:`CopurClientError` per the policy:
        a 503, or an error for which ``absent`` says the server was not there, on the first
        budget (only when ``retry_unavailable``); a 429 on the second. The last error is
        raised as it was."""
        spent = {"absent": 0, "rate": 0}
        retries = self.retries if retry_unavailable else 0

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, RateLimited):
                return spent["rate"] < self.rate_retries and exc.retry_after_s <= MAX_RETRY_AFTER_S
            gone = isinstance(exc, CopurClientError) and (
                absent(exc) or (isinstance(exc, Unavailable) and exc.status == 503)
            )
            return gone and spent["absent"] < retries

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, RateLimited):
                spent["rate"] += 1
                return exc.retry_after_s
            spent["absent"] += 1
            return self.backoff(spent["absent"])

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda e: isinstance(e, CopurClientError) and retryable(e)
            ),
            wait=wait,
            sleep=lambda seconds: time.sleep(seconds),  # looked up per call: tests record the waits
            reraise=True,
        )
        return retrying(attempt)
