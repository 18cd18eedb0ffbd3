"""The adversary's Prometheus counters, in a registry of their own (one per adversary or test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["AdversaryMetrics"]


class AdversaryMetrics:
    """``calls`` forwarded (by method), answers ``corrupted`` (by attack, drops included),
    ``upstream_errors`` (by status code) and ``donor_blocks`` fetched; exported from ``registry``
    only, never the global one."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "copur_adversary_calls",
            "Calls forwarded to the upstream party",
            ["method"],
            registry=self.registry,
        )
        self.corrupted = Counter(
            "copur_adversary_corrupted",
            "Answers corrupted (drops included)",
            ["attack"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "copur_adversary_upstream_errors",
            "Upstream calls that failed",
            ["code"],
            registry=self.registry,
        )
        self.donor_blocks = Counter(
            "copur_adversary_donor_blocks",
            "Donor blocks fetched from the upstream party (mimic, sia; each donor once)",
            registry=self.registry,
        )
