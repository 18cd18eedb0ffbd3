"""Resident memory of the cluster's processes: :func:`read_rss_mb` reads it once,
:class:`RssSampler` keeps the largest value of each process while a load test runs."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import psutil

__all__ = ["RSS_SAMPLE_S", "RssSampler", "read_rss_mb"]

RSS_SAMPLE_S = 0.2


def read_rss_mb(pid: int, *, peak: bool = True) -> float | None:
    """Resident set size of ``pid`` in MiB: the peak since it started (``peak``) or the current one;
    None when the process is gone (or not ours to read)."""
    try:
        rss = psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None
    if peak:
        rss = max(rss, _high_water_mark(pid) or 0)
    return rss / 2**20


def _high_water_mark(pid: int) -> int | None:
    """The kernel's peak RSS of ``pid`` in bytes (VmHWM of /proc/<pid>/status); None without it.

    Read by hand because psutil has no peak RSS on Linux (``memory_info()`` is the current VmRSS,
    ``memory_full_info()`` adds USS/PSS/swap), and sampling the current RSS instead would miss what
    the report's "peak" is for: the startup peak (torch, the bundle) before the load test begins,
    and transients shorter than the sampling period (a large batch's tensors) during it. Measured:
    a 200 MB tensor freed at once raised VmHWM by 192 MiB and left VmRSS (psutil's rss) where it
    was. The kernel's high-water mark is exact; elsewhere the sampled current RSS is what there
    is."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "VmHWM":
            return int(value.split()[0]) * 1024
    return None


class RssSampler:
    """Keeps the largest RSS (MiB) seen for each named process while running."""

    def __init__(self, pids: dict[str, int] | None) -> None:
        self.pids = dict(pids or {})
        self.peak: dict[str, float] = {}

    def sample(self) -> None:
        """Read every process once; a process that is gone keeps its largest value so far."""
        for name, pid in self.pids.items():
            mb = read_rss_mb(pid)
            if mb is not None:
                self.peak[name] = max(self.peak.get(name, 0.0), mb)

    async def run(self, stop: asyncio.Event) -> None:
        """Sample every ``RSS_SAMPLE_S`` seconds until ``stop`` is set, then once more."""
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RSS_SAMPLE_S)
        self.sample()
