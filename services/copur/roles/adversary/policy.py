"""What the adversary does to the answers it forwards: a validated :class:`Policy` and its live
holder.

A policy names an attack of :mod:`copur.science.attacks` (or ``none``) and its parameters.
Gradient attacks (``pgd``, ``adaptive``) take one extra parameter handled here, ``target``: the
class index a targeted attack pushes every sample to (it implies ``targeted=true``).

The mimicry attacks take live meanings here. ``mimic``: ``donor`` is a SAMPLE ID of the data set
(not a row of an attack pool) and ``donor_class`` a class index, exactly one of them; the
adversary sends its own party's block of that donor (``factor`` of the way from the honest
block), so two adversaries given the same donor id or class collude without talking to each
other. ``search`` > 0 and ``nearest`` need the fusion center's answers or the other parties'
blocks, which the live adversary does not have: refused. ``sia`` (the runner-up attack) queries a
local simulation of the ``copur`` defense (see :mod:`copur.roles.adversary.corrupt`).

One policy is not an attack on the embeddings but on time: ``delay`` with parameter ``ms`` (a
number, 0 < ms <= :data:`MAX_DELAY_MS`) holds every call ``ms`` milliseconds before forwarding
it, then answers the party's embeddings unchanged: a slow party, to exercise the fusion center's
deadline."""

from __future__ import annotations

import dataclasses
import math
import threading
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from copur.errors import ConfigError
from copur.science.attacks import ATTACKS, PGD, Attack, make_attack
from copur_client.wire import NO_ATTACK, ParamValue

__all__ = [
    "DELAY",
    "GRADIENT_ATTACKS",
    "MAX_DELAY_MS",
    "MAX_SEARCH",
    "MAX_STEPS",
    "MIMIC",
    "NO_ATTACK",
    "SIA",
    "Policy",
    "PolicySnapshot",
    "PolicyState",
    "policy_error",
]

DELAY: Final = "delay"
MAX_DELAY_MS: Final = 600_000.0
"""Upper bound on ``delay``'s ``ms`` (10 minutes): longer is a dead party, which ``drop`` already
is."""
GRADIENT_ATTACKS: Final = tuple(
    sorted(name for name, cls in ATTACKS.items() if issubclass(cls, PGD))
)
MAX_STEPS: Final = 1000
"""Upper bound on gradient steps, so one policy cannot stall every forwarded call."""
MIMIC: Final = "mimic"
SIA: Final = "sia"
MAX_SEARCH: Final = 64
"""Upper bound on ``sia``'s candidates per sample (each one a query of the local simulation)."""
_LIVE_REFUSED: Final = {
    (
        MIMIC,
        "search",
    ): "needs the fusion center's answers, which the live adversary does not see (use 0)",
    (
        MIMIC,
        "nearest",
    ): "needs the other parties' blocks, which the live adversary does not see (use false)",
    (
        "lma",
        "from_donor",
    ): "needs donors of another class than the sample's, which the live adversary cannot tell "
    "(use false)",
}
"""Parameters of the library's attacks that only an offline attacker can use: (attack, parameter)
-> why."""


def _attack_fields(name: str) -> dict[str, Any]:
    """Parameter name -> type annotation of attack ``name`` (its dataclass fields)."""
    cls = ATTACKS[name]
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


def _check_range(attack: str, key: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"parameter '{key}' must be finite, got {value}")
    why = _LIVE_REFUSED.get((attack, key))
    if why is not None and value:
        raise ValueError(f"parameter '{key}' of attack '{attack}' {why}, got {value!r}")
    low = 0 if attack == SIA else 1  # sia's gradient steps are optional (0: the search alone)
    if key == "steps" and not low <= value <= MAX_STEPS:
        raise ValueError(f"parameter 'steps' must be in {low}..{MAX_STEPS}, got {value}")
    if key == "search" and not 0 <= value <= MAX_SEARCH:
        raise ValueError(f"parameter 'search' must be in 0..{MAX_SEARCH}, got {value}")
    if key == "factor" and value <= 0:
        raise ValueError(
            "parameter 'factor' must be > 0 (how far the block moves towards the donor's), got "
            f"{value}"
        )
    if key in ("donor", "donor_class") and value is not None and value < 0:
        what = "a sample id" if key == "donor" else "a class index"
        raise ValueError(f"parameter '{key}' must be {what} (an integer >= 0), got {value}")
    if key in ("step_size", "eps") and value is not None and value <= 0:
        raise ValueError(f"parameter '{key}' must be > 0, got {value}")
    if key == "norm" and value < 0:
        raise ValueError(f"parameter 'norm' must be >= 0, got {value}")


