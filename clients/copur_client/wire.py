"""The wire types: what a prediction, a certificate, a party's description and an adversary
policy look like on either side of the wire, and the names they carry. Client and server both
use this module; it imports nothing but the standard library.

Defense and attack names are plain strings on the wire (``DefenseName``, ``AttackName``): the
server's registries own the lists (``GET /openapi.json`` documents the defenses a server serves;
an unknown name is a 400 that lists the known ones), so a newer server's defense needs no new
client.

The ``Oip*`` types are the Open Inference Protocol v2 (KServe / Triton "v2") messages in a form
free of any transport: :mod:`copur_client.serde` converts them to and from the gRPC messages of
``inference.GRPCInferenceService``; the fusion center reads and writes their JSON form itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias, TypedDict

__all__ = [
    "DEFAULT_DEFENSE",
    "NO_ATTACK",
    "AttackName",
    "BundleRef",
    "BundlesStatus",
    "Certificate",
    "DefenseName",
    "OipInferRequest",
    "OipInferResponse",
    "OipModelMetadata",
    "OipParam",
    "OipRequestedOutput",
    "OipServerMetadata",
    "OipTensor",
    "OipTensorMeta",
    "ParamValue",
    "PartyBundles",
    "PartyInfo",
    "PolicySpec",
    "Prediction",
    "WireError",
    "one_line",
]

DefenseName: TypeAlias = str
"""A defense of the fusion center's registry (``none``, ``ae``, ``rs``, ``copur-ref``,
``copur-l21``, ``copur``, ``copur+rs``, ``vote`` in this version)."""
AttackName: TypeAlias = str
"""An attack policy of the adversary (an attack of the library, ``delay``, or :data:`NO_ATTACK`)."""
ParamValue: TypeAlias = float | int | bool | None
"""A policy parameter's value."""

DEFAULT_DEFENSE: Final[DefenseName] = "copur"
"""The defense the fusion center, the demo and the reports use unless told otherwise."""
NO_ATTACK: Final[AttackName] = "none"
"""The adversary's policy that forwards the honest answer unchanged."""

MAX_DETAIL_CHARS: Final = 500


class WireError(ValueError):
    """A message does not decode into what it claims (dtype, shape, byte length)."""


def one_line(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """``text`` with its whitespace runs (newlines included) folded to single spaces, cut at
    ``limit``."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class PolicySpec(TypedDict):
    """An adversary policy as the control endpoint reads and writes it: an attack and its
    parameters."""

    attack: AttackName
    params: dict[str, ParamValue]


@dataclass(frozen=True)
class PartyInfo:
    """What a party says about itself: its index and name, its feature and embedding widths, its
    data set, its current bundle's id and every bundle it holds (current first)."""

    index: int
    name: str
    feature_dim: int
    emb_dim: int
    dataset: str
    num_samples: int
    num_parties: int
    bundle_id: str = ""
    bundles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Certificate:
    """A prediction's certificate. ``kind`` ``vote``: the label holds against any
    ``certified_parties`` lying parties (-1: not even none). ``smoothing``: it holds within l2
    ``radius`` of the (purified) embedding; ``label`` -1 means the smoothed classifier abstained."""

    kind: str
    certified_parties: int = -1
    radius: float = 0.0
    label: int = -1


@dataclass(frozen=True)
class Prediction:
    """One sample's answer, as both front doors return it: the label and class probabilities,
    each party's anomaly score, the parties the defense flagged and those that did not answer
    (with why, in the same order: ``timeout``, ``error``, ``invalid``, ``ejected`` or
    ``version``), the defense that ran, the certificate when asked, and the bundle (digest of its
    manifest) that every block and model of this answer came from."""

    sample_id: int
    label: int
    probabilities: list[float]
    party_scores: list[float]
    flagged_parties: list[int]
    missing_parties: list[int]
    defense: DefenseName
    certificate: Certificate | None = field(default=None)
    bundle_id: str = ""
    missing_reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BundleRef:
    """A bundle by its id (the digest of its manifest) and the path it was loaded from."""

    bundle_id: str
    path: str


@dataclass(frozen=True)
class PartyBundles:
    """What party ``party``'s last Info said it holds (current first), and its state at the fusion
    center."""

    party: int
    bundles: list[str]
    state: str


@dataclass(frozen=True)
class BundlesStatus:
    """The fusion center's bundles: the ``active`` one's id, every one ``held`` (active first),
    the ones served before (``history``, latest first) and what each party holds."""

    active: str
    held: list[BundleRef]
    history: list[BundleRef]
    parties: list[PartyBundles]


OipParam: TypeAlias = bool | int | float | str | None
"""An Open Inference Protocol parameter's value: a JSON scalar, or (gRPC) the ``bool``, ``int64``
or ``string`` choice of an ``InferParameter``; None when a gRPC parameter holds none of them."""


@dataclass(frozen=True, kw_only=True)
class OipTensor:
    """One tensor of an inference request or response. Its elements are either ``data`` (the
    JSON form: row-major, flat or nested lists) or ``raw`` (the binary form: the row-major elements
    little-endian without padding, BOOL one byte each), or neither when the sender gave none.
    Nothing here checks that they agree with ``datatype`` and ``shape``: the receiver does."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    parameters: dict[str, OipParam] = field(default_factory=dict)
    data: list[Any] | None = None
    raw: bytes | None = None


@dataclass(frozen=True, kw_only=True)
class OipRequestedOutput:
    """An output a request asks for, with its parameters (e.g. ``binary_data``)."""

    name: str
    parameters: dict[str, OipParam] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class OipInferRequest:
    """An inference request. ``outputs`` empty: every output the model produces."""

    model_name: str
    model_version: str = ""
    id: str = ""
    parameters: dict[str, OipParam] = field(default_factory=dict)
    inputs: tuple[OipTensor, ...] = ()
    outputs: tuple[OipRequestedOutput, ...] = ()


@dataclass(frozen=True, kw_only=True)
class OipInferResponse:
    """An inference response: the model that answered, the request's id and the outputs."""

    model_name: str
    model_version: str = ""
    id: str = ""
    parameters: dict[str, OipParam] = field(default_factory=dict)
    outputs: tuple[OipTensor, ...] = ()


@dataclass(frozen=True, kw_only=True)
class OipTensorMeta:
    """A model input's or output's name, datatype and shape (-1: a variable dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class OipModelMetadata:
    """What a model takes and gives: its name, versions, platform, inputs and outputs."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[OipTensorMeta, ...]
    outputs: tuple[OipTensorMeta, ...]


@dataclass(frozen=True, kw_only=True)
class OipServerMetadata:
    """The server's name, version and the protocol extensions it supports."""

    name: str
    version: str
    extensions: tuple[str, ...]
