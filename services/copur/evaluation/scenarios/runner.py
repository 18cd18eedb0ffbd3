"""The scenario runner: drives the adversaries, the local cluster's party processes and the fusion center
through a scenario's steps, records per-defense metrics of every predict step, checks the expectations and
writes the report (``report.json``, ``report.md``, ``index.html``)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from copur.errors import CopurError
from copur.evaluation.scenarios.report import write_report
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
    load_scenario,
)
from copur.operations.launcher import Cluster
from copur.roles.adversary.policy import NO_ATTACK
from copur.science.bundle import load_bundle
from copur.science.data import load_dataset
from copur.transport.topology import load_topology, service_name
from copur_client.errors import CopurClientError
from copur_client.http import AdversaryControl, FusionClient

__all__ = ["DEFAULT_CONFIG", "predict_metrics", "run_scenario", "sample_ids", "scenario_command"]

DEFAULT_CONFIG = Path("deploy/cluster-scenarios.yaml")
REQUEST_TIMEOUT_S = 120.0
MAX_ERROR_MESSAGES = 5
REJOIN_TIMEOUT_S = 30.0


def sample_ids(test_ids: np.ndarray, samples: int, seed: int) -> list[int]:
    """A seeded sample of ``samples`` test ids (all of them when there are fewer), sorted."""
    rng = np.random.default_rng(seed)
    n = min(samples, len(test_ids))
    return sorted(int(i) for i in rng.choice(np.asarray(test_ids), size=n, replace=False))


def predict_metrics(
    answers: dict[int, Any],
    labels: dict[int, int],
    *,
    attackers: set[int],
    target: int | None,
    num_parties: int,
    latencies_s: list[float],
    errors: list[str],
    error_samples: int,
) -> dict[str, Any]:
    """The metrics of one defense at one predict step.

    ``answers``: sample id -> Prediction (answered samples only); ``attackers``: parties whose active policy
    corrupts (not none/drop); ``target``: the class of an active targeted attack. Accuracy is over answered
    samples (an abstention counts as wrong); flag precision/recall count (sample, party) pairs.
    """
    ids = sorted(answers)
    correct = sum(answers[i].label == labels[i] for i in ids)
    tp = fp = fn = 0
    missing = dict.fromkeys(range(num_parties), 0)
    for i in ids:
        flagged = set(answers[i].flagged_parties)
        tp += len(flagged & attackers)
        fp += len(flagged - attackers)
        fn += len(attackers - flagged)
        for p in answers[i].missing_parties:
            missing[int(p)] = missing.get(int(p), 0) + 1
    asr = None
    if target is not None:
        eligible = [i for i in ids if labels[i] != target]
        asr = sum(answers[i].label == target for i in eligible) / len(eligible) if eligible else None
    return {
        "answered": len(ids),
        "accuracy": correct / len(ids) if ids else None,
        "attack_success_rate": asr,
        "flag_precision": tp / (tp + fp) if tp + fp else None,
        "flag_recall": tp / (tp + fn) if attackers and ids else None,
        "latency_p50_ms": None if not latencies_s else 1000 * float(np.percentile(latencies_s, 50)),
        "latency_p99_ms": None if not latencies_s else 1000 * float(np.percentile(latencies_s, 99)),
        "requests": len(latencies_s) + len(errors),
        "missing": {str(p): c for p, c in sorted(missing.items())},
        "errors": len(errors),
        "error_samples": error_samples,
        "error_messages": errors[:MAX_ERROR_MESSAGES],
    }


@dataclass
class _State:
    """What the runner keeps across steps."""

    policies: dict[int, PolicyStep] = field(default_factory=dict)
    slowed: dict[int, threading.Timer] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Runner:
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
    ) -> None:
        self.scenario, self.url, self.control_urls, self.cluster = scenario, url, dict(control_urls), cluster
        self.api_key, self.admin_key = api_key, admin_key
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
        self.state = _State()
        self.results: dict[str, dict[str, dict[str, Any]]] = {}

    def _check_steps(self) -> None:
        for step in self.scenario.steps:
            party = getattr(step.body, "party", None)
            if party is not None and party >= self.num_parties:
                raise ScenarioError(
                    f"step {step.index} ({step.kind}.party): party {party} is not a party of the bundle "
                    f"(0..{self.num_parties - 1})"
                )
            if isinstance(step.body, PolicyStep) and party not in self.control_urls:
                raise ScenarioError(
                    f"step {step.index} (policy.party): party {party} has no adversary in front of it "
                    f"(adversaries: {', '.join(map(str, sorted(self.control_urls))) or 'none'})"
                )
            if step.kind in CLUSTER_KINDS and self.cluster is None:
                raise ScenarioError(f"step {step.index} ({step.kind}): needs the local cluster (run with --up)")

    # -- steps -------------------------------------------------------------------------------------
    def _set_policy(self, step: Step, party: int, attack: str, params: dict[str, Any]) -> None:
        try:
            with AdversaryControl(self.control_urls[party], api_key=self.admin_key) as control:
                control.set_policy(attack, **params)
        except CopurClientError as exc:
            raise ScenarioError(f"step {step.index} ({step.kind}): adversary of party {party}: {exc}") from None

    def policy(self, step: Step, body: PolicyStep) -> dict[str, Any]:
        self._set_policy(step, body.party, body.attack, dict(body.params))
        self.state.policies[body.party] = body
        return {"party": body.party, "attack": body.attack, "params": dict(body.params)}

    def reset(self, step: Step) -> dict[str, Any]:
        for party in sorted(self.control_urls):
            if party < self.num_parties:
                self._set_policy(step, party, NO_ATTACK, {})
        self.state.policies.clear()
        return {}

    def _proc(self, party: int) -> str:
        return service_name("party", party)

    def _signal(self, party: int, sig: int) -> None:
        assert self.cluster is not None
        popen = self.cluster.procs[self._proc(party)].popen
        if popen is not None and popen.poll() is None:
            os.kill(popen.pid, sig)

    def _resume(self, party: int) -> bool:
        with self.state.lock:
            timer = self.state.slowed.pop(party, None)
        if timer is None:
            return False
        timer.cancel()
        self._signal(party, signal.SIGCONT)
        return True

    def stop_party(self, body: PartyStep) -> dict[str, Any]:
        assert self.cluster is not None
        self._resume(body.party)
        self.cluster.kill(self._proc(body.party))
        return {"party": body.party}

    def start_party(self, body: PartyStep) -> dict[str, Any]:
        assert self.cluster is not None
        resumed = self._resume(body.party)
        started = time.perf_counter()
        self.cluster.restart(self._proc(body.party))
        ready = time.perf_counter() - started
        rejoined = self._wait_rejoined(body.party)
        return {
            "party": body.party,
            "resumed": resumed,
            "ready_s": round(ready, 3),
            "rejoined_s": None if rejoined is None else round(rejoined - started, 3),
        }

    def _wait_rejoined(self, party: int, timeout: float = REJOIN_TIMEOUT_S) -> float | None:
        """Wait until the fusion center receives ``party``'s block again (its channels reconnect with a
        backoff after a restart): the time it did, or None after ``timeout`` seconds."""
        deadline = time.perf_counter() + timeout
        with FusionClient(self.url, timeout=10.0, retries=0, api_key=self.api_key) as client:
            while time.perf_counter() < deadline:
                try:
                    (answer,) = client.predict(self.ids[:1], defense="none")
                    if party not in answer.missing_parties:
                        return time.perf_counter()
                except CopurClientError:
                    pass
                time.sleep(0.2)
        return None

    def slow_party(self, body: SlowPartyStep) -> dict[str, Any]:
        self._resume(body.party)
        timer = threading.Timer(body.seconds, self._resume, args=(body.party,))
        timer.daemon = True
        self._signal(body.party, signal.SIGSTOP)
        with self.state.lock:
            self.state.slowed[body.party] = timer
        timer.start()
        return {"party": body.party, "seconds": body.seconds}

    def resume_party(self, body: PartyStep) -> dict[str, Any]:
        return {"party": body.party, "resumed": self._resume(body.party)}

    def resume_all(self) -> None:
        for party in list(self.state.slowed):
            self._resume(party)

    def predict(self, body: PredictStep) -> dict[str, Any]:
        active = {p: pol for p, pol in self.state.policies.items() if pol.attack != NO_ATTACK}
        attackers = {p for p, pol in active.items() if pol.active}
        targets = [pol.target for pol in active.values() if pol.target is not None]
        target = targets[0] if targets else None
        per_defense: dict[str, dict[str, Any]] = {}
        with FusionClient(self.url, timeout=REQUEST_TIMEOUT_S, retries=0, api_key=self.api_key) as client:
            for defense in self.scenario.defenses_of(body):
                answers: dict[int, Any] = {}
                latencies: list[float] = []
                errors: list[str] = []
                error_samples = 0
                for start in range(0, len(self.ids), body.batch):
                    chunk = self.ids[start : start + body.batch]
                    began = time.perf_counter()
                    try:
                        preds = client.predict(chunk, defense=defense, certify=body.certify)
                    except CopurClientError as exc:
                        errors.append(str(exc))
                        error_samples += len(chunk)
                        continue
                    latencies.append(time.perf_counter() - began)
                    answers.update({p.sample_id: p for p in preds})
                per_defense[defense] = predict_metrics(
                    answers,
                    self.labels,
                    attackers=attackers,
                    target=target,
                    num_parties=self.num_parties,
                    latencies_s=latencies,
                    errors=errors,
                    error_samples=error_samples,
                )
        self.results[body.name] = per_defense
        return {
            "name": body.name,
            "attackers": sorted(attackers),
            "target": target,
            "policies": {
                str(p): {"attack": pol.attack, "params": dict(pol.params)} for p, pol in sorted(active.items())
            },
            "defenses": per_defense,
        }

    def expect(self, body: ExpectStep) -> dict[str, Any]:
        actual = self.results.get(body.step, {}).get(body.defense, {}).get(body.metric)
        return {
            "step": body.step,
            "defense": body.defense,
            "metric": body.metric,
            "op": body.op,
            "value": body.value,
            "actual": actual,
            "passed": body.holds(actual),
            "description": body.describe(),
        }

    def run_step(self, step: Step) -> dict[str, Any]:
        body = step.body
        if isinstance(body, PolicyStep):
            return self.policy(step, body)
        if isinstance(body, PredictStep):
            return self.predict(body)
        if isinstance(body, ExpectStep):
            return self.expect(body)
        if isinstance(body, SlowPartyStep):
            return self.slow_party(body)
        if step.kind == "reset":
            return self.reset(step)
        assert isinstance(body, PartyStep)
        actions = {"stop_party": self.stop_party, "start_party": self.start_party, "resume_party": self.resume_party}
        return actions[step.kind](body)


def run_scenario(
    scenario: Scenario,
    *,
    url: str,
    control_urls: dict[int, str],
    bundle: str,
    cluster: Cluster | None,
    out: Path,
    progress: bool,
    api_key: str | None = None,
    admin_key: str | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` against the fusion center at ``url`` and the adversaries at ``control_urls`` (party
    index -> control URL); ``cluster`` (the local one) is needed for stop/start/slow steps. Writes
    ``out``/report.json, report.md and index.html and returns the report; ``report["passed"]`` is False when
    an expectation failed. Invalid steps for this bundle/cluster raise :class:`ScenarioError` before any
    step runs; a paused party is always resumed. Predictions carry ``api_key``, policy changes
    ``admin_key``; when None: the development keys of ``cluster`` (``copur keys init``), else
    ``$COPUR_API_KEY`` / ``$COPUR_ADMIN_KEY``."""
    if cluster is not None:
        api_key = api_key or cluster.dev_key("predict")
        admin_key = admin_key or cluster.dev_key("admin")
    runner = _Runner(
        scenario,
        url=url,
        control_urls=control_urls,
        bundle=bundle,
        cluster=cluster,
        api_key=api_key,
        admin_key=admin_key,
    )
    started = time.time()
    records: list[dict[str, Any]] = []
    try:
        for step in tqdm(scenario.steps, desc=scenario.name, unit="step", disable=not progress, file=sys.stderr):
            began = time.perf_counter()
            result = runner.run_step(step)
            records.append(
                {"index": step.index, "kind": step.kind, "seconds": round(time.perf_counter() - began, 3), **result}
            )
    finally:
        runner.resume_all()
    expectations = [r for r in records if r["kind"] == "expect"]
    report: dict[str, Any] = {
        "scenario": {
            "name": scenario.name,
            "description": scenario.description,
            "samples": scenario.samples,
            "seed": scenario.seed,
            "defenses": scenario.defenses,
            "requires_dataset": scenario.requires_dataset,
        },
        "bundle": {
            "path": runner.bundle_path,
            "dataset": runner.manifest.dataset_spec.name,
            "num_parties": runner.num_parties,
            "party_names": list(runner.manifest.party_names),
        },
        "url": url,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 3),
        "ids": runner.ids,
        "steps": records,
        "expectations": expectations,
        "passed": all(e["passed"] for e in expectations),
    }
    write_report(report, out)
    return report