def _check_donor(attack: str, params: dict[str, ParamValue]) -> None:
    """``mimic`` needs exactly one of ``donor`` (a sample id) and ``donor_class`` (a class
    index)."""
    if attack != MIMIC:
        return
    given = [key for key in ("donor", "donor_class") if params.get(key) is not None]
    if len(given) != 1:
        got = "both" if given else "neither"
        raise ValueError(
            f"attack '{MIMIC}' needs exactly one of parameters 'donor' (a sample id) and "
            "'donor_class' "
            f"(a class index), got {got}"
        )


def _attack_kwargs(attack: str, params: dict[str, ParamValue]) -> dict[str, ParamValue]:
    """The parameters for ``make_attack``: without ``target`` (split off), and for ``mimic``
    without ``donor`` and ``donor_class``, which name a sample of the data set here, not a row
    of the attack's pool."""
    kwargs, _ = _split_target(attack, params)
    if attack == MIMIC:
        kwargs.pop("donor", None)
        kwargs.pop("donor_class", None)
    return kwargs


def _split_target(
    attack: str, params: dict[str, ParamValue]
) -> tuple[dict[str, ParamValue], int | None]:
    """The parameters for ``make_attack`` and the target class (``targeted`` inferred from
    ``target``)."""
    rest = dict(params)
    target = rest.pop("target", None)
    if target is None:
        if rest.get("targeted"):
            raise ValueError(
                f"attack '{attack}' with targeted=true needs parameter 'target' (a class index)"
            )
        return rest, None
    if attack not in GRADIENT_ATTACKS:
        raise ValueError(
            f"parameter 'target' applies to {' and '.join(GRADIENT_ATTACKS)} only, not '{attack}'"
        )
    if isinstance(target, bool) or not isinstance(target, int) or target < 0:
        raise ValueError(
            f"parameter 'target' must be a class index (an integer >= 0), got {target!r}"
        )
    if rest.get("targeted") is False:
        raise ValueError("parameter 'target' contradicts targeted=false")
    rest["targeted"] = True
    return rest, target


class Policy(BaseModel):
    """An attack name (``none`` or one of :data:`copur.science.attacks.ATTACKS`) and its
    parameters, checked on construction: unknown attacks, unknown parameters and values of the
    wrong type or range are refused."""

    # validate_default: the parameters are checked against the attack even when none are given
    # (``Policy(attack="mimic")`` lacks a donor; ``delay`` without ``ms`` holds nothing).
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    attack: str = NO_ATTACK
    params: dict[str, ParamValue] = {}

    @field_validator("attack")
    @classmethod
    def _known_attack(cls, value: str) -> str:
        if value not in (NO_ATTACK, DELAY) and value not in ATTACKS:
            known = ", ".join([NO_ATTACK, *sorted([*ATTACKS, DELAY])])
            raise ValueError(f"unknown attack '{value}' (known: {known})")
        return value

    @field_validator("params")
    @classmethod
    def _accepted_params(
        cls, value: dict[str, ParamValue], info: ValidationInfo
    ) -> dict[str, ParamValue]:
        attack = info.data.get("attack")
        if attack is None:  # the attack itself was refused: that is the error to report
            return value
        if attack == NO_ATTACK:
            if value:
                raise ValueError(
                    f"attack '{NO_ATTACK}' takes no parameters, got '{sorted(value)[0]}'"
                )
            return value
        if attack == DELAY:
            return _delay_params(value)
        fields = _attack_fields(attack)
        if attack in GRADIENT_ATTACKS:
            fields["target"] = int | None
        checked: dict[str, ParamValue] = {}
        for key, raw in value.items():
            if key not in fields:
                takes = ", ".join(sorted(fields)) or "nothing"
                raise ValueError(
                    f"attack '{attack}' does not take parameter '{key}' (it takes: {takes})"
                )
            try:
                checked[key] = TypeAdapter(fields[key]).validate_python(raw, strict=True)
            except ValidationError as exc:
                raise ValueError(
                    f"parameter '{key}' of attack '{attack}': {exc.errors()[0]['msg']}"
                ) from None
            _check_range(attack, key, checked[key])
        _check_donor(attack, checked)
        kwargs = _attack_kwargs(attack, checked)
        try:
            make_attack(attack, **kwargs)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return checked

    @property
    def target(self) -> int | None:
        """The class a targeted gradient attack pushes to (``params['target']``), else None."""
        return (
            _split_target(self.attack, self.params)[1]
            if self.attack not in (NO_ATTACK, DELAY)
            else None
        )

    @property
    def donor(self) -> int | None:
        """``mimic``'s donor sample id (``params['donor']``), else None."""
        donor = self.params.get("donor") if self.attack == MIMIC else None
        return donor if isinstance(donor, int) and not isinstance(donor, bool) else None

    @property
    def donor_class(self) -> int | None:
        """``mimic``'s donor class (``params['donor_class']``), else None."""
        cls = self.params.get("donor_class") if self.attack == MIMIC else None
        return cls if isinstance(cls, int) and not isinstance(cls, bool) else None

    @property
    def delay_s(self) -> float:
        """How long ``delay`` holds each call, in seconds (0 for every other policy)."""
        ms = self.params.get("ms") if self.attack == DELAY else None
        return float(ms) / 1000.0 if isinstance(ms, int | float) else 0.0

    @property
    def corrupts(self) -> bool:
        """Whether answers leave the adversary changed (or dropped): not for ``none`` and
        ``delay``."""
        return self.attack not in (NO_ATTACK, DELAY)

    def build(self) -> Attack | None:
        """The attack object (None for ``none`` and ``delay``); ``target`` is not an attack
        parameter and is left out, and so are ``mimic``'s ``donor`` / ``donor_class`` (the
        adversary resolves them to a sample and hands the attack that sample's block as its
        pool)."""
        if self.attack in (NO_ATTACK, DELAY):
            return None
        return make_attack(self.attack, **_attack_kwargs(self.attack, self.params))


