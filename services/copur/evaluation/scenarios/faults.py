"""Faults injected into the local cluster's party processes: stop (kill), start (restart, then
wait for the fusion center to receive the party's block again), slow (SIGSTOP for a while) and
resume (SIGCONT)."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from copur.operations.launcher import Cluster
from copur.transport.topology import service_name
from copur_client.errors import CopurClientError
from copur_client.http import FusionClient

__all__ = ["REJOIN_TIMEOUT_S", "PartyFaults", "Restart"]

REJOIN_TIMEOUT_S = 30.0
"""How long a started party may take until the fusion center receives its block again."""


@dataclass(frozen=True)
class Restart:
    """A party process restarted: whether it was paused, seconds until it was ready, seconds until
    the fusion center received its block again (None: not within :data:`REJOIN_TIMEOUT_S`)."""

    resumed: bool
    ready_s: float
    rejoined_s: float | None


class PartyFaults:
    """Stops, starts, pauses and resumes the party processes of ``cluster``; ``url`` / ``api_key``:
    the fusion center a restarted party must rejoin, ``probe_ids``: the sample ids asked to see that
    it did.

    A pause ends by itself after its seconds, at the next start/resume step of that party, or at
    :meth:`resume_all`, which the runner always calls at the end.
    """

    def __init__(
        self,
        cluster: Cluster | None,
        *,
        url: str,
        api_key: str | None,
        probe_ids: list[int],
        ca_file: Path | None = None,
    ) -> None:
        self.cluster, self.url, self.api_key = cluster, url, api_key
        self.ca_file = ca_file
        self.probe_ids = list(probe_ids)
        self._slowed: dict[int, threading.Timer] = {}
        self._lock = threading.Lock()

    def _running(self) -> Cluster:
        assert self.cluster is not None, "fault steps are refused without the local cluster"
        return self.cluster

    @staticmethod
    def _proc(party: int) -> str:
        return service_name("party", party)

    def _signal(self, party: int, sig: int) -> None:
        popen = self._running().procs[self._proc(party)].popen
        if popen is not None and popen.poll() is None:
            os.kill(popen.pid, sig)

    def _resume(self, party: int) -> bool:
        with self._lock:
            timer = self._slowed.pop(party, None)
        if timer is None:
            return False
        timer.cancel()
        self._signal(party, signal.SIGCONT)
        return True

    def stop(self, party: int) -> None:
        """Kill party ``party``'s process (a paused one is resumed first)."""
        self._resume(party)
        self._running().kill(self._proc(party))

    def start(self, party: int) -> Restart:
        """Restart party ``party``'s process, then wait until the fusion center has its block."""
        resumed = self._resume(party)
        started = time.perf_counter()
        self._running().restart(self._proc(party))
        ready = time.perf_counter() - started
        rejoined = self._wait_rejoined(party)
        return Restart(
            resumed=resumed,
            ready_s=round(ready, 3),
            rejoined_s=None if rejoined is None else round(rejoined - started, 3),
        )

    def _wait_rejoined(self, party: int, timeout: float = REJOIN_TIMEOUT_S) -> float | None:
        """Wait until the fusion center receives ``party``'s block again (its channels reconnect
        with a backoff after a restart): the time it did, or None after ``timeout`` seconds."""
        deadline = time.perf_counter() + timeout
        with FusionClient(
            self.url, timeout=10.0, retries=0, api_key=self.api_key, ca_file=self.ca_file
        ) as client:
            while time.perf_counter() < deadline:
                try:
                    (answer,) = client.predict(self.probe_ids, defense="none")
                    if party not in answer.missing_parties:
                        return time.perf_counter()
                except CopurClientError:
                    pass
                time.sleep(0.2)
        return None

    def slow(self, party: int, seconds: float) -> None:
        """Pause party ``party``'s process for ``seconds`` (SIGSTOP now, SIGCONT from a timer)."""
        self._resume(party)
        timer = threading.Timer(seconds, self._resume, args=(party,))
        timer.daemon = True
        self._signal(party, signal.SIGSTOP)
        with self._lock:
            self._slowed[party] = timer
        timer.start()

    def resume(self, party: int) -> bool:
        """Resume party ``party``'s process: whether it was paused."""
        return self._resume(party)

    def resume_all(self) -> None:
        """Resume every paused party."""
        for party in list(self._slowed):
            self._resume(party)
