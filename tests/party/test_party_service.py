from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from copur.roles.party import PartyApp, PartyCore
from copur.science.bundle import Bundle
from copur.science.data import load_dataset
from copur.transport.probe import probe_grpc
from copur_client.serde import array_from_proto, array_to_proto, embed_request
from copur_client.v1 import party_pb2, party_pb2_grpc


@pytest.fixture(scope="module")
def party2(mfeat_bundle_dir: Path) -> Iterator[tuple[PartyApp, party_pb2_grpc.PartyServiceStub]]:
    app = PartyApp(core=PartyCore.from_bundle(mfeat_bundle_dir, 2, max_ids=100)).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
    yield app, party_pb2_grpc.PartyServiceStub(channel)
    channel.close()
    app.stop()


def test_embed_by_ids_matches_the_bundle_extractor(party2, mfeat_bundle: Bundle) -> None:
    app, stub = party2
    data = load_dataset(mfeat_bundle.manifest.dataset_spec)

    reply = stub.Embed(embed_request([5, 0, 1999]))

    with torch.no_grad():
        expected = mfeat_bundle.models.extractors[2](
            torch.as_tensor(data.features[2][[5, 0, 1999]])
        ).numpy()
    assert reply.party == 2
    np.testing.assert_allclose(array_from_proto(reply.embeddings), expected, rtol=1e-5, atol=1e-5)
    assert probe_grpc(f"127.0.0.1:{app.port}")


def test_unknown_ids_are_not_found_and_named(party2) -> None:
    _, stub = party2

    with pytest.raises(grpc.RpcError) as err:
        stub.Embed(embed_request([1, 2000, -3]))

    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown sample ids: 2000, -3" in err.value.details()


def test_oversized_and_malformed_requests_are_refused(party2) -> None:
    _, stub = party2

    with pytest.raises(grpc.RpcError) as big:
        stub.Embed(embed_request(list(range(101))))
    with pytest.raises(grpc.RpcError) as shape:
        stub.EmbedFeatures(
            party_pb2.EmbedFeaturesRequest(features=array_to_proto(np.zeros((2, 5))))
        )
    with pytest.raises(grpc.RpcError) as nan:
        stub.EmbedFeatures(
            party_pb2.EmbedFeaturesRequest(features=array_to_proto(np.full((1, 64), np.nan)))
        )

    assert (
        big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        and "limit is 100" in big.value.details()
    )
    assert (
        shape.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "(n, 64)" in shape.value.details()
    )
    assert "NaN" in nan.value.details()


def test_info_describes_the_party(party2) -> None:
    _, stub = party2

    info = stub.Info(party_pb2.InfoRequest())

    assert (info.index, info.name, info.feature_dim, info.emb_dim, info.num_parties) == (
        2,
        "kar",
        64,
        16,
        6,
    )
