from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BundlesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BundlePathRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class BundleIdRequest(_message.Message):
    __slots__ = ("bundle_id",)
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    bundle_id: str
    def __init__(self, bundle_id: _Optional[str] = ...) -> None: ...

class ActivateRequest(_message.Message):
    __slots__ = ("bundle_id", "quorum", "wait_s")
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    bundle_id: str
    quorum: int
    wait_s: float
    def __init__(self, bundle_id: _Optional[str] = ..., quorum: _Optional[int] = ..., wait_s: _Optional[float] = ...) -> None: ...

class PartyBundleRequest(_message.Message):
    __slots__ = ("party", "path", "bundle_id")
    PARTY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    party: int
    path: str
    bundle_id: str
    def __init__(self, party: _Optional[int] = ..., path: _Optional[str] = ..., bundle_id: _Optional[str] = ...) -> None: ...

class BundleRef(_message.Message):
    __slots__ = ("bundle_id", "path")
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    bundle_id: str
    path: str
    def __init__(self, bundle_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class PartyBundles(_message.Message):
    __slots__ = ("party", "bundles", "state")
    PARTY_FIELD_NUMBER: _ClassVar[int]
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    party: int
    bundles: _containers.RepeatedScalarFieldContainer[str]
    state: str
    def __init__(self, party: _Optional[int] = ..., bundles: _Optional[_Iterable[str]] = ..., state: _Optional[str] = ...) -> None: ...

class BundlesStatus(_message.Message):
    __slots__ = ("active", "held", "history", "parties")
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    active: str
    held: _containers.RepeatedCompositeFieldContainer[BundleRef]
    history: _containers.RepeatedCompositeFieldContainer[BundleRef]
    parties: _containers.RepeatedCompositeFieldContainer[PartyBundles]
    def __init__(self, active: _Optional[str] = ..., held: _Optional[_Iterable[_Union[BundleRef, _Mapping]]] = ..., history: _Optional[_Iterable[_Union[BundleRef, _Mapping]]] = ..., parties: _Optional[_Iterable[_Union[PartyBundles, _Mapping]]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("sample_ids", "defense", "certify")
    SAMPLE_IDS_FIELD_NUMBER: _ClassVar[int]
    DEFENSE_FIELD_NUMBER: _ClassVar[int]
    CERTIFY_FIELD_NUMBER: _ClassVar[int]
    sample_ids: _containers.RepeatedScalarFieldContainer[int]
    defense: str
    certify: bool
    def __init__(self, sample_ids: _Optional[_Iterable[int]] = ..., defense: _Optional[str] = ..., certify: _Optional[bool] = ...) -> None: ...

class Certificate(_message.Message):
    __slots__ = ("kind", "certified_parties", "radius", "label")
    KIND_FIELD_NUMBER: _ClassVar[int]
    CERTIFIED_PARTIES_FIELD_NUMBER: _ClassVar[int]
    RADIUS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    certified_parties: int
    radius: float
    label: int
    def __init__(self, kind: _Optional[str] = ..., certified_parties: _Optional[int] = ..., radius: _Optional[float] = ..., label: _Optional[int] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("sample_id", "label", "probabilities", "party_scores", "flagged_parties", "missing_parties", "defense", "certificate", "bundle_id", "missing_reasons")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    PARTY_SCORES_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_PARTIES_FIELD_NUMBER: _ClassVar[int]
    MISSING_PARTIES_FIELD_NUMBER: _ClassVar[int]
    DEFENSE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    MISSING_REASONS_FIELD_NUMBER: _ClassVar[int]
    sample_id: int
    label: int
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    party_scores: _containers.RepeatedScalarFieldContainer[float]
    flagged_parties: _containers.RepeatedScalarFieldContainer[int]
    missing_parties: _containers.RepeatedScalarFieldContainer[int]
    defense: str
    certificate: Certificate
    bundle_id: str
    missing_reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sample_id: _Optional[int] = ..., label: _Optional[int] = ..., probabilities: _Optional[_Iterable[float]] = ..., party_scores: _Optional[_Iterable[float]] = ..., flagged_parties: _Optional[_Iterable[int]] = ..., missing_parties: _Optional[_Iterable[int]] = ..., defense: _Optional[str] = ..., certificate: _Optional[_Union[Certificate, _Mapping]] = ..., bundle_id: _Optional[str] = ..., missing_reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("predictions",)
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    def __init__(self, predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ...) -> None: ...
