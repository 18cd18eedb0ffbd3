from copur_client.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedRequest(_message.Message):
    __slots__ = ("sample_ids",)
    SAMPLE_IDS_FIELD_NUMBER: _ClassVar[int]
    sample_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, sample_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class EmbedFeaturesRequest(_message.Message):
    __slots__ = ("features",)
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    features: _tensor_pb2.Tensor
    def __init__(self, features: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embeddings", "party")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    embeddings: _tensor_pb2.Tensor
    party: int
    def __init__(self, embeddings: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., party: _Optional[int] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PartyInfo(_message.Message):
    __slots__ = ("index", "name", "feature_dim", "emb_dim", "dataset", "num_samples", "num_parties")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FEATURE_DIM_FIELD_NUMBER: _ClassVar[int]
    EMB_DIM_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NUM_PARTIES_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    feature_dim: int
    emb_dim: int
    dataset: str
    num_samples: int
    num_parties: int
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., feature_dim: _Optional[int] = ..., emb_dim: _Optional[int] = ..., dataset: _Optional[str] = ..., num_samples: _Optional[int] = ..., num_parties: _Optional[int] = ...) -> None: ...
