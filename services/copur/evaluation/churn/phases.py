"""The phases of ``copur bench churn`` against a running local cluster, each under a steady
client load (:class:`~copur.evaluation.containers.load.Load`):

- ``healthy``: the reference throughput and latency;
- ``frozen``: the party's process SIGSTOPped until it is ejected, measured, then SIGCONTinued
  until it is re-admitted;
- ``slow``: its adversary slot holds every call past the deadline (policy ``delay``), likewise;
- ``foreign-bundle``: the party holds only the next bundle (its blocks: reason ``version``);
- ``rollout`` / ``rollback``: :func:`copur.operations.rollout.rollout` to the next bundle and
  back, every answer checked against a reference of the bundle it names (an answer mixing two
  bundles, or missing a party, matches neither)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from copur.evaluation.churn.models import ChurnRow, ChurnSettings
from copur.evaluation.containers.load import Answered, Load, Record, answered
from copur.evaluation.percentiles import percentile
from copur.operations.rollout import RolloutConfig, rollback, rollout
from copur_client import AdversaryControl, CopurClientError, FusionClient

__all__ = ["Churn", "ProbabilityTolerance"]

ProbabilityTolerance = 1e-3
"""How far an answer's probabilities may lie from its bundle's reference (batching's rounding)."""
SETTLE_S = 1.5  # load running before a fault is injected
DRAIN_S = 1.0  # after a fault's window, before its undo: every request of the window answered


class Churn:
    """The phases, against the fusion center at ``url`` (``predict_key`` / ``admin_key``,
    ``ca_file`` for HTTPS); ``pid_of(party)``: the party's process id (SIGSTOP / SIGCONT);
    ``control``: the party's adversary control (None: no slow phase); ``eval_ids`` and ``truth``:
    the samples asked for and their labels."""

    def __init__(
        self,
        *,
        url: str,
        ca_file: Path | None,
        predict_key: str | None,
        admin_key: str | None,
        settings: ChurnSettings,
        pid_of: Callable[[int], int],
        control: AdversaryControl | None,
        eval_ids: Sequence[int],
        truth: dict[int, int],
        say: Callable[[str], None],
    ) -> None:
        self.url, self.ca_file = url, ca_file
        self.predict_key, self.admin_key = predict_key, admin_key
        self.s = settings
        self.pid_of = pid_of
        self.control = control
        self.eval_ids = list(eval_ids)
        self.truth = truth
        self.say = say
        self.admin = FusionClient(url, api_key=predict_key, admin_key=admin_key, ca_file=ca_file)
        self.healthy: ChurnRow | None = None

    def close(self) -> None:
        """Close the admin client."""
        self.admin.close()

    # -- measuring -------------------------------------------------------------------------

    @contextmanager
    def _load(self, concurrency: int) -> Iterator[Load]:
        load = Load(
            self.url,
            api_key=self.predict_key,
            ids=self.eval_ids,
            concurrency=concurrency,
            batch=self.s.batch,
            defense=self.s.defense,
            ca_file=self.ca_file,
            keep_answers=True,
        )
        with load:
            time.sleep(SETTLE_S)
            yield load

    def _state(self) -> str:
        try:
            parties = self.admin.parties()
        except CopurClientError:
            return "(unreachable)"
        return str(next(p["state"] for p in parties if p["index"] == self.s.party))

    def _wait_state(self, states: set[str], since: float) -> float | None:
        """Seconds from ``since`` until the party's state is one of ``states`` (None: not within
        the settings' timeout)."""
        while time.monotonic() - since < self.s.react_timeout_s:
            if self._state() in states:
                return time.monotonic() - since
            time.sleep(0.05)
        return None

    def _recovered(self, load: Load, since: float) -> float | None:
        """Seconds from ``since`` until the party is ``up`` and an answer to a request started
        after ``since`` misses no party."""
        while time.monotonic() - since < self.s.react_timeout_s:
            if self._state() == "up" and load.answered_after(since, complete=True):
                return time.monotonic() - since
            time.sleep(0.05)
        return None

    def _row(
        self,
        name: str,
        action: str,
        records: list[Record],
        *,
        concurrency: int,
        window_s: float,
        react_s: float | None = None,
        recovery_s: float | None = None,
    ) -> ChurnRow:
        ok = [r for r in records if r.error is None]
        latencies = [r.latency_ms for r in ok] or [0.0]
        answers = [a for r in ok for a in r.answers]
        missing: dict[str, int] = {}
        for a in answers:
            for _party, reason in a.missing:
                missing[reason] = missing.get(reason, 0) + 1
        correct = [a.label == self.truth.get(a.sample_id) for a in answers]
        row = ChurnRow(
            name=name,
            action=action,
            concurrency=concurrency,
            window_s=round(window_s, 2),
            requests=len(records),
            errors=len(records) - len(ok),
            error_kinds=sorted({r.error or "" for r in records if r.error})[:5],
            predictions_per_s=round(len(answers) / window_s, 1) if window_s > 0 else 0.0,
            p50_ms=round(percentile(latencies, 50) or 0.0, 1),
            p99_ms=round(percentile(latencies, 99) or 0.0, 1),
            max_ms=round(max(latencies), 1),
            missing=missing,
            flagged_party=sum(self.s.party in a.flagged for a in answers),
            react_s=None if react_s is None else round(react_s, 2),
            recovery_s=None if recovery_s is None else round(recovery_s, 2),
            bundles=sorted({a.bundle_id for a in answers}),
            accuracy=round(sum(correct) / len(correct), 4) if correct else None,
        )
        self.say(_line(row))
        return row

    # -- the phases ------------------------------------------------------------------------

    def healthy_phase(self, name: str = "healthy") -> ChurnRow:
        """No fault: the reference for the others (measured first and again last)."""
        with self._load(self.s.concurrency) as load:
            t0 = time.monotonic()
            time.sleep(self.s.phase_s)
            t1 = time.monotonic()
            row = self._row(
                name,
                "(no fault)",
                load.between(t0, t1),
                concurrency=self.s.concurrency,
                window_s=t1 - t0,
            )
        self.healthy = row
        return row

    def _fault(
        self,
        name: str,
        action: str,
        inject: Callable[[], object],
        undo: Callable[[], object],
        *,
        reacted: str = "ejected",
    ) -> ChurnRow:
        """``inject``, wait until the party's state is ``reacted``, measure ``phase_s``, ``undo``,
        wait until it is back; the row's window is the measured one (after the reaction)."""
        with self._load(self.s.concurrency) as load:
            t_inject = time.monotonic()
            inject()
            try:
                react = self._wait_state({reacted}, t_inject)
                t0 = time.monotonic()
                time.sleep(self.s.phase_s)
                t1 = time.monotonic()
                time.sleep(DRAIN_S)  # the window's requests are answered before the undo
            finally:
                undo()
            t_undo = time.monotonic()
            recovery = self._recovered(load, t_undo)
            records = load.between(t0, t1)
            reacting = [r.latency_ms for r in load.between(t_inject, t0) if r.error is None]
        row = self._row(
            name,
            action,
            records,
            concurrency=self.s.concurrency,
            window_s=t1 - t0,
            react_s=react,
            recovery_s=recovery,
        )
        return row.model_copy(
            update={"react_max_ms": round(max(reacting), 1) if reacting else None}
        )

    def frozen_phase(self) -> ChurnRow:
        """The party's process stopped (SIGSTOP: its connections stay open, nothing answers)."""
        pid = self.pid_of(self.s.party)
        return self._fault(
            "frozen",
            f"SIGSTOP party-{self.s.party} (undone by SIGCONT)",
            lambda: os.kill(pid, signal.SIGSTOP),
            lambda: os.kill(pid, signal.SIGCONT),
        )

    def slow_phase(self) -> ChurnRow | None:
        """The party answers ``slow_ms`` late (its adversary slot's ``delay``); None without an
        adversary slot for it."""
        control = self.control
        if control is None:
            return None
        ms = self.s.slow_ms
        return self._fault(
            "slow",
            f"party-{self.s.party} answers {ms:.0f} ms late (adversary policy delay)",
            lambda: control.set_policy("delay", ms=ms),
            lambda: control.set_policy("none"),
        )

    def foreign_phase(self, *, active: tuple[str, str], other: tuple[str, str]) -> ChurnRow:
        """The party holds only the ``other`` bundle ((id, path)); undone by loading ``active``
        back and dropping ``other``."""
        p, admin = self.s.party, self.admin
        return self._fault(
            "foreign-bundle",
            f"party-{p} holds only bundle {other[0]} (loaded, then {active[0]} dropped)",
            lambda: (admin.load_party_bundle(p, other[1]), admin.drop_party_bundle(p, active[0])),
            lambda: (admin.load_party_bundle(p, active[1]), admin.drop_party_bundle(p, other[0])),
            reacted="version",
        )

    def reference(self) -> dict[int, Answered]:
        """Every eval sample's answer from the cluster as it is now, by sample id."""
        out: dict[int, Answered] = {}
        with FusionClient(self.url, api_key=self.predict_key, ca_file=self.ca_file) as client:
            for k in range(0, len(self.eval_ids), 64):
                answer = client.predict_json(self.eval_ids[k : k + 64], defense=self.s.defense)
                for item in answer["predictions"]:
                    a = answered(item)
                    out[a.sample_id] = a
        return out

    def upgrade_phase(
        self,
        name: str,
        walk: Callable[[], object],
        refs: dict[str, dict[int, Answered]],
        *,
        action: str,
    ) -> ChurnRow:
        """``walk`` (a rollout or rollback) under ``rollout_concurrency`` clients; every answer of
        the window (its start to one second after) checked against ``refs[its bundle]``."""
        conc = self.s.rollout_concurrency
        with self._load(conc) as load:
            t0 = time.monotonic()
            walk()
            react = time.monotonic() - t0
            time.sleep(1.0)
            t1 = time.monotonic()
            records = load.between(t0, t1)
        active = self.admin.bundles().active
        if active not in refs:  # the bundle walked to: its reference, now that it is active
            refs[active] = self.reference()
        row = self._row(name, action, records, concurrency=conc, window_s=t1 - t0, react_s=react)
        answers = sorted(
            ((r.start, a) for r in records if r.error is None for a in r.answers),
            key=lambda x: x[0],
        )
        mixed = sum(not _matches(a, refs.get(a.bundle_id, {})) for _t, a in answers)
        passes = [
            [a for _t, a in answers[k : k + len(self.eval_ids)]]
            for k in range(0, len(answers) - len(self.eval_ids) + 1, len(self.eval_ids))
        ]
        accuracies = [
            sum(a.label == self.truth[a.sample_id] for a in p) / len(p) for p in passes if p
        ]
        return row.model_copy(
            update={
                "mixed": mixed,
                "min_pass_accuracy": round(min(accuracies), 4) if accuracies else None,
            }
        )

    def rollout_phase(
        self, path: str, refs: dict[str, dict[int, Answered]], config: RolloutConfig
    ) -> ChurnRow:
        """A full rollout to the bundle at ``path``."""
        return self.upgrade_phase(
            "rollout",
            lambda: rollout(self.admin, path, config=config, say=self._step),
            refs,
            action=f"`copur rollout {path}`",
        )

    def rollback_phase(
        self, refs: dict[str, dict[int, Answered]], config: RolloutConfig
    ) -> ChurnRow:
        """``copur rollout --rollback``: back to the bundle served before."""
        return self.upgrade_phase(
            "rollback",
            lambda: rollback(self.admin, config=config, say=self._step),
            refs,
            action="`copur rollout --rollback`",
        )

    def _step(self, line: str) -> None:
        self.say(f"    {line}")


def _matches(a: Answered, ref: dict[int, Answered]) -> bool:
    """The answer is its bundle's reference answer: same label, same flagged parties,
    probabilities within :data:`ProbabilityTolerance`, no party missing."""
    r = ref.get(a.sample_id)
    if r is None or a.missing or a.flagged != r.flagged or a.label != r.label:
        return False
    return max(abs(x - y) for x, y in zip(a.probabilities, r.probabilities, strict=True)) <= (
        ProbabilityTolerance
    )


def _line(r: ChurnRow) -> str:
    react = "" if r.react_s is None else f", reacted in {r.react_s:.1f} s"
    rec = "" if r.recovery_s is None else f", recovered in {r.recovery_s:.1f} s"
    missing = ", ".join(f"{k} {v}" for k, v in sorted(r.missing.items())) or "none"
    return (
        f"{r.name}: {r.requests} requests, {r.errors} errors, {r.predictions_per_s:.0f} pred/s, "
        f"p50 {r.p50_ms:.0f} ms, p99 {r.p99_ms:.0f} ms, missing {missing}{react}{rec}"
    )
