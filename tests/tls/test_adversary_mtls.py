"""The adversary proxy under mTLS: its gRPC server admits only certificates from the cluster's
CA, and it reaches its party over mTLS with its own certificate, refusing an upstream the CA
did not certify."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from copur.roles.adversary import AdversaryApp
from copur.roles.party import PartyApp, PartyCore
from copur.transport.tls.credentials import load_identity
from copur_client.serde import array_from_proto, embed_request
from copur_client.v1 import party_pb2_grpc
from tls.support import call_info, tiny_party, without_client_cert

PARTY = 1
IDS = [0, 7, 1999]


@pytest.fixture(scope="module")
def upstream(mfeat_bundle_dir: Path, certs: Path) -> Iterator[PartyApp]:
    core = PartyCore.from_bundle(mfeat_bundle_dir, PARTY)
    app = PartyApp(core=core, tls=load_identity(certs, f"party-{PARTY}")).start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def adversary(upstream: PartyApp, mfeat_bundle_dir: Path, certs: Path) -> Iterator[AdversaryApp]:
    app = AdversaryApp(
        upstream=f"127.0.0.1:{upstream.port}",
        bundle=mfeat_bundle_dir,
        party=PARTY,
        tls=load_identity(certs, f"adversary-{PARTY}"),
    )
    app.start()
    yield app
    app.stop()


def _embed(target: str, credentials: grpc.ChannelCredentials, server_name: str) -> np.ndarray:
    options = [
        ("grpc.ssl_target_name_override", server_name),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    with grpc.secure_channel(target, credentials, options=options) as chan:
        reply = party_pb2_grpc.PartyServiceStub(chan).Embed(embed_request(IDS), timeout=10)
    return array_from_proto(reply.embeddings)


def _refused(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_forwards_the_fusion_over_mtls_to_its_party(
    adversary: AdversaryApp, upstream: PartyApp, certs: Path
) -> None:
    # Prepare: policy none, so the answer is the party's own
    fusion = load_identity(certs, "fusion").channel_credentials()

    # Execute
    via_adversary = _embed(f"127.0.0.1:{adversary.port}", fusion, f"adversary-{PARTY}")
    direct = _embed(f"127.0.0.1:{upstream.port}", fusion, f"party-{PARTY}")

    # Assert
    np.testing.assert_array_equal(via_adversary, direct)
    assert adversary.readiness() == (True, None)


def test_refuses_a_plaintext_client(adversary: AdversaryApp) -> None:
    assert (
        _refused(lambda: call_info(f"127.0.0.1:{adversary.port}", None))
        == grpc.StatusCode.UNAVAILABLE
    )


def test_refuses_a_tls_client_without_a_client_certificate(
    adversary: AdversaryApp, certs: Path
) -> None:
    anonymous = without_client_cert(load_identity(certs, "fusion"))
    assert (
        _refused(lambda: call_info(f"127.0.0.1:{adversary.port}", anonymous))
        == grpc.StatusCode.UNAVAILABLE
    )


def test_refuses_a_client_certificate_from_another_ca(
    adversary: AdversaryApp, certs: Path, foreign_certs: Path
) -> None:
    # Prepare
    stranger = load_identity(foreign_certs, "fusion")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=load_identity(certs, "fusion").ca,
        private_key=stranger.key,
        certificate_chain=stranger.cert,
    )

    # Execute / Assert
    assert (
        _refused(lambda: call_info(f"127.0.0.1:{adversary.port}", credentials))
        == grpc.StatusCode.UNAVAILABLE
    )


def test_does_not_talk_to_an_upstream_certified_by_another_ca(
    mfeat_bundle_dir: Path, certs: Path, foreign_certs: Path
) -> None:
    # Prepare: an impostor at the upstream address, with a party-1 certificate from a stranger's CA
    impostor = tiny_party(PARTY, tls=load_identity(foreign_certs, f"party-{PARTY}"))
    app = AdversaryApp(
        upstream=f"127.0.0.1:{impostor.port}",
        bundle=mfeat_bundle_dir,
        party=PARTY,
        tls=load_identity(certs, f"adversary-{PARTY}"),
        upstream_timeout_s=2,
    )

    # Execute
    app.start()
    try:
        ready, reason = app.readiness()
    finally:
        app.stop()
        impostor.stop()

    # Assert: the impostor never answered Info (the handshake failed), so the adversary is not ready
    assert not ready
    assert reason == f"upstream 127.0.0.1:{impostor.port} has not answered Info"
