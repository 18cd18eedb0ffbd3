"""The ``delay`` policy: a slow party. Its one parameter ``ms`` is validated (policy, control
endpoint, scenario files); in force, the proxy holds each call ``ms`` before forwarding and
answers unchanged; a held call whose caller gave up ends early instead of being forwarded."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import httpx
import pytest
from pydantic import ValidationError

from adversary.support import Clean, embed
from copur.evaluation.scenarios.schema import PolicyStep, ScenarioError, load_scenario
from copur.roles.adversary import AdversaryApp, Policy
from copur.roles.adversary.policy import MAX_DELAY_MS, policy_error
from copur_client import serde
from copur_client.v1 import party_pb2_grpc

IDS = list(range(20))


def test_a_delay_policy_holds_for_ms_and_corrupts_nothing() -> None:
    # Prepare / Execute
    policy = Policy.model_validate({"attack": "delay", "params": {"ms": 250}})
    # Assert
    assert policy.delay_s == 0.25 and policy.build() is None and policy.target is None
    assert not policy.corrupts and Policy(attack="flip").corrupts and Policy().delay_s == 0.0


@pytest.mark.parametrize(
    ("params", "shown"),
    [
        ({}, "needs parameter 'ms'"),
        ({"ms": 0}, "'ms' must be in (0, 600000]"),
        ({"ms": -5}, "'ms' must be in (0, 600000]"),
        ({"ms": MAX_DELAY_MS + 1}, "'ms' must be in (0, 600000]"),
        ({"ms": float("inf")}, "'ms' must be in (0, 600000]"),
        ({"ms": True}, "'ms' of attack 'delay' must be a number"),
        ({"ms": None}, "'ms' of attack 'delay' must be a number"),
        ({"ms": 10, "amp": 2}, "attack 'delay' does not take parameter 'amp' (it takes: ms)"),
    ],
)
def test_a_bad_delay_is_refused_in_one_line(params: dict, shown: str) -> None:
    # Execute
    with pytest.raises(ValidationError) as caught:
        Policy.model_validate({"attack": "delay", "params": params})
    # Assert
    message = policy_error(caught.value.errors())
    assert shown in message and "\n" not in message


def test_delay_is_listed_among_the_known_policies() -> None:
    with pytest.raises(ValidationError) as caught:
        Policy(attack="sleep")

    assert "delay" in policy_error(caught.value.errors())


def test_delay_set_live_holds_calls_and_answers_unchanged(
    stub: party_pb2_grpc.PartyServiceStub, control: httpx.Client, clean: Clean
) -> None:
    # Prepare
    put = control.put("/v1/policy", json={"attack": "delay", "params": {"ms": 300}})
    # Execute
    started = time.monotonic()
    out = embed(stub, IDS)
    held = time.monotonic() - started
    status = control.get("/v1/policy").json()
    refused = control.put("/v1/policy", json={"attack": "delay", "params": {"ms": -1}})
    # Assert: held at least ms (a lower bound only), bit-exact, not counted as corrupted
    assert put.status_code == 200, put.text
    assert held >= 0.3
    assert out.tobytes() == clean.table[IDS].tobytes()
    assert (status["attack"], status["params"], status["corrupted"]) == ("delay", {"ms": 300}, 0)
    assert refused.status_code == 422 and "'ms' must be in" in refused.json()["detail"]


def test_a_held_call_whose_caller_gave_up_ends_early(
    adversary: AdversaryApp, stub: party_pb2_grpc.PartyServiceStub, control: httpx.Client
) -> None:
    # Prepare: a hold far longer than the caller waits
    control.put("/v1/policy", json={"attack": "delay", "params": {"ms": 60_000}})
    # Execute
    with pytest.raises(grpc.RpcError) as caught:
        stub.Embed(serde.embed_request(IDS), timeout=0.2)
    deadline = time.monotonic() + 20  # generous: the hold checks its caller every 50 ms
    while adversary.status()["calls"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    # Assert: the call was let go long before its 60 s, never forwarded
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert adversary.status()["calls"] == 1 and adversary.status()["corrupted"] == 0


def _scenario(tmp_path: Path, params: str) -> Path:
    path = tmp_path / "slow.yaml"
    path.write_text(
        "name: slow\nsteps:\n"
        f"  - policy: {{party: 1, attack: delay, params: {params}}}\n"
        "  - predict: {name: slow}\n"
        "  - reset: {}\n"
    )
    return path


def test_scenario_files_accept_a_delay_which_is_not_lying(tmp_path: Path) -> None:
    # Execute
    scenario = load_scenario(_scenario(tmp_path, "{ms: 3000}"))
    # Assert
    step = scenario.steps[0].body
    assert isinstance(step, PolicyStep) and step.attack == "delay" and step.params == {"ms": 3000}
    assert not step.active and step.target is None


def test_scenario_files_refuse_a_bad_delay_naming_the_step(tmp_path: Path) -> None:
    # Execute
    with pytest.raises(ScenarioError) as caught:
        load_scenario(_scenario(tmp_path, "{ms: -3}"))
    # Assert
    assert str(caught.value).startswith("slow.yaml: step 0 (policy")
    assert "'ms' must be in (0, 600000]" in str(caught.value) and "\n" not in str(caught.value)
