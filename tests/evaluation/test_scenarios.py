"""Scenario files and the scenario runner: every shipped file loads, bad files are one-line
errors naming the step, and `clean` / `flip-one-party` run against a local cluster (an
adversary in front of every party) give the offline engine's numbers, flag the liar, and write
a self-contained report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from clusterkit import alive, free_ports
from copur.evaluation.scenarios.runner import execute_scenario, sample_ids, scenario_command
from copur.evaluation.scenarios.schema import ScenarioError, load_scenario, parse_scenario
from copur.operations.launcher import Cluster
from copur.science.attacks import AttackContext, make_attack
from copur.science.bundle import load_bundle
from copur.science.data import load_dataset
from copur.science.defenses import Engine
from copur.transport.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "clients" / "scenarios"
SHIPPED = sorted(SCENARIOS.glob("*.yaml"))
SAMPLES = 60


def test_the_expected_scenarios_are_shipped() -> None:
    names = {p.stem for p in SHIPPED}
    assert {
        "clean",
        "flip-one-party",
        "flip-two-parties",
        "noise",
        "replace",
        "pgd-targeted",
        "adaptive",
        "collude-two-parties",
        "party-down",
        "slow-party",
        "paper-nus-wide",
        "paper-extrasensory",
    } <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.predict_steps


def test_flip_one_party_flips_every_position_and_expects_copur_accuracy() -> None:
    scenario = load_scenario(SCENARIOS / "flip-one-party.yaml")
    flips = [s.body for s in scenario.steps if s.kind == "policy"]
    assert [(p.party, p.attack, p.params) for p in flips] == [
        (i, "flip", {"amp": 10}) for i in range(6)
    ]
    expects = [s.body for s in scenario.steps if s.kind == "expect"]
    assert {(e.step, e.defense, e.metric, e.op, e.value) for e in expects} == {
        (f"flip-p{i}", "copur", "accuracy", ">=", 0.9) for i in range(6)
    }


def test_paper_scenarios_require_their_data_set() -> None:
    assert load_scenario(SCENARIOS / "paper-nus-wide.yaml").requires_dataset == "nus-wide"
    assert load_scenario(SCENARIOS / "paper-extrasensory.yaml").requires_dataset == "extrasensory"
    pgd = load_scenario(SCENARIOS / "pgd-targeted.yaml").steps[0].body
    assert (
        pgd.params == {"targeted": True, "target": 0, "steps": 50, "step_size": 0.5}
        and pgd.target == 0
    )


def test_collude_two_parties_has_two_adversaries_mimic_one_donor_per_step() -> None:
    # Prepare
    scenario = load_scenario(SCENARIOS / "collude-two-parties.yaml")

    # Execute: the policies in force at each predict step
    in_force: dict[str, list] = {}
    current: list = []
    for step in scenario.steps:
        if step.kind == "policy":
            current.append(step.body)
        elif step.kind == "reset":
            current = []
        elif step.kind == "predict":
            in_force[step.body.name] = list(current)

    # Assert: at least two pairs; in each, two different parties mimic the same donor class, which
    # is the
    # class the attack success rate counts; every step runs none, copur-l21 and copur, with
    # expectations
    assert len(in_force) >= 2
    pairs = set()
    for policies in in_force.values():
        assert len(policies) == 2 and all(p.attack == "mimic" for p in policies)
        assert (
            policies[0].params == policies[1].params
            and policies[0].params.get("donor_class") is not None
        )
        assert policies[0].target == policies[0].params["donor_class"]
        pairs.add(frozenset(p.party for p in policies))
    assert len(pairs) == len(in_force) and all(len(pair) == 2 for pair in pairs)
    assert scenario.defenses == ["none", "copur-l21", "copur"]
    expected = {(e.body.step, e.body.defense) for e in scenario.steps if e.kind == "expect"}
    assert {(name, "copur") for name in in_force} <= expected


def test_the_target_of_a_policy_step_is_its_target_or_mimics_donor_class() -> None:
    steps = parse_scenario(
        {
            "name": "t",
            "steps": [
                {"policy": {"party": 0, "attack": "mimic", "params": {"donor_class": 4}}},
                {"policy": {"party": 1, "attack": "mimic", "params": {"donor": 17}}},
                {"policy": {"party": 2, "attack": "pgd", "params": {"target": 3}}},
                {"policy": {"party": 3, "attack": "flip"}},
            ],
        }
    ).steps

    assert [s.body.target for s in steps] == [4, None, 3, None]


def _steps(*steps: str) -> str:
    return "name: bad\nsteps:\n" + "".join(f"  - {s}\n" for s in steps)


BAD = [
    (
        _steps("reset: {}", "predict: {name: a}", "reset: {}", "policy: {party: 0, attack: melt}"),
        "bad.yaml: step 3 (policy): unknown attack 'melt'",
    ),
    (
        _steps("policy: {party: 0, attack: flip, params: {power: 2}}"),
        "step 0 (policy.params): attack 'flip'",
    ),
    (
        _steps("predict: {name: a, batches: 3}"),
        "step 0 (predict.batches): Extra inputs are not permitted",
    ),
    (_steps("reset: {}", "predict: {}"), "step 1 (predict.name): Field required"),
    (_steps("policy: {attack: flip}"), "step 0 (policy.party): Field required"),
    (
        _steps(
            "predict: {name: a}",
            "expect: {step: a, defense: copur, metric: accuracy, op: '=>', value: 1}",
        ),
        "step 1 (expect.op): unknown op '=>'",
    ),
    (
        _steps(
            "predict: {name: a}",
            "expect: {step: a, defense: copur, metric: speed, op: '>=', value: 1}",
        ),
        "step 1 (expect.metric): unknown metric 'speed'",
    ),
    (
        _steps(
            "expect: {step: a, defense: copur, metric: accuracy, op: '>=', value: 1}",
            "predict: {name: a}",
        ),
        "step 0 (expect.step): no predict step named 'a'",
    ),
    (
        _steps("predict: {name: a}", "predict: {name: a}"),
        "step 1 (predict.name): predict step name 'a' is used twice",
    ),
    (_steps("reset: {}", "explode: {}"), "step 1: unknown step kind 'explode'"),
    (_steps("{reset: {}, predict: {name: a}}"), "step 0: a step is a mapping with exactly one of"),
    (_steps("slow_party: {party: 1}"), "step 0 (slow_party.seconds): Field required"),
    (
        _steps("predict: {name: a, defenses: [magic]}"),
        "step 0 (predict.defenses): unknown defense 'magic'",
    ),
    (
        _steps("policy: {party: 0, attack: mimic, params: {donor: 3, search: 4}}"),
        "step 0 (policy.params): parameter 'search' of attack 'mimic' needs the fusion center's "
        "answers",
    ),
    (
        _steps("policy: {party: 0, attack: mimic, params: {factor: 0.5}}"),
        "step 0 (policy.params): attack 'mimic' needs exactly one of parameters 'donor' (a sample "
        "id) and",
    ),
    (
        "name: bad\nsamples: 0\nsteps: [{reset: {}}]\n",
        "bad.yaml: samples: Input should be greater than or equal to 1",
    ),
    (
        "name: bad\ncolour: red\nsteps: [{reset: {}}]\n",
        "bad.yaml: colour: Extra inputs are not permitted",
    ),
    ("name: bad\n", "bad.yaml: steps: a non-empty list of steps is required"),
    ("name: [unclosed\n", "bad.yaml: not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m.split(": ", 1)[-1][:40] for _, m in BAD])
def test_bad_scenario_files_are_one_line_errors_naming_the_step(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert message in str(info.value)
    assert str(info.value).startswith("bad.yaml: ") and "\n" not in str(info.value)


def test_scenario_command_is_2_with_one_line_for_invalid_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(_steps("policy: {party: 0, attack: melt}"))
    config = ROOT / "deploy" / "cluster-scenarios.yaml"
    code = scenario_command(
        bad, url=None, up=False, config=config, bundle=None, out=tmp_path / "o", progress=False
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: bad.yaml: step 0 (policy): unknown attack 'melt'")
    assert "\n" not in err


def test_runtime_checks_name_the_step(tmp_path: Path, mfeat_bundle_dir: Path) -> None:
    controls = {
        i: f"http://127.0.0.1:9/{i}" for i in range(6)
    }  # never contacted: checks come first

    def run(raw: dict) -> None:
        execute_scenario(
            parse_scenario(raw, source="x.yaml"),
            url="http://127.0.0.1:9",
            control_urls=controls,
            bundle=str(mfeat_bundle_dir),
            cluster=None,
            out=tmp_path,
            progress=False,
        )

    with pytest.raises(
        ScenarioError, match=r"step 1 \(policy.party\): party 7 is not a party of the bundle"
    ):
        run({"name": "x", "steps": [{"reset": {}}, {"policy": {"party": 7, "attack": "flip"}}]})
    with pytest.raises(
        ScenarioError, match="requires data set 'nus-wide', but bundle .* holds 'mfeat'"
    ):
        run({"name": "x", "requires_dataset": "nus-wide", "steps": [{"reset": {}}]})
    with pytest.raises(ScenarioError, match=r"step 0 \(stop_party\): needs the local cluster"):
        run({"name": "x", "steps": [{"stop_party": {"party": 1}}]})


# -- against a local cluster
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(
    mfeat_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory, cluster_tls: Path
) -> Iterator[Cluster]:
    """deploy/cluster-scenarios.yaml on free ports: 6 parties, an adversary in front of each, the
    fusion center; its mTLS key pairs from ``cluster_tls`` (COPUR_TLS_DIR overrides the
    template's tls.dir)."""
    template = yaml.safe_load((ROOT / "deploy" / "cluster-scenarios.yaml").read_text())
    ports = free_ports(20)
    topology = {
        **template,
        "bundle": str(mfeat_bundle_dir),
        "parties": [{"index": i, "port": ports[i]} for i in range(6)],
        "adversaries": [
            {"party": i, "port": ports[6 + i], "control_port": ports[12 + i], "policy": "none"}
            for i in range(6)
        ],
        "fusion": {
            **template["fusion"],
            "http_port": ports[18],
            "grpc_port": ports[19],
            "max_delay_ms": 2,
        },
    }
    folder = tmp_path_factory.mktemp("scenario-cluster")
    config = folder / "cluster.yaml"
    config.write_text(yaml.safe_dump(topology))
    running = Cluster(load_topology(config), config_path=config, log_dir=folder / "logs").start()
    pids = list(running.pids().values())
    try:
        yield running
    finally:
        running.stop()
    assert [p for p in pids if alive(p)] == []


def _run(name: str, cluster: Cluster, bundle: Path, out: Path) -> dict:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml").model_copy(update={"samples": SAMPLES})
    return execute_scenario(
        scenario,
        url=cluster.fusion_url,
        control_urls={i: cluster.control_url(i) for i in range(6)},
        bundle=str(bundle),
        cluster=cluster,
        out=out,
        progress=False,
        ca_file=cluster.http_ca,
    ).to_json()


@pytest.fixture(scope="module")
def offline(mfeat_bundle_dir: Path) -> tuple[Engine, list[int], torch.Tensor, np.ndarray]:
    bundle = load_bundle(mfeat_bundle_dir)
    ids = sample_ids(bundle.test_ids, SAMPLES, 0)
    data = load_dataset(bundle.manifest.dataset_spec)
    with torch.no_grad():
        h = bundle.models.embed([torch.as_tensor(x) for x in data.party_rows(np.array(ids))])
    return Engine(bundle), ids, h, data.labels[ids]


def _offline_accuracy(offline: tuple, defense: str, flipped: int | None) -> float:
    engine, _, h, y = offline
    observed = torch.ones(len(h), 6, dtype=torch.bool)
    if flipped is not None:
        ctx = AttackContext(num_parties=6, generator=torch.Generator().manual_seed(0))
        h, observed = make_attack("flip", amp=10)(h, observed, (flipped,), ctx)
    labels = engine.defense(defense).predict(h, observed).labels.numpy()
    return float((labels == y).mean())


def _check_report_files(out: Path, report: dict) -> None:
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    page = (out / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert "<table>" in page and (out / "report.md").read_text().startswith(
        f"# Scenario `{report['scenario']['name']}`"
    )


def test_clean_matches_the_offline_engine(
    cluster: Cluster, mfeat_bundle_dir: Path, offline, tmp_path: Path
) -> None:
    report = _run("clean", cluster, mfeat_bundle_dir, tmp_path)

    assert report["ids"] == offline[1] and report["passed"]
    (step,) = [s for s in report["steps"] if s["kind"] == "predict"]
    for defense in ("none", "copur"):
        m = step["defenses"][defense]
        assert m["answered"] == SAMPLES and m["errors"] == 0 and m["requests"] == 3
        assert abs(m["accuracy"] - _offline_accuracy(offline, defense, None)) <= 0.05
        assert m["flag_recall"] is None and m["attack_success_rate"] is None
        assert m["latency_p50_ms"] > 0 and m["latency_p99_ms"] >= m["latency_p50_ms"]
        assert set(m["missing"].values()) == {0}
    assert [e["passed"] for e in report["expectations"]] == [True, True, True]
    _check_report_files(tmp_path, report)


def test_flip_one_party_matches_the_offline_engine_and_flags_the_liar(
    cluster: Cluster, mfeat_bundle_dir: Path, offline, tmp_path: Path
) -> None:
    report = _run("flip-one-party", cluster, mfeat_bundle_dir, tmp_path)

    predicts = [s for s in report["steps"] if s["kind"] == "predict"]
    assert [s["name"] for s in predicts] == [f"flip-p{i}" for i in range(6)]
    for i, step in enumerate(predicts):
        assert step["attackers"] == [i]
        for defense in ("none", "copur"):
            m = step["defenses"][defense]
            assert m["answered"] == SAMPLES and m["errors"] == 0, m["error_messages"]
            expected = _offline_accuracy(offline, defense, i)
            assert abs(m["accuracy"] - expected) <= 0.05, (i, defense, m["accuracy"], expected)
        copur = step["defenses"]["copur"]
        assert copur["flag_precision"] >= 0.9 and copur["flag_recall"] >= 0.9, (i, copur)
    assert len(report["expectations"]) == 6
    assert report["passed"] == all(e["passed"] for e in report["expectations"])
    assert all(
        e["actual"] == predicts[k]["defenses"]["copur"]["accuracy"]
        for k, e in enumerate(report["expectations"])
    )
    _check_report_files(tmp_path, report)
    # The adversaries are back to none at the end (the scenario resets after each position).
    after = _run("clean", cluster, mfeat_bundle_dir, tmp_path / "after")
    assert after["steps"][1]["defenses"]["copur"]["flag_recall"] is None
