"""The scenario report as typed data: what the runner produces and the report writers consume.

:meth:`ScenarioReport.to_json` is the content of ``report.json``: the fields in declaration order,
so the keys of every object come out in the order the runner has always written them.
:meth:`ScenarioReport.from_json` reads such a file back (a step is told apart by its ``kind``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from copur_client.wire import ParamValue

__all__ = [
    "BundleInfo",
    "DefenseMetrics",
    "ExpectRecord",
    "PolicyInForce",
    "PolicyRecord",
    "PredictRecord",
    "ResetRecord",
    "ResumePartyRecord",
    "ScenarioInfo",
    "ScenarioReport",
    "SlowPartyRecord",
    "StartPartyRecord",
    "StepRecord",
    "StepResult",
    "StopPartyRecord",
]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DefenseMetrics(_Record):
    """The metrics of one defense at one predict step (see :func:`.metrics.predict_metrics`)."""

    answered: int
    accuracy: float | None
    attack_success_rate: float | None
    flag_precision: float | None
    flag_recall: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    requests: int
    missing: dict[str, int]
    """party index -> answered samples that arrived without that party's block"""
    errors: int
    error_samples: int
    error_messages: list[str]

    def metric(self, name: str) -> float | int | None:
        """The scalar metric ``name`` (one of :data:`.schema.METRICS`)."""
        value = getattr(self, name)
        assert value is None or isinstance(value, int | float), name
        return value


class PolicyInForce(_Record):
    """An attack in force at a party's adversary during a predict step."""

    attack: str
    params: dict[str, ParamValue]


class StepRecord(_Record):
    """What every step records: its position, its kind and how long it took."""

    index: int
    kind: str
    seconds: float


class PolicyRecord(StepRecord):
    """``policy``: the attack put in force at party ``party``'s adversary."""

    kind: Literal["policy"] = "policy"
    party: int
    attack: str
    params: dict[str, ParamValue]


class ResetRecord(StepRecord):
    """``reset``: every adversary back to ``none``."""

    kind: Literal["reset"] = "reset"


class StopPartyRecord(StepRecord):
    """``stop_party``: party ``party``'s process killed."""

    kind: Literal["stop_party"] = "stop_party"
    party: int


class StartPartyRecord(StepRecord):
    """``start_party``: party ``party``'s process (re)started; ``rejoined_s`` is None when the
    fusion center did not receive its block again in time."""

    kind: Literal["start_party"] = "start_party"
    party: int
    resumed: bool
    ready_s: float
    rejoined_s: float | None


class SlowPartyRecord(StepRecord):
    """``slow_party``: party ``party``'s process paused. Its ``seconds`` is the pause asked for, not
    the time the step took (the runner has always written it that way)."""

    kind: Literal["slow_party"] = "slow_party"
    party: int


class ResumePartyRecord(StepRecord):
    """``resume_party``: whether party ``party``'s process was paused and is running again."""

    kind: Literal["resume_party"] = "resume_party"
    party: int
    resumed: bool


class PredictRecord(StepRecord):
    """``predict``: the parties lying, the target class of a targeted attack, the attacks in force
    (party index -> policy) and the metrics per defense."""

    kind: Literal["predict"] = "predict"
    name: str
    attackers: list[int]
    target: int | None
    policies: dict[str, PolicyInForce]
    defenses: dict[str, DefenseMetrics]


class ExpectRecord(StepRecord):
    """``expect``: the expectation, the value measured (None when undefined) and whether it held."""

    kind: Literal["expect"] = "expect"
    step: str
    defense: str
    metric: str
    op: str
    value: float
    actual: int | float | None
    passed: bool
    description: str


StepResult = Annotated[
    PolicyRecord
    | ResetRecord
    | StopPartyRecord
    | StartPartyRecord
    | SlowPartyRecord
    | ResumePartyRecord
    | PredictRecord
    | ExpectRecord,
    Field(discriminator="kind"),
]
"""The record of one step, by its kind."""


class ScenarioInfo(_Record):
    """The scenario as run."""

    name: str
    description: str
    samples: int
    seed: int
    defenses: list[str]
    requires_dataset: str | None


class BundleInfo(_Record):
    """The bundle the fusion center serves."""

    path: str
    dataset: str
    num_parties: int
    party_names: list[str]


class ScenarioReport(_Record):
    """A scenario run: what ran against what, every step's record, the expectations (the ``expect``
    steps' records again) and whether they all held."""

    scenario: ScenarioInfo
    bundle: BundleInfo
    url: str
    started: str
    """local start time, ``YYYY-MM-DDTHH:MM:SS``"""
    seconds: float
    ids: list[int]
    steps: list[StepResult]
    expectations: list[ExpectRecord]
    passed: bool

    @property
    def predicts(self) -> list[PredictRecord]:
        """The predict steps' records, in order."""
        return [s for s in self.steps if isinstance(s, PredictRecord)]

    @property
    def failed(self) -> list[ExpectRecord]:
        """The expectations that did not hold."""
        return [e for e in self.expectations if not e.passed]

    def to_json(self) -> dict[str, Any]:
        """The content of ``report.json``."""
        return self.model_dump()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScenarioReport:
        """A report read back from the content of ``report.json``."""
        return cls.model_validate(data)