def scenario_command(
    file: Path,
    *,
    url: str | None,
    up: bool,
    config: Path,
    bundle: str | None,
    out: Path,
    progress: bool,
    api_key: str | None = None,
    admin_key: str | None = None,
) -> int:
    """``copur scenario FILE``: 0 when every expectation holds, 1 when one failed, 2 (one line on stderr) for
    invalid input. With ``up`` the local cluster of ``config`` is started here and always stopped; without
    it the fusion center at ``url`` (default: the topology's, on 127.0.0.1) and the adversaries of the
    topology ``config`` on 127.0.0.1 are used. ``bundle`` defaults to the topology's. Keys: see
    :func:`run_scenario` (with ``up``, the started cluster's development keys when none is given)."""
    cluster: Cluster | None = None
    try:
        scenario = load_scenario(file)
        env = {"COPUR_BUNDLE": bundle} if bundle else {}
        topology = load_topology(config, env={**os.environ, **env})
        bundle_path = topology.bundle
        if not Path(bundle_path).is_dir():
            raise ScenarioError(f"bundle {bundle_path} does not exist (train it, or pass --bundle)")
        control_urls = {a.party: f"http://127.0.0.1:{a.control_port}" for a in topology.adversaries}
        if up:
            cluster = Cluster(topology, config_path=config, log_dir=Path(out) / "logs", env=env)
            if progress:
                print(f"starting the cluster of {config} (logs in {Path(out) / 'logs'})", file=sys.stderr)
            cluster.start()
            fusion = cluster.fusion_url
        else:
            if scenario.needs_cluster:
                bad = next(s for s in scenario.steps if s.kind in CLUSTER_KINDS)
                raise ScenarioError(f"{file.name}: step {bad.index} ({bad.kind}): needs the local cluster (--up)")
            fusion = url or f"http://127.0.0.1:{topology.fusion.http_port}"
        report = run_scenario(
            scenario,
            url=fusion,
            control_urls=control_urls,
            bundle=bundle_path,
            cluster=cluster,
            out=Path(out),
            progress=progress,
            api_key=api_key,
            admin_key=admin_key,
        )
    except ScenarioError as exc:
        msg = str(exc)
        prefix = f"{file.name}: "
        print(f"error: {msg if msg.startswith(prefix) else prefix + msg}", file=sys.stderr)
        return 2
    except CopurError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if cluster is not None:
            cluster.stop()
    failed = [e for e in report["expectations"] if not e["passed"]]
    for e in failed:
        print(f"FAILED {e['description']} (actual: {e['actual']})", file=sys.stderr)
    print(f"report: {Path(out) / 'index.html'}", file=sys.stderr)
    return 1 if failed else 0
