"""Running a scenario's steps one at a time: adversary policies, predictions through the fusion
center (the metrics per defense), expectations over them, and the party faults of the local cluster;
each step gives its typed record."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from copur.evaluation.scenarios.faults import PartyFaults
from copur.evaluation.scenarios.metrics import predict_metrics, sample_ids
from copur.evaluation.scenarios.model import (
    DefenseMetrics,
    ExpectRecord,
    PolicyInForce,
    PolicyRecord,
    PredictRecord,
    ResetRecord,
    ResumePartyRecord,
    SlowPartyRecord,
    StartPartyRecord,
    StepResult,
    StopPartyRecord,
)
from copur.evaluation.scenarios.schema import (
    CLUSTER_KINDS,
    ExpectStep,
    PartyStep,
    PolicyStep,
    PredictStep,
    Scenario,
    ScenarioError,
    SlowPartyStep,
    Step,
)
from copur.operations.launcher import Cluster
from copur.roles.adversary.policy import NO_ATTACK
from copur.science.bundle import load_bundle
from copur.science.data import load_dataset
from copur_client.errors import CopurClientError
from copur_client.http import AdversaryControl, FusionClient

__all__ = ["REQUEST_TIMEOUT_S", "StepRunner"]

REQUEST_TIMEOUT_S = 120.0
"""The timeout of one predict request."""


def _since(began: float) -> float:
    return round(time.perf_counter() - began, 3)


class StepRunner:
    """Runs ``scenario``'s steps against the fusion center at ``url``, the adversaries at
    ``control_urls`` (party index -> control URL) and, for the fault steps, the local
    ``cluster``, on the bundle ``bundle``.

    Construction checks the scenario against the bundle and the cluster (data set, party indices, an
    adversary for every policy step, the cluster for fault steps) and raises :class:`ScenarioError`
    before any step runs. Predictions carry ``api_key``, policy changes ``admin_key``;
    ``ca_file`` verifies ``https://`` front doors.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        url: str,
        control_urls: dict[int, str],
        bundle: str,
        cluster: Cluster | None,
        api_key: str | None = None,
        admin_key: str | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.scenario, self.url, self.cluster = scenario, url, cluster
        self.control_urls = dict(control_urls)
        self.api_key, self.admin_key = api_key, admin_key
        self.ca_file = ca_file
        loaded = load_bundle(bundle)
        self.bundle_path = str(bundle)
        self.manifest = loaded.manifest
        spec = loaded.manifest.dataset_spec
        if scenario.requires_dataset is not None and spec.name != scenario.requires_dataset:
            raise ScenarioError(
                f"scenario '{scenario.name}' requires data set '{scenario.requires_dataset}', "
                f"but bundle {bundle} holds '{spec.name}'"
            )
        self.num_parties = loaded.manifest.num_parties
        self._check_steps()
        self.ids = sample_ids(loaded.test_ids, scenario.samples, scenario.seed)
        all_labels = load_dataset(spec).labels
        self.labels = {i: int(all_labels[i]) for i in self.ids}
        self.policies: dict[int, PolicyStep] = {}
        """party -> the policy step in force at its adversary"""
        self.results: dict[str, dict[str, DefenseMetrics]] = {}
        """predict step name -> defense -> its metrics"""
        self.faults = PartyFaults(
            cluster, url=url, api_key=api_key, probe_ids=self.ids[:1], ca_file=ca_file
        )

    def _check_steps(self) -> None:
        for step in self.scenario.steps:
            where = f"step {step.index} ({step.kind}"
            party = getattr(step.body, "party", None)
            if party is not None and party >= self.num_parties:
                msg = f"party {party} is not a party of the bundle (0..{self.num_parties - 1})"
                raise ScenarioError(f"{where}.party): {msg}")
            if isinstance(step.body, PolicyStep) and party not in self.control_urls:
                adversaries = ", ".join(map(str, sorted(self.control_urls))) or "none"
                msg = f"party {party} has no adversary in front of it (adversaries: {adversaries})"
                raise ScenarioError(f"{where}.party): {msg}")
            if step.kind in CLUSTER_KINDS and self.cluster is None:
                raise ScenarioError(f"{where}): needs the local cluster (run with --up)")

    def run_step(self, step: Step) -> StepResult:
        """Run ``step`` and give its record."""
        began = time.perf_counter()
        body, index = step.body, step.index
        if isinstance(body, PolicyStep):
            return self._policy(step, body, began)
        if isinstance(body, PredictStep):
            return self._predict(index, body, began)
        if isinstance(body, ExpectStep):
            return self._expect(index, body, began)
        if isinstance(body, SlowPartyStep):
            self.faults.slow(body.party, body.seconds)
            # The record's seconds are the pause asked for, not the time the step took.
            return SlowPartyRecord(index=index, seconds=body.seconds, party=body.party)
        if step.kind == "reset":
            for party in sorted(self.control_urls):
                if party < self.num_parties:
                    self._set_policy(step, party, NO_ATTACK, {})
            self.policies.clear()
            return ResetRecord(index=index, seconds=_since(began))
        assert isinstance(body, PartyStep)
        party = body.party
        if step.kind == "stop_party":
            self.faults.stop(party)
            return StopPartyRecord(index=index, seconds=_since(began), party=party)
        if step.kind == "start_party":
            restart = self.faults.start(party)
            return StartPartyRecord(
                index=index,
                seconds=_since(began),
                party=party,
                resumed=restart.resumed,
                ready_s=restart.ready_s,
                rejoined_s=restart.rejoined_s,
            )
        resumed = self.faults.resume(party)
        return ResumePartyRecord(index=index, seconds=_since(began), party=party, resumed=resumed)

    def finish(self) -> None:
        """Resume every paused party (always called at the end, whatever happened)."""
        self.faults.resume_all()

    def _set_policy(self, step: Step, party: int, attack: str, params: dict[str, Any]) -> None:
        try:
            with AdversaryControl(
                self.control_urls[party], api_key=self.admin_key, ca_file=self.ca_file
            ) as control:
                control.set_policy(attack, **params)
        except CopurClientError as exc:
            where = f"step {step.index} ({step.kind})"
            raise ScenarioError(f"{where}: adversary of party {party}: {exc}") from None

    def _policy(self, step: Step, body: PolicyStep, began: float) -> PolicyRecord:
        self._set_policy(step, body.party, body.attack, dict(body.params))
        self.policies[body.party] = body
        return PolicyRecord(
            index=step.index,
            seconds=_since(began),
            party=body.party,
            attack=body.attack,
            params=dict(body.params),
        )

    def _predict(self, index: int, body: PredictStep, began: float) -> PredictRecord:
        active = {p: pol for p, pol in self.policies.items() if pol.attack != NO_ATTACK}
        attackers = {p for p, pol in active.items() if pol.active}
        targets = [pol.target for pol in active.values() if pol.target is not None]
        target = targets[0] if targets else None
        per_defense: dict[str, DefenseMetrics] = {}
        client = FusionClient(
            self.url,
            timeout=REQUEST_TIMEOUT_S,
            retries=0,
            api_key=self.api_key,
            ca_file=self.ca_file,
        )
        with client:
            for defense in self.scenario.defenses_of(body):
                per_defense[defense] = self._ask(client, body, defense, attackers, target)
        self.results[body.name] = per_defense
        policies: dict[str, PolicyInForce] = {}
        for p, pol in sorted(active.items()):
            policies[str(p)] = PolicyInForce(attack=pol.attack, params=dict(pol.params))
        return PredictRecord(
            index=index,
            seconds=_since(began),
            name=body.name,
            attackers=sorted(attackers),
            target=target,
            policies=policies,
            defenses=per_defense,
        )

    def _ask(
        self,
        client: FusionClient,
        body: PredictStep,
        defense: str,
        attackers: set[int],
        target: int | None,
    ) -> DefenseMetrics:
        """Send the scenario's ids to ``defense`` in requests of ``body.batch`` ids: its metrics
        (``attackers`` lying, ``target`` the class of a targeted attack)."""
        answers: dict[int, Any] = {}
        latencies: list[float] = []
        errors: list[str] = []
        error_samples = 0
        for start in range(0, len(self.ids), body.batch):
            chunk = self.ids[start : start + body.batch]
            sent = time.perf_counter()
            try:
                preds = client.predict(chunk, defense=defense, certify=body.certify)
            except CopurClientError as exc:
                errors.append(str(exc))
                error_samples += len(chunk)
                continue
            latencies.append(time.perf_counter() - sent)
            answers.update({p.sample_id: p for p in preds})
        return predict_metrics(
            answers,
            self.labels,
            attackers=attackers,
            target=target,
            num_parties=self.num_parties,
            latencies_s=latencies,
            errors=errors,
            error_samples=error_samples,
        )

    def _expect(self, index: int, body: ExpectStep, began: float) -> ExpectRecord:
        metrics = self.results.get(body.step, {}).get(body.defense)
        actual = None if metrics is None else metrics.metric(body.metric)
        return ExpectRecord(
            index=index,
            seconds=_since(began),
            step=body.step,
            defense=body.defense,
            metric=body.metric,
            op=body.op,
            value=body.value,
            actual=actual,
            passed=body.holds(actual),
            description=body.describe(),
        )
