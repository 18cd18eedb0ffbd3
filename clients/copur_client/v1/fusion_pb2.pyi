from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
    __slots__ = ("sample_id", "label", "probabilities", "party_scores", "flagged_parties", "missing_parties", "defense", "certificate")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    PARTY_SCORES_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_PARTIES_FIELD_NUMBER: _ClassVar[int]
    MISSING_PARTIES_FIELD_NUMBER: _ClassVar[int]
    DEFENSE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    sample_id: int
    label: int
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    party_scores: _containers.RepeatedScalarFieldContainer[float]
    flagged_parties: _containers.RepeatedScalarFieldContainer[int]
    missing_parties: _containers.RepeatedScalarFieldContainer[int]
    defense: str
    certificate: Certificate
    def __init__(self, sample_id: _Optional[int] = ..., label: _Optional[int] = ..., probabilities: _Optional[_Iterable[float]] = ..., party_scores: _Optional[_Iterable[float]] = ..., flagged_parties: _Optional[_Iterable[int]] = ..., missing_parties: _Optional[_Iterable[int]] = ..., defense: _Optional[str] = ..., certificate: _Optional[_Union[Certificate, _Mapping]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("predictions",)
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    def __init__(self, predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ...) -> None: ...
