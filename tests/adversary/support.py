"""The test upstream party and helpers shared by the adversary tests."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import numpy as np
import torch

from copur_client import serde
from copur_client.v1 import party_pb2_grpc

__all__ = ["CLASSES", "FEATURES", "PARTY", "Clean", "E", "M", "TableParty", "embed"]

PARTY, M, E, CLASSES = 2, 6, 16, 10
FEATURES = 20


class TableParty(party_pb2_grpc.PartyServiceServicer):
    """Party ``PARTY``: row ``id`` of ``table`` is the embedding of sample ``id``; unknown ids:
    NOT_FOUND."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    def Embed(self, request, context):
        ids = list(request.sample_ids)
        unknown = [i for i in ids if not 0 <= i < len(self.table)]
        if unknown:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown sample ids {unknown}")
        return serde.embed_response(self.table[ids], PARTY)

    def EmbedFeatures(self, request, context):
        x = serde.array_from_proto(request.features)
        return serde.embed_response(x[:, :E] * 0.5, PARTY)

    def Info(self, request, context):
        info = serde.PartyInfo(
            index=PARTY,
            name=f"party-{PARTY}",
            feature_dim=FEATURES,
            emb_dim=E,
            dataset="mfeat",
            num_samples=len(self.table),
            num_parties=M,
        )
        return serde.party_info_to_proto(info)


@dataclass
class Clean:
    """The upstream's table and what the adversary assembles around it (others: calibrated mean
    blocks)."""

    table: np.ndarray
    block_mean: np.ndarray

    def assemble(self, block: np.ndarray) -> torch.Tensor:
        h = np.repeat(self.block_mean[None], len(block), axis=0)
        h[:, PARTY] = block
        return torch.from_numpy(h.reshape(len(block), -1))


def embed(stub: party_pb2_grpc.PartyServiceStub, ids: list[int]) -> np.ndarray:
    block, party = serde.embed_response_from_proto(stub.Embed(serde.embed_request(ids), timeout=30))
    assert party == PARTY
    return block
