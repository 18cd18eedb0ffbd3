"""The party's gRPC server: a thin adapter over :class:`PartyCore`, served by the one builder
(:class:`~copur.transport.grpc_server.GrpcServer`) and run until a signal by
:func:`~copur.transport.lifecycle.run_until_signal`."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from copur.errors import CopurError
from copur.roles.party.core import PartyCore
from copur.transport.grpc_server import GrpcServer, host_port
from copur.transport.grpcutil import abort_with
from copur.transport.lifecycle import run_until_signal
from copur.transport.tls.credentials import TlsIdentity
from copur_client.serde import array_from_proto, embed_response, party_info_to_proto
from copur_client.v1 import party_pb2, party_pb2_grpc

__all__ = ["PartyApp", "PartyServicer", "party_callers", "peer_service", "serve_party"]

log = logging.getLogger("copur.roles.party")
SERVICE = party_pb2.DESCRIPTOR.services_by_name["PartyService"].full_name


def peer_service(context: grpc.ServicerContext) -> str | None:
    """The service name (certificate common name) an mTLS caller presented; None over plaintext."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode() if names else None


class PartyServicer(party_pb2_grpc.PartyServiceServicer):
    """Party ``core``'s calls. With ``callers`` (mTLS), only those services may call: the fusion
    center, this party's own adversary slot and itself; another party holding a valid certificate
    from the same CA is refused (PERMISSION_DENIED), so no party can harvest another's
    embeddings."""

    def __init__(self, core: PartyCore, callers: frozenset[str] | None = None) -> None:
        self.core = core
        self.callers = callers

    def _admit(self, context: grpc.ServicerContext) -> None:
        if self.callers is None:
            return
        peer = peer_service(context)
        if peer not in self.callers:
            allowed = ", ".join(sorted(self.callers))
            who = peer or "an unnamed caller"
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"party {self.core.info.index} serves {allowed} only, not {who}",
            )

    def Embed(
        self, request: party_pb2.EmbedRequest, context: grpc.ServicerContext
    ) -> party_pb2.EmbedResponse:
        """The party's blocks of the sample ids asked for, in their order (NOT_FOUND names unknown
        ids)."""
        self._admit(context)
        try:
            return embed_response(
                self.core.embed_ids(list(request.sample_ids)), self.core.info.index
            )
        except CopurError as exc:
            abort_with(context, exc)

    def EmbedFeatures(
        self, request: party_pb2.EmbedFeaturesRequest, context: grpc.ServicerContext
    ) -> party_pb2.EmbedResponse:
        """The party's extractor on raw feature rows (INVALID_ARGUMENT for a wrong width, NaN or
        Inf)."""
        self._admit(context)
        try:
            x = array_from_proto(request.features, what="features")
            return embed_response(self.core.embed_features(x), self.core.info.index)
        except CopurError as exc:
            abort_with(context, exc)

    def Info(
        self, request: party_pb2.InfoRequest, context: grpc.ServicerContext
    ) -> party_pb2.PartyInfo:
        """Which party this is and the shapes it serves."""
        self._admit(context)
        return party_info_to_proto(self.core.info)


def party_callers(index: int) -> frozenset[str]:
    """Who may call party ``index`` under mTLS: the fusion center, its adversary slot, itself
    (probes)."""
    return frozenset({"fusion", f"adversary-{index}", f"party-{index}"})


class PartyApp:
    """A party gRPC server on ``host:port`` (port 0 picks a free one; see ``.port``), bound when
    built.

    With ``tls`` it serves mTLS only: a caller without a certificate signed by ``tls``'s CA is
    refused during the handshake, before any call reaches the party. None serves plaintext
    (in-process tests). Health answers SERVING from :meth:`start` until :meth:`stop`."""

    def __init__(
        self,
        *,
        core: PartyCore,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsIdentity | None = None,
    ) -> None:
        self.core = core
        self.tls = tls
        self.host = host
        address = host_port(host, port)
        name = f"party-{core.info.index}"
        self.grpc = GrpcServer(name=name, address=address, services=[SERVICE], tls=tls)
        self.server, self.health, self.port = self.grpc.server, self.grpc.health, self.grpc.port
        callers = party_callers(core.info.index) if tls is not None else None
        party_pb2_grpc.add_PartyServiceServicer_to_server(PartyServicer(core, callers), self.server)

    def start(self) -> PartyApp:
        """Serve calls, health SERVING; returns itself."""
        self.grpc.start().set_serving(True)
        log.info(
            "event=party_ready party=%d name=%s address=%s tls=%s",
            self.core.info.index,
            self.core.info.name,
            host_port(self.host, self.port),
            "mtls" if self.tls else "plaintext",
        )
        return self

    def stop(self, grace: float = 1.0) -> None:
        """Health NOT_SERVING, then stop, giving calls in flight ``grace`` seconds."""
        self.grpc.stop(grace)

    def wait(self) -> None:
        """Block until the server has stopped."""
        self.grpc.wait()


def serve_party(
    *,
    bundle: str | Path,
    party: int,
    host: str,
    port: int,
    data_dir: str | None = None,
    max_ids: int = 65536,
    tls: TlsIdentity | None = None,
) -> None:
    """``copur party``: load party ``party`` of ``bundle`` and serve it until SIGINT / SIGTERM, then
    stop gracefully (mTLS with ``tls``, plaintext with None). A port that cannot be bound is a
    CopurError."""
    core = PartyCore.from_bundle(bundle, party, data_dir=data_dir, max_ids=max_ids)
    run_until_signal(PartyApp(core=core, host=host, port=port, tls=tls))
