"""The fusion center's Prometheus metrics, in a registry of its own (one per process or test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["MISSING_REASONS", "FusionMetrics"]

MISSING_REASONS = ("timeout", "error", "invalid", "ejected", "version")
"""Why a party's block of a sample is missing: its call timed out or failed, the row was garbage,
the party is ejected (stalled), or it answered from another bundle."""


class FusionMetrics:
    """Requests (by transport, defense, status) and their latency, batch sizes, party failures,
    flags and latencies, parties up; exported from ``registry`` only, never the global one.

    Per sample, per party: ``copur_party_flags_total`` (the defense flagged the block) and
    ``copur_party_missing_samples_total`` (no valid block, by ``reason``: the call failed or timed
    out, the row was garbage, the party is ejected or on another bundle), both against
    ``copur_batch_samples_sum`` (the samples fetched); the alert rules of deploy/prometheus divide
    them. ``copur_party_failures_total`` counts failed calls (or
    answers with bad rows), not samples. ``copur_party_up`` is each party's state (1 up),
    ``copur_min_parties`` the configured minimum beside ``copur_parties_up``.
    ``copur_party_ejected`` is 1 while a party is out of the path (stalled), and
    ``copur_party_ejections_total`` counts its ejections; ``copur_bundle_active{bundle}`` is 1 for
    the bundle batches run on (0 for one held beside it), ``copur_bundle_switches_total`` counts
    switches."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "copur_requests",
            "Prediction requests",
            ["transport", "defense", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "copur_request_latency_seconds",
            "Prediction request latency",
            ["transport"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "copur_batch_samples",
            "Samples per fused batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "copur_batch_requests",
            "Requests per fused batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.party_failures = Counter(
            "copur_party_failures",
            "Party answers treated as missing",
            ["party", "reason"],
            registry=self.registry,
        )
        self.party_flags = Counter(
            "copur_party_flags",
            "Samples whose block the defense flagged",
            ["party"],
            registry=self.registry,
        )
        self.party_latency = Histogram(
            "copur_party_latency_seconds",
            "Embed call latency per party",
            ["party"],
            registry=self.registry,
        )
        self.parties_up = Gauge("copur_parties_up", "Parties answering", registry=self.registry)
        self.party_up = Gauge(
            "copur_party_up",
            "1 while the party answers (last probe or Embed call), else 0",
            ["party"],
            registry=self.registry,
        )
        self.party_missing_samples = Counter(
            "copur_party_missing_samples",
            "Samples whose block from the party was missing, by reason (timeout, error, invalid, "
            "ejected, version)",
            ["party", "reason"],
            registry=self.registry,
        )
        self.party_ejected = Gauge(
            "copur_party_ejected",
            "1 while the party is ejected (stalled: not called until a probe answers)",
            ["party"],
            registry=self.registry,
        )
        self.party_ejections = Counter(
            "copur_party_ejections",
            "Times the party was ejected (consecutive deadline misses or errors)",
            ["party"],
            registry=self.registry,
        )
        self.bundle_active = Gauge(
            "copur_bundle_active",
            "1 for the bundle batches run on, 0 for a bundle held beside it",
            ["bundle"],
            registry=self.registry,
        )
        self.bundle_switches = Counter(
            "copur_bundle_switches",
            "Switches of the active bundle",
            registry=self.registry,
        )
        self.min_parties = Gauge(
            "copur_min_parties",
            "Valid blocks a sample needs (the topology's fusion.min_parties)",
            registry=self.registry,
        )

    def init_parties(self, num_parties: int) -> None:
        """Create every party's per-party series at zero (down, nothing flagged or missing), so
        that each exists, and ``rate()`` over it is right, from the first scrape on."""
        for i in range(num_parties):
            party = str(i)
            self.party_up.labels(party=party).set(0)
            self.party_flags.labels(party=party)
            self.party_ejected.labels(party=party).set(0)
            self.party_ejections.labels(party=party)
            for reason in MISSING_REASONS:
                self.party_missing_samples.labels(party=party, reason=reason)
