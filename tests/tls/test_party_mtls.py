"""A party serving mTLS on a real port answers only callers holding a certificate from the
cluster's CA, and the fusion's side only accepts the party it meant to reach."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from copur.roles.party import PartyApp
from copur.transport.probe import probe_grpc
from copur.transport.tls.credentials import load_identity
from tls.support import call_info, tiny_party, without_client_cert


@pytest.fixture(scope="module")
def party(certs: Path) -> Iterator[PartyApp]:
    app = tiny_party(2, tls=load_identity(certs, "party-2"))
    yield app
    app.stop()


def _refused(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_accepts_the_fusion_certificate(party: PartyApp, certs: Path) -> None:
    # Prepare
    fusion = load_identity(certs, "fusion")

    # Execute
    index = call_info(
        f"127.0.0.1:{party.port}", fusion.channel_credentials(), server_name="party-2"
    )

    # Assert
    assert index == 2


def test_refuses_a_plaintext_client(party: PartyApp) -> None:
    # Execute
    code = _refused(lambda: call_info(f"127.0.0.1:{party.port}", None))

    # Assert
    assert code == grpc.StatusCode.UNAVAILABLE


def test_refuses_a_tls_client_without_a_client_certificate(party: PartyApp, certs: Path) -> None:
    # Prepare: trusts the right CA, presents nothing
    anonymous = without_client_cert(load_identity(certs, "fusion"))

    # Execute
    code = _refused(lambda: call_info(f"127.0.0.1:{party.port}", anonymous))

    # Assert
    assert code == grpc.StatusCode.UNAVAILABLE


def test_refuses_a_client_certificate_from_another_ca(
    party: PartyApp, certs: Path, foreign_certs: Path
) -> None:
    # Prepare: a "fusion" certificate minted by a stranger's CA, which trusts our CA so only the
    # server can object
    stranger = load_identity(foreign_certs, "fusion")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=load_identity(certs, "fusion").ca,
        private_key=stranger.key,
        certificate_chain=stranger.cert,
    )

    # Execute
    code = _refused(lambda: call_info(f"127.0.0.1:{party.port}", credentials))

    # Assert
    assert code == grpc.StatusCode.UNAVAILABLE


def test_the_caller_refuses_a_party_certified_by_another_ca(
    certs: Path, foreign_certs: Path
) -> None:
    # Prepare: an impostor party whose certificate our CA never signed
    impostor = tiny_party(2, tls=load_identity(foreign_certs, "party-2"))

    # Execute
    try:
        code = _refused(
            lambda: call_info(
                f"127.0.0.1:{impostor.port}",
                load_identity(certs, "fusion").channel_credentials(),
                server_name="party-2",
            )
        )
    finally:
        impostor.stop()

    # Assert
    assert code == grpc.StatusCode.UNAVAILABLE


def test_the_caller_refuses_another_service_at_the_partys_address(
    party: PartyApp, certs: Path
) -> None:
    # Prepare: the fusion expects party-0 at this address, but party-2 (same CA, other name) answers
    fusion = load_identity(certs, "fusion")

    # Execute
    code = _refused(
        lambda: call_info(
            f"127.0.0.1:{party.port}", fusion.channel_credentials(), server_name="party-0"
        )
    )

    # Assert
    assert code == grpc.StatusCode.UNAVAILABLE


def test_health_probe_needs_a_certificate(party: PartyApp, certs: Path) -> None:
    # Execute
    plaintext = probe_grpc(f"127.0.0.1:{party.port}", timeout=5)
    own = probe_grpc(f"127.0.0.1:{party.port}", timeout=5, tls=load_identity(certs, "party-2"))

    # Assert
    assert (plaintext, own) == (False, True)


def test_plaintext_party_still_serves_in_process(certs: Path) -> None:
    # Prepare: what the in-process tests use (tls=None)
    app = tiny_party(1, tls=None)

    # Execute
    try:
        index = call_info(f"127.0.0.1:{app.port}", None)
    finally:
        app.stop()

    # Assert
    assert index == 1


@pytest.mark.parametrize("caller", ["fusion", "adversary-2", "party-2"])
def test_serves_the_fusion_its_adversary_slot_and_itself(
    party: PartyApp, certs: Path, caller: str
) -> None:
    # Prepare
    identity = load_identity(certs, caller)

    # Execute
    index = call_info(
        f"127.0.0.1:{party.port}", identity.channel_credentials(), server_name="party-2"
    )

    # Assert
    assert index == 2


@pytest.mark.parametrize("caller", ["party-1", "adversary-1", "client"])
def test_refuses_other_services_of_the_same_ca(party: PartyApp, certs: Path, caller: str) -> None:
    # Prepare: a valid certificate from the cluster's CA, but for another service
    identity = load_identity(certs, caller)

    # Execute
    with pytest.raises(grpc.RpcError) as info:
        call_info(f"127.0.0.1:{party.port}", identity.channel_credentials(), server_name="party-2")

    # Assert
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"not {caller}" in (info.value.details() or "")
