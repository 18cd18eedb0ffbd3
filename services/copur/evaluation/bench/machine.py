"""Where a benchmark ran: the host, its CPU and usable cores, and (for the purifier bench) torch and
the device. Both benches record it through :func:`machine_info`."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from copur.evaluation.bench.models import Machine

if TYPE_CHECKING:
    import torch

__all__ = ["cpu_model", "machine_info", "usable_cores"]


def cpu_model() -> str:
    """The CPU's model name, e.g. ``AMD EPYC 7763 64-Core Processor``.

    Neither the standard library nor psutil has it: ``platform.processor()`` gives the architecture
    on Linux (``x86_64``), so the Linux name comes from /proc/cpuinfo; elsewhere ``platform``'s
    answer."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), else all the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def machine_info(device: torch.device | None = None, threads: int | None = None) -> Machine:
    """The host: name, platform, Python, CPU model and usable cores. With ``device`` (the purifier
    bench), also torch's version, its intra-op ``threads``, the device (a GPU's name) and the load
    average, the neighbours a shared machine's timings depend on."""
    info = Machine(
        hostname=platform.node(),
        platform=platform.platform(),
        python=platform.python_version(),
        cpu=cpu_model(),
        cpu_count=usable_cores(),
    )
    if device is None:
        return info
    import torch

    info.threads = threads
    info.torch = torch.__version__
    info.device = str(device)
    if device.type == "cuda":
        info.gpu = torch.cuda.get_device_name(device)
    info.load_average = list(os.getloadavg())
    return info
