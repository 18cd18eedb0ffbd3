"""Key pairs and small real servers shared by the mTLS tests."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import torch

from copur.roles.party import PartyApp, PartyCore
from copur.science.models import PartyExtractor
from copur.transport.tls.certs import write_certs
from copur.transport.tls.credentials import TlsIdentity
from copur_client.v1 import party_pb2, party_pb2_grpc
from copur_client.wire import PartyInfo

__all__ = ["NAMES", "call_info", "make_certs", "tiny_party", "without_client_cert"]

NAMES = ["party-0", "party-1", "party-2", "adversary-1", "adversary-2", "fusion", "client"]
_LOCAL_POOL = (
    "grpc.use_local_subchannel_pool",
    1,
)  # no connection shared between the tests' channels


def make_certs(directory: Path) -> Path:
    """A CA and the key pairs of :data:`NAMES` in ``directory``."""
    write_certs(directory, NAMES)
    return directory


def tiny_party(index: int, *, tls: TlsIdentity | None, port: int = 0) -> PartyApp:
    """A real party gRPC server (random 4 -> 3 extractor over 10 samples) on 127.0.0.1, started."""
    torch.manual_seed(index)
    extractor = PartyExtractor(in_dim=4, hidden=8, emb_dim=3).eval()
    info = PartyInfo(
        index=index,
        name=f"p{index}",
        feature_dim=4,
        emb_dim=3,
        dataset="tiny",
        num_samples=10,
        num_parties=3,
    )
    core = PartyCore(
        extractor=extractor, features=np.ones((10, 4), np.float32), info=info, max_ids=100
    )
    return PartyApp(core=core, port=port, tls=tls).start()


def without_client_cert(identity: TlsIdentity) -> grpc.ChannelCredentials:
    """TLS that verifies the server but presents no certificate of its own."""
    return grpc.ssl_channel_credentials(root_certificates=identity.ca)


def call_info(
    target: str, credentials: grpc.ChannelCredentials | None, *, server_name: str | None = None
) -> int:
    """Ask ``target``'s PartyService/Info; the party index on success, or the failing call's
    status raised."""
    options = [
        _LOCAL_POOL,
        *([("grpc.ssl_target_name_override", server_name)] if server_name else []),
    ]
    if credentials is None:
        chan = grpc.insecure_channel(target, options=options)
    else:
        chan = grpc.secure_channel(target, credentials, options=options)
    with chan:
        return int(
            party_pb2_grpc.PartyServiceStub(chan).Info(party_pb2.InfoRequest(), timeout=5).index
        )
