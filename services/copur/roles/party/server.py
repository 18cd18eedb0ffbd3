"""The party's gRPC server: a thin adapter over :class:`PartyCore`, served by the one builder
(:class:`~copur.transport.grpc_server.GrpcServer`) and run until a signal by
:func:`~copur.transport.lifecycle.run_until_signal`."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from copur.errors import CopurError
from copur.roles.party.bundles import HeldBundles
from copur.roles.party.core import PartyCore
from copur.transport.grpc_server import GrpcServer, host_port
from copur.transport.grpcutil import abort_with
from copur.transport.lifecycle import run_until_signal
from copur.transport.tls.credentials import TlsIdentity
from copur_client.serde import (
    array_from_proto,
    bundle_list_to_proto,
    embed_response,
    party_info_to_proto,
)
from copur_client.v1 import party_pb2, party_pb2_grpc

__all__ = [
    "PartyAdminServicer",
    "PartyApp",
    "PartyServicer",
    "party_admin_callers",
    "party_callers",
    "peer_service",
    "serve_party",
]

log = logging.getLogger("copur.roles.party")
SERVICE = party_pb2.DESCRIPTOR.services_by_name["PartyService"].full_name
ADMIN_SERVICE = party_pb2.DESCRIPTOR.services_by_name["PartyAdmin"].full_name


def peer_service(context: grpc.ServicerContext) -> str | None:
    """The service name (certificate common name) an mTLS caller presented; None over plaintext."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode() if names else None


def _admit(context: grpc.ServicerContext, callers: frozenset[str] | None, *, what: str) -> None:
    """Refuse (PERMISSION_DENIED, naming who may call) a caller whose certificate names none of
    ``callers``; None (plaintext) admits everyone."""
    if callers is None:
        return
    peer = peer_service(context)
    if peer not in callers:
        allowed = ", ".join(sorted(callers))
        who = peer or "an unnamed caller"
        context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{what} serves {allowed} only, not {who}")


class PartyServicer(party_pb2_grpc.PartyServiceServicer):
    """The calls of the party holding ``bundles``: each Embed is answered by the bundle it names
    (none: the current one), and the reply names that bundle; a bundle not held is
    FAILED_PRECONDITION naming those held. With ``callers`` (mTLS), only those services may call:
    the fusion center, this party's own adversary slot and itself; another party holding a valid
    certificate from the same CA is refused (PERMISSION_DENIED), so no party can harvest another's
    embeddings."""

    def __init__(self, bundles: HeldBundles, callers: frozenset[str] | None = None) -> None:
        self.bundles = bundles
        self.callers = callers

    def _admit(self, context: grpc.ServicerContext) -> None:
        _admit(context, self.callers, what=f"party {self.bundles.index}")

    def Embed(
        self, request: party_pb2.EmbedRequest, context: grpc.ServicerContext
    ) -> party_pb2.EmbedResponse:
        """The party's blocks of the sample ids asked for, in their order, by the bundle asked for
        (NOT_FOUND names unknown ids)."""
        self._admit(context)
        try:
            core = self.bundles.get(request.bundle_id)
            embeddings = core.embed_ids(list(request.sample_ids))
            return embed_response(embeddings, core.info.index, core.bundle_id)
        except CopurError as exc:
            abort_with(context, exc)

    def EmbedFeatures(
        self, request: party_pb2.EmbedFeaturesRequest, context: grpc.ServicerContext
    ) -> party_pb2.EmbedResponse:
        """The extractor of the bundle asked for on raw feature rows (INVALID_ARGUMENT for a wrong
        width, NaN or Inf)."""
        self._admit(context)
        try:
            core = self.bundles.get(request.bundle_id)
            x = array_from_proto(request.features, what="features")
            return embed_response(core.embed_features(x), core.info.index, core.bundle_id)
        except CopurError as exc:
            abort_with(context, exc)

    def Info(
        self, request: party_pb2.InfoRequest, context: grpc.ServicerContext
    ) -> party_pb2.PartyInfo:
        """Which party this is, the shapes it serves, its current bundle and every one it holds."""
        self._admit(context)
        return party_info_to_proto(self.bundles.info())


