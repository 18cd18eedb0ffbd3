"""Scenario files: a scripted sequence of adversary policies, faults and predictions, with
expectations.

A scenario is a YAML mapping::

    name: flip-one-party
    description: ...
    samples: 200            # how many test ids (a seeded sample of the bundle's test split)
    seed: 0
    defenses: [none, copur]
    requires_dataset: null  # e.g. nus-wide: refuse a bundle of another data set
    steps:
      - policy: {party: 0, attack: flip, params: {amp: 10}}
      - predict: {name: flip-p0}
      - expect: {step: flip-p0, defense: copur, metric: accuracy, op: ">=", value: 0.9}
      - reset: {}

Each step has exactly one kind: ``policy``, ``reset``, ``predict``, ``stop_party``,
``start_party``, ``slow_party``, ``resume_party`` or ``expect``. Steps are numbered from 0 in
error messages, which are one line: ``flip-one-party.yaml: step 3 (policy): unknown attack 'melt'
(known: ...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from copur.errors import ConfigError
from copur.roles.adversary.policy import DELAY, MIMIC, NO_ATTACK, ParamValue, Policy, policy_error
from copur.science.defenses import check_defense
from copur_client.wire import one_line

__all__ = [
    "METRICS",
    "OPS",
    "STEP_KINDS",
    "ExpectStep",
    "PartyStep",
    "PolicyStep",
    "PredictStep",
    "ResetStep",
    "Scenario",
    "ScenarioError",
    "SlowPartyStep",
    "Step",
    "load_scenario",
    "parse_scenario",
]

METRICS = (
    "accuracy",
    "attack_success_rate",
    "flag_precision",
    "flag_recall",
    "latency_p50_ms",
    "latency_p99_ms",
    "errors",
    "answered",
)
"""The scalar metrics a predict step records per defense (what ``expect`` may test)."""

OPS = (">=", "<=", ">", "<", "==")


class ScenarioError(ConfigError):
    """A scenario file that does not validate, or a step that cannot run against this
    cluster/bundle."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyStep(_Strict):
    """Put ``attack`` (with ``params``) in force at the adversary in front of party ``party``."""

    party: int = Field(ge=0)
    attack: str
    params: dict[str, ParamValue] = {}

    @model_validator(mode="after")
    def _valid_attack(self) -> PolicyStep:
        # The adversary's own policy model: known attack, known and well-typed parameters, then
        # copur.science.attacks.make_attack on them (``target`` is split off for gradient attacks).
        try:
            Policy(attack=self.attack, params=self.params)
        except ValidationError as exc:
            msg = policy_error(exc.errors())
            raise ValueError(msg.removeprefix("attack: ")) from None
        return self

    @property
    def active(self) -> bool:
        """Whether this policy corrupts answers (``none``, ``drop`` and ``delay`` do not count as
        lying)."""
        return self.attack not in (NO_ATTACK, DELAY, "drop")

    @property
    def target(self) -> int | None:
        """The class a targeted attack pushes to (``mimic`` by ``donor_class``: that class), else
        None."""
        if self.attack == NO_ATTACK:
            return None
        target = self.params.get("donor_class" if self.attack == MIMIC else "target")
        return int(target) if isinstance(target, int) and not isinstance(target, bool) else None


class ResetStep(_Strict):
    """Every adversary back to ``none``."""


class PredictStep(_Strict):
    """Send the scenario's ids in requests of ``batch`` ids, once per defense, and record the
    metrics."""

    name: str = Field(min_length=1)
    defenses: list[str] | None = None
    certify: bool = False
    batch: int = Field(default=20, ge=1)

    @field_validator("defenses")
    @classmethod
    def _known_defenses(cls, value: list[str] | None) -> list[str] | None:
        return _check_defenses(value)


class PartyStep(_Strict):
    """``stop_party`` / ``start_party`` / ``resume_party``: a party process of the local cluster."""

    party: int = Field(ge=0)


class SlowPartyStep(_Strict):
    """SIGSTOP party ``party`` for ``seconds`` (or until the next start/resume step, or the end)."""

    party: int = Field(ge=0)
    seconds: float = Field(gt=0, le=600)


class ExpectStep(_Strict):
    """``metric`` of ``defense`` at predict step ``step`` must satisfy ``op value``."""

    step: str
    defense: str
    metric: str
    op: str
    value: float

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric '{value}' (known: {', '.join(METRICS)})")
        return value

    @field_validator("op")
    @classmethod
    def _known_op(cls, value: str) -> str:
        if value not in OPS:
            raise ValueError(f"unknown op '{value}' (known: {', '.join(OPS)})")
        return value

    def holds(self, actual: float | None) -> bool:
        """Whether ``actual op value``; never for an undefined (None) metric."""
        if actual is None:
            return False
        return {
            ">=": actual >= self.value,
            "<=": actual <= self.value,
            ">": actual > self.value,
            "<": actual < self.value,
            "==": actual == self.value,
        }[self.op]

    def describe(self) -> str:
        """One line for reports: ``step/defense: metric op value``."""
        return f"{self.step}/{self.defense}: {self.metric} {self.op} {self.value:g}"


STEP_MODELS: dict[str, type[_Strict]] = {
    "policy": PolicyStep,
    "reset": ResetStep,
    "predict": PredictStep,
    "stop_party": PartyStep,
    "start_party": PartyStep,
    "resume_party": PartyStep,
    "slow_party": SlowPartyStep,
    "expect": ExpectStep,
}
STEP_KINDS = tuple(STEP_MODELS)
CLUSTER_KINDS = ("stop_party", "start_party", "slow_party", "resume_party")
"""Steps that need the local cluster (``--up``)."""