def _delay_params(value: dict[str, ParamValue]) -> dict[str, ParamValue]:
    """``delay``'s parameters: exactly ``ms``, a finite number in (0, MAX_DELAY_MS]."""
    unknown = sorted(set(value) - {"ms"})
    if unknown:
        raise ValueError(f"attack '{DELAY}' does not take parameter '{unknown[0]}' (it takes: ms)")
    if "ms" not in value:
        raise ValueError(f"attack '{DELAY}' needs parameter 'ms' (milliseconds to hold each call)")
    ms = value["ms"]
    if isinstance(ms, bool) or not isinstance(ms, int | float):
        raise ValueError(f"parameter 'ms' of attack '{DELAY}' must be a number, got {ms!r}")
    if not math.isfinite(ms) or not 0 < ms <= MAX_DELAY_MS:
        raise ValueError(f"parameter 'ms' must be in (0, {MAX_DELAY_MS:.0f}], got {ms}")
    return {"ms": ms}


def policy_error(errors: Sequence[Mapping[str, Any]]) -> str:
    """One line naming what is wrong with a refused policy, from pydantic's (or FastAPI's)
    ``errors()``: ``params: attack 'flip' does not take parameter 'power' (it takes: amp)``."""
    if not errors:
        return "invalid policy"
    err = errors[0]
    loc = [str(p) for p in err.get("loc", ())]
    where = ".".join(loc[1:] if loc[:1] == ["body"] and len(loc) > 1 else loc)
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


@dataclass(frozen=True)
class PolicySnapshot:
    """The policy in force and the counts so far: calls forwarded, answers corrupted (drops
    included)."""

    policy: Policy
    calls: int
    corrupted: int


class PolicyState:
    """The live policy, swapped atomically by the control endpoint and read by every forwarded
    call."""

    def __init__(self, *, policy: Policy | None = None) -> None:
        self._lock = threading.Lock()
        self._policy = policy or Policy()
        self._calls = 0
        self._corrupted = 0

    def get(self) -> Policy:
        """The policy in force now."""
        with self._lock:
            return self._policy

    def set(self, policy: Policy) -> Policy:
        """Put ``policy`` in force; return the one it replaces."""
        with self._lock:
            previous, self._policy = self._policy, policy
            return previous

    def record(self, *, corrupted: bool) -> None:
        """Count one forwarded call, and whether its answer was corrupted."""
        with self._lock:
            self._calls += 1
            self._corrupted += int(corrupted)

    def snapshot(self) -> PolicySnapshot:
        """The policy and both counts, read together (consistent with each other)."""
        with self._lock:
            return PolicySnapshot(policy=self._policy, calls=self._calls, corrupted=self._corrupted)