class PartyAdminServicer(party_pb2_grpc.PartyAdminServicer):
    """Loads and drops the bundles of the party holding ``bundles`` while it serves. With
    ``callers`` (mTLS) only those services may call (:func:`party_admin_callers`: never an
    adversary slot); None (plaintext, loopback only) admits every caller. A refused change is
    FAILED_PRECONDITION (a bundle not held, none left, no room) or INVALID_ARGUMENT (a bundle that
    cannot be loaded), one line, and changes nothing."""

    def __init__(self, bundles: HeldBundles, callers: frozenset[str] | None = None) -> None:
        self.bundles = bundles
        self.callers = callers

    def _admit(self, context: grpc.ServicerContext) -> None:
        _admit(context, self.callers, what=f"the admin of party {self.bundles.index}")

    def LoadBundle(
        self, request: party_pb2.LoadBundleRequest, context: grpc.ServicerContext
    ) -> party_pb2.BundleList:
        """Hold the bundle at ``request.path`` beside the current one (idempotent)."""
        self._admit(context)
        try:
            return bundle_list_to_proto(self.bundles.load(request.path))
        except CopurError as exc:
            abort_with(context, exc)

    def DropBundle(
        self, request: party_pb2.DropBundleRequest, context: grpc.ServicerContext
    ) -> party_pb2.BundleList:
        """Stop holding ``request.bundle_id``; the other one becomes current if it was."""
        self._admit(context)
        try:
            return bundle_list_to_proto(self.bundles.drop(request.bundle_id))
        except CopurError as exc:
            abort_with(context, exc)

    def ListBundles(
        self, request: party_pb2.ListBundlesRequest, context: grpc.ServicerContext
    ) -> party_pb2.BundleList:
        """The held bundles, current first."""
        self._admit(context)
        return bundle_list_to_proto(self.bundles.refs())


def party_callers(index: int) -> frozenset[str]:
    """Who may call party ``index`` under mTLS: the fusion center, its adversary slot, itself
    (probes)."""
    return frozenset({"fusion", f"adversary-{index}", f"party-{index}"})


def party_admin_callers(index: int) -> frozenset[str]:
    """Who may load and drop party ``index``'s bundles under mTLS: the fusion center and the party's
    own identity (operators' tools), never its adversary slot, which could otherwise drop the
    bundles of the party it sits in front of."""
    return frozenset({"fusion", f"party-{index}"})


class PartyApp:
    """A party gRPC server on ``host:port`` (port 0 picks a free one; see ``.port``), bound when
    built, serving PartyService and PartyAdmin from ``bundles`` (or from ``core`` alone, wrapped in
    a :class:`HeldBundles` of its own; give exactly one).

    With ``tls`` it serves mTLS only: a caller without a certificate signed by ``tls``'s CA is
    refused during the handshake, before any call reaches the party. None serves plaintext
    (in-process tests). Health answers SERVING from :meth:`start` until :meth:`stop`."""

    def __init__(
        self,
        *,
        core: PartyCore | None = None,
        bundles: HeldBundles | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsIdentity | None = None,
    ) -> None:
        if core is not None and bundles is not None:
            raise ValueError("PartyApp serves either one core or held bundles, not both")
        if bundles is None:
            if core is None:
                raise ValueError("PartyApp needs a core or held bundles")
            bundles = HeldBundles(
                core=core, index=core.info.index, data_dir=None, max_ids=core.max_ids
            )
        self.bundles = bundles
        self.tls = tls
        self.host = host
        index = bundles.index
        address = host_port(host, port)
        self.grpc = GrpcServer(
            name=f"party-{index}", address=address, services=[SERVICE, ADMIN_SERVICE], tls=tls
        )
        self.server, self.health, self.port = self.grpc.server, self.grpc.health, self.grpc.port
        callers = party_callers(index) if tls is not None else None
        admin_callers = party_admin_callers(index) if tls is not None else None
        party_pb2_grpc.add_PartyServiceServicer_to_server(
            PartyServicer(bundles, callers), self.server
        )
        party_pb2_grpc.add_PartyAdminServicer_to_server(
            PartyAdminServicer(bundles, admin_callers), self.server
        )

    @property
    def core(self) -> PartyCore:
        """The current bundle's core."""
        return self.bundles.current

    def start(self) -> PartyApp:
        """Serve calls, health SERVING; returns itself."""
        self.grpc.start().set_serving(True)
        core = self.bundles.current
        log.info(
            "event=party_ready party=%d name=%s bundle=%s address=%s tls=%s",
            core.info.index,
            core.info.name,
            core.bundle_id,
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
    """``copur party``: load party ``party`` of ``bundle`` (its first current bundle) and serve it
    until SIGINT / SIGTERM, then stop gracefully (mTLS with ``tls``, plaintext with None);
    PartyAdmin loads and drops further bundles meanwhile. A port that cannot be bound is a
    CopurError."""
    bundles = HeldBundles.from_bundle(bundle, party, data_dir=data_dir, max_ids=max_ids)
    run_until_signal(PartyApp(bundles=bundles, host=host, port=port, tls=tls))
