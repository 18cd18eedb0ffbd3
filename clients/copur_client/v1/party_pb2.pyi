from copur_client.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedRequest(_message.Message):
    __slots__ = ("sample_ids", "bundle_id")
    SAMPLE_IDS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    sample_ids: _containers.RepeatedScalarFieldContainer[int]
    bundle_id: str
    def __init__(self, sample_ids: _Optional[_Iterable[int]] = ..., bundle_id: _Optional[str] = ...) -> None: ...

class EmbedFeaturesRequest(_message.Message):
    __slots__ = ("features", "bundle_id")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    features: _tensor_pb2.Tensor
    bundle_id: str
    def __init__(self, features: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., bundle_id: _Optional[str] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embeddings", "party", "bundle_id")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    embeddings: _tensor_pb2.Tensor
    party: int
    bundle_id: str
    def __init__(self, embeddings: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., party: _Optional[int] = ..., bundle_id: _Optional[str] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PartyInfo(_message.Message):
    __slots__ = ("index", "name", "feature_dim", "emb_dim", "dataset", "num_samples", "num_parties", "bundle_id", "bundles")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FEATURE_DIM_FIELD_NUMBER: _ClassVar[int]
    EMB_DIM_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NUM_PARTIES_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    feature_dim: int
    emb_dim: int
    dataset: str
    num_samples: int
    num_parties: int
    bundle_id: str
    bundles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., feature_dim: _Optional[int] = ..., emb_dim: _Optional[int] = ..., dataset: _Optional[str] = ..., num_samples: _Optional[int] = ..., num_parties: _Optional[int] = ..., bundle_id: _Optional[str] = ..., bundles: _Optional[_Iterable[str]] = ...) -> None: ...

class LoadBundleRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class DropBundleRequest(_message.Message):
    __slots__ = ("bundle_id",)
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    bundle_id: str
    def __init__(self, bundle_id: _Optional[str] = ...) -> None: ...

class ListBundlesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeldBundle(_message.Message):
    __slots__ = ("bundle_id", "path")
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    bundle_id: str
    path: str
    def __init__(self, bundle_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class BundleList(_message.Message):
    __slots__ = ("bundles",)
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    bundles: _containers.RepeatedCompositeFieldContainer[HeldBundle]
    def __init__(self, bundles: _Optional[_Iterable[_Union[HeldBundle, _Mapping]]] = ...) -> None: ...
