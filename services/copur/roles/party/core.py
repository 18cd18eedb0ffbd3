"""The party's transport-free logic: its own feature columns and extractor f_i, nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from copur.science.bundle import load_party
from copur.science.data import DatasetSpec, load_dataset
from copur.science.models import PartyExtractor
from copur.transport.grpcutil import InvalidRequest, NotFound, TooLarge
from copur_client.wire import PartyInfo

__all__ = ["PartyCore"]


class PartyCore:
    """Embeds sample ids (by its stored features) or raw features with party ``index``'s
    extractor, the one of bundle ``bundle_id`` (loaded from ``path``; both empty for a core built
    by hand, as in tests). Immutable once built: calls may run on it from many threads at once."""

    def __init__(
        self,
        *,
        extractor: PartyExtractor,
        features: np.ndarray,
        info: PartyInfo,
        max_ids: int,
        bundle_id: str = "",
        path: str = "",
    ) -> None:
        self.extractor = extractor
        self.features = features
        self.info = info
        self.max_ids = max_ids
        self.bundle_id = bundle_id
        self.path = path

    @classmethod
    def from_bundle(
        cls, bundle: str | Path, index: int, *, data_dir: str | None = None, max_ids: int = 65536
    ) -> PartyCore:
        """Load only this party's extractor and this party's columns of the bundle's data set;
        ``bundle_id`` is the manifest's id, ``path`` the bundle as given."""
        manifest, extractor = load_party(bundle, index)
        spec = manifest.dataset_spec
        if data_dir is not None:
            spec = DatasetSpec(**{**spec.to_dict(), "data_dir": data_dir})
        features = load_dataset(spec).features[index]
        info = PartyInfo(
            index=index,
            name=manifest.party_names[index],
            feature_dim=manifest.party_dims[index],
            emb_dim=int(manifest.model["emb_dim"]),
            dataset=spec.name,
            num_samples=len(features),
            num_parties=manifest.num_parties,
        )
        return cls(
            extractor=extractor,
            features=features,
            info=info,
            max_ids=max_ids,
            bundle_id=manifest.bundle_id,
            path=str(bundle),
        )

    @torch.no_grad()
    def _embed(self, x: np.ndarray) -> np.ndarray:
        return self.extractor(torch.as_tensor(x, dtype=torch.float32)).numpy()

    def embed_ids(self, sample_ids: Sequence[int]) -> np.ndarray:
        """f_i(x_i) for these ids, (n, e); unknown ids are a NotFound naming them."""
        if len(sample_ids) > self.max_ids:
            raise TooLarge(
                f"{len(sample_ids)} sample ids in one request; the limit is {self.max_ids}"
            )
        ids = np.asarray(sample_ids, dtype=np.int64)
        unknown = ids[(ids < 0) | (ids >= len(self.features))]
        if len(unknown):
            shown = ", ".join(str(i) for i in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise NotFound(
                f"unknown sample ids: {shown} (party {self.info.index} holds "
                f"0..{len(self.features) - 1})"
            )
        return self._embed(self.features[ids])

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """f_i(x) for raw features of shape (n, feature_dim)."""
        if features.ndim != 2 or features.shape[1] != self.info.feature_dim:
            raise InvalidRequest(
                f"features of shape {features.shape}; party {self.info.index} expects (n, "
                f"{self.info.feature_dim})"
            )
        if len(features) > self.max_ids:
            raise TooLarge(f"{len(features)} rows in one request; the limit is {self.max_ids}")
        if not np.isfinite(features).all():
            raise InvalidRequest("features contain NaN or Inf")
        return self._embed(features)
