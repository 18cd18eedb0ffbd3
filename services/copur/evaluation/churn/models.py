"""What ``copur bench churn`` measures: one :class:`ChurnRow` per phase and the run's
:class:`ChurnReport` (written as JSON; the Markdown table is made from it)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

__all__ = ["ChurnReport", "ChurnRow", "ChurnSettings"]


@dataclass(frozen=True, kw_only=True)
class ChurnSettings:
    """How the phases are run: ``party`` is the one frozen, slowed and put on a foreign bundle;
    ``concurrency`` clients for the faults, ``rollout_concurrency`` for the rollout and rollback;
    each fault is measured for ``phase_s`` seconds once the cluster has reacted (ejection, state
    ``version``); ``batch`` samples per request with ``defense``."""

    party: int = 3
    concurrency: int = 8
    rollout_concurrency: int = 16
    phase_s: float = 8.0
    batch: int = 1
    defense: str = "copur"
    slow_ms: float = 1500.0
    react_timeout_s: float = 30.0


class ChurnRow(BaseModel):
    """One phase as the client saw it, over its measured window: requests, errors, predictions per
    second, latency percentiles, the answers missing a party by reason, the answers flagging the
    party under test, how long the cluster took to react (``react_s``: ejection, state
    ``version``, the rollout's walk) and to recover after the fault was undone."""

    model_config = ConfigDict(extra="forbid")

    name: str
    action: str
    concurrency: int
    window_s: float
    requests: int
    errors: int
    error_kinds: list[str]
    predictions_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    missing: dict[str, int]
    flagged_party: int
    react_s: float | None
    #: the slowest request started while the cluster reacted (before the ejection): what the
    #: stall cost until then
    react_max_ms: float | None = None
    recovery_s: float | None
    bundles: list[str]
    mixed: int | None = None
    accuracy: float | None = None
    min_pass_accuracy: float | None = None


class ChurnReport(BaseModel):
    """Every phase's row, the bundles involved, the lowest accuracy of either bundle with any one
    party missing (the floor the rollout must stay above) and the checks, each True or False."""

    model_config = ConfigDict(extra="forbid")

    command: str
    party: int
    active_bundle: str
    next_bundle: str
    eval_samples: int
    deadline_ms: float
    eject_after: int
    one_missing_accuracy: float
    rows: list[ChurnRow]
    checks: dict[str, bool]