class Step(BaseModel):
    """One step: its position, its kind and the validated body."""

    model_config = ConfigDict(frozen=True)

    index: int
    kind: Literal[
        "policy",
        "reset",
        "predict",
        "stop_party",
        "start_party",
        "resume_party",
        "slow_party",
        "expect",
    ]
    body: Any

    def label(self) -> str:
        """A short label: index, kind, and the predict step's name or the party."""
        name = f" {self.body.name}" if isinstance(self.body, PredictStep) else ""
        party = f" party {self.body.party}" if hasattr(self.body, "party") else ""
        return f"{self.index} {self.kind}{name}{party}"


def _check_defenses(value: list[str] | None) -> list[str] | None:
    if value is None:
        return value
    if not value:
        raise ValueError("defenses must not be empty")
    for name in value:
        try:
            check_defense(name)
        except (
            ConfigError
        ) as exc:  # pydantic reports a validator's ValueError with the step's place
            raise ValueError(str(exc)) from None
    if len(set(value)) != len(value):
        raise ValueError("a defense is listed twice")
    return value


class Scenario(_Strict):
    """A validated scenario file: its steps and the defaults its predict steps use."""

    name: str = Field(min_length=1)
    description: str = ""
    samples: int = Field(default=200, ge=1)
    seed: int = 0
    defenses: list[str] = ["none", "copur"]
    requires_dataset: str | None = None
    steps: list[Step]

    @field_validator("defenses")
    @classmethod
    def _known_defenses(cls, value: list[str]) -> list[str]:
        checked = _check_defenses(value)
        assert checked is not None
        return checked

    def defenses_of(self, step: PredictStep) -> list[str]:
        """The defenses predict step ``step`` runs (its own list, else the scenario's)."""
        return step.defenses if step.defenses is not None else self.defenses

    @property
    def predict_steps(self) -> list[PredictStep]:
        """The bodies of the predict steps, in order."""
        return [s.body for s in self.steps if isinstance(s.body, PredictStep)]

    @property
    def needs_cluster(self) -> bool:
        """Whether a step needs the local cluster (see :data:`CLUSTER_KINDS`)."""
        return any(s.kind in CLUSTER_KINDS for s in self.steps)


def _one_line(msg: str) -> str:
    return one_line(str(msg).removeprefix("Value error, "), limit=10_000)


def _pydantic_error(exc: ValidationError) -> tuple[str, str]:
    """(where, message) of the first error of ``exc``."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return where, _one_line(err["msg"])


def _parse_step(index: int, raw: Any) -> Step:
    prefix = f"step {index}"
    if not isinstance(raw, dict) or len(raw) != 1:
        got = f"keys {sorted(map(str, raw))}" if isinstance(raw, dict) else type(raw).__name__
        raise ScenarioError(
            f"{prefix}: a step is a mapping with exactly one of {', '.join(STEP_KINDS)}; got {got}"
        )
    ((kind, body),) = raw.items()
    if kind not in STEP_MODELS:
        raise ScenarioError(
            f"{prefix}: unknown step kind '{kind}' (known: {', '.join(STEP_KINDS)})"
        )
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ScenarioError(f"{prefix} ({kind}): expected a mapping, got {type(body).__name__}")
    try:
        model = STEP_MODELS[kind].model_validate(body)
    except ValidationError as exc:
        where, msg = _pydantic_error(exc)
        head, _, rest = msg.partition(": ")
        if (
            not where and rest and head in ("params",)
        ):  # the policy check names the field in its message
            where, msg = head, rest
        raise ScenarioError(f"{prefix} ({kind}{'.' + where if where else ''}): {msg}") from None
    return Step(index=index, kind=kind, body=model)


def parse_scenario(raw: Any, *, source: str = "scenario") -> Scenario:
    """Validate a scenario mapping (as read from YAML); every error is one line prefixed by
    ``source``."""
    try:
        return _parse(raw)
    except ScenarioError as exc:
        raise ScenarioError(f"{source}: {exc}") from None


def _parse(raw: Any) -> Scenario:
    if not isinstance(raw, dict):
        raise ScenarioError("a scenario is a mapping at the top level")
    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError("steps: a non-empty list of steps is required")
    steps = [_parse_step(i, s) for i, s in enumerate(raw_steps)]
    try:
        scenario = Scenario.model_validate({**raw, "steps": steps})
    except ValidationError as exc:
        where, msg = _pydantic_error(exc)
        raise ScenarioError(f"{where or 'scenario'}: {msg}") from None
    # Cross-step checks: predict names unique; an expectation refers to an earlier predict step and
    # one
    # of its defenses.
    seen: dict[str, PredictStep] = {}
    for step in scenario.steps:
        body = step.body
        if isinstance(body, PredictStep):
            if body.name in seen:
                raise ScenarioError(
                    f"step {step.index} (predict.name): predict step name '{body.name}' is used "
                    "twice"
                )
            seen[body.name] = body
        elif isinstance(body, ExpectStep):
            target = seen.get(body.step)
            if target is None:
                raise ScenarioError(
                    f"step {step.index} (expect.step): no predict step named '{body.step}' before "
                    "this step"
                )
            if body.defense not in scenario.defenses_of(target):
                raise ScenarioError(
                    f"step {step.index} (expect.defense): predict step '{body.step}' does not run "
                    "defense "
                    f"'{body.defense}' (it runs: {', '.join(scenario.defenses_of(target))})"
                )
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; errors are one line starting with the file's name."""
    file = Path(path)
    if not file.is_file():
        raise ScenarioError(f"scenario file {file} does not exist")
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(
            f"{file.name}: not valid YAML: {_one_line(str(exc).splitlines()[0])}"
        ) from None
    return parse_scenario(raw, source=file.name)
