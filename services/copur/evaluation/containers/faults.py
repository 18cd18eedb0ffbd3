"""Container faults under load: each fault is done to one container of a running compose project
while :class:`~.load.Load` keeps asking the fusion center for predictions, held for a while, then
undone; the result says what the client saw (requests, errors, latency percentiles, the parties
its answers reported missing) and how long recovery took (from the undo until every party is up
in ``/v1/parties`` and an answer with no party missing arrives)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from copur.evaluation.containers.load import Load, Record
from copur.evaluation.percentiles import percentile
from copur.operations.containers.compose import ComposeProject

__all__ = ["Fault", "FaultResult", "container_faults", "run_fault", "run_faults"]

Action = Callable[[ComposeProject], None]


@dataclass(frozen=True, kw_only=True)
class Fault:
    """A fault: ``inject`` it, hold it ``hold_s`` seconds, ``undo`` it. ``action`` and
    ``undo_action`` say in words what was done (the table shows them); ``party`` is the party it
    hits (None for the fusion center itself)."""

    name: str
    action: str
    undo_action: str
    inject: Action
    undo: Action
    party: int | None
    hold_s: float = 8.0


class FaultResult(BaseModel):
    """What the client saw from the injection until recovery: ``held_s`` from the injection to the
    undo (for the restart: how long ``docker restart`` took), ``recovery_s`` from the undo."""

    model_config = ConfigDict(extra="forbid")

    name: str
    action: str
    undo_action: str
    party: int | None
    held_s: float
    requests: int
    errors: int
    error_kinds: list[str]
    p50_ms: float
    p99_ms: float
    max_ms: float
    answers_with_missing: int
    missing_parties: list[int]
    party_states: list[str]
    recovery_s: float | None
    fusion_restarts: int


def container_faults(*, party: int = 3, loss: float = 0.3, rate: str = "64kbit") -> list[Fault]:
    """Every fault tried, on party ``party``'s container (and the fusion center's last)."""
    svc = f"party-{party}"
    return [
        _docker_verbs("kill", "start", svc, party),
        _docker_verbs("pause", "unpause", svc, party),
        Fault(
            name="disconnect",
            action=f"docker network disconnect {svc}",
            undo_action=f"docker network connect {svc}",
            inject=lambda p: p.disconnect(svc),
            undo=lambda p: p.connect(svc),
            party=party,
        ),
        Fault(
            name="lossy-link",
            action=f"{loss:.0%} packet loss in and out of {svc} (iptables statistic)",
            undo_action="rules removed",
            inject=lambda p: p.lossy_link(svc, loss=loss),
            undo=lambda p: p.heal_lossy_link(svc, loss=loss),
            party=party,
        ),
        Fault(
            name="slow-link",
            action=f"{svc} sends at {rate} (tc tbf)",
            undo_action="queue removed",
            inject=lambda p: p.slow_link(svc, rate=rate),
            undo=lambda p: p.heal_slow_link(svc),
            party=party,
        ),
        Fault(
            name="fusion-restart",
            action="docker restart fusion",
            undo_action="(none: restart returns when started)",
            inject=lambda p: p.docker_on("restart", "fusion", "--time", "10"),
            undo=lambda p: None,
            party=None,
            hold_s=0.0,
        ),
    ]


def _docker_verbs(verb: str, undo_verb: str, svc: str, party: int) -> Fault:
    """``docker VERB`` on ``svc``'s container, undone by ``docker UNDO_VERB``."""
    return Fault(
        name=verb,
        action=f"docker {verb} {svc}",
        undo_action=f"docker {undo_verb} {svc}",
        inject=lambda p: p.docker_on(verb, svc),
        undo=lambda p: p.docker_on(undo_verb, svc),
        party=party,
    )


def run_fault(
    project: ComposeProject,
    fault: Fault,
    load: Load,
    *,
    parties: Callable[[], list[dict[str, object]]],
    recover_timeout_s: float = 120.0,
) -> FaultResult:
    """Inject ``fault``, hold it, undo it and wait for recovery (``parties`` reads
    ``/v1/parties``; recovery is every state ``up`` and a complete answer to a request started
    after the undo). ``recovery_s`` is None when it did not recover within the timeout."""
    restarts_before = _started_at(project)
    states: set[str] = set()
    t_inject = time.monotonic()
    fault.inject(project)
    while time.monotonic() < t_inject + fault.hold_s:
        states |= _states(parties, fault.party)
        time.sleep(0.5)
    fault.undo(project)
    t_undo = time.monotonic()
    recovered: float | None = None
    while time.monotonic() < t_undo + recover_timeout_s:
        seen = _states(parties, None)
        states |= _states(parties, fault.party) if fault.party is not None else set()
        if seen == {"up"} and load.answered_after(t_undo, complete=True):
            recovered = time.monotonic()
            break
        time.sleep(0.2)
    window = load.between(t_inject, recovered or time.monotonic())
    return _result(
        fault,
        window,
        held_s=t_undo - t_inject,
        states=states,
        recovery_s=None if recovered is None else recovered - t_undo,
        fusion_restarts=int(_started_at(project) != restarts_before),
    )


def run_faults(
    project: ComposeProject,
    faults: Sequence[Fault],
    load: Load,
    *,
    parties: Callable[[], list[dict[str, object]]],
    baseline_s: float = 8.0,
    say: Callable[[str], None] = print,
) -> list[FaultResult]:
    """A baseline row (no fault, ``baseline_s`` seconds of load) and one row per fault, in order."""
    t0 = time.monotonic()
    time.sleep(baseline_s)
    baseline = _result(
        Fault(
            name="baseline",
            action="(no fault)",
            undo_action="",
            inject=lambda p: None,
            undo=lambda p: None,
            party=None,
            hold_s=baseline_s,
        ),
        load.between(t0, time.monotonic()),
        held_s=baseline_s,
        states=set(),
        recovery_s=0.0,
        fusion_restarts=0,
    )
    results = [baseline]
    say(_line(baseline))
    for fault in faults:
        result = run_fault(project, fault, load, parties=parties)
        say(_line(result))
        results.append(result)
    return results


def _line(r: FaultResult) -> str:
    rec = "not recovered" if r.recovery_s is None else f"recovered in {r.recovery_s:.1f} s"
    return (
        f"{r.name}: {r.requests} requests, {r.errors} errors, p99 {r.p99_ms:.0f} ms, "
        f"missing {r.missing_parties or '-'}, {rec}"
    )


def _states(parties: Callable[[], list[dict[str, object]]], party: int | None) -> set[str]:
    try:
        listed = parties()
    except Exception:
        return {"(fusion unreachable)"}
    return {str(p["state"]) for p in listed if party is None or p["index"] == party}


def _started_at(project: ComposeProject) -> str:
    return project.inspect("fusion", "{{.State.StartedAt}}")


def _result(
    fault: Fault,
    window: list[Record],
    *,
    held_s: float,
    states: set[str],
    recovery_s: float | None,
    fusion_restarts: int,
) -> FaultResult:
    latencies = [r.latency_ms for r in window if r.error is None] or [0.0]
    errors = [r for r in window if r.error is not None]
    missing = sorted({m for r in window for m in r.missing})
    return FaultResult(
        name=fault.name,
        action=fault.action,
        undo_action=fault.undo_action,
        party=fault.party,
        held_s=round(held_s, 2),
        requests=len(window),
        errors=len(errors),
        error_kinds=sorted({r.error or "" for r in errors})[:5],
        p50_ms=round(percentile(latencies, 50) or 0.0, 1),
        p99_ms=round(percentile(latencies, 99) or 0.0, 1),
        max_ms=round(max(latencies), 1),
        answers_with_missing=sum(bool(r.missing) for r in window),
        missing_parties=missing,
        party_states=sorted(states),
        recovery_s=None if recovery_s is None else round(recovery_s, 2),
        fusion_restarts=fusion_restarts,
    )
