"""The adversary's gRPC front: PartyService, a thin adapter over :class:`AdversaryCore` (each
refusal of the core becomes its status; the upstream's own status passes through unchanged)."""

from __future__ import annotations

import threading
from typing import Any, Final

import grpc

from copur.roles.adversary.proxy import (
    AdversaryCore,
    BadAnswer,
    CallerGone,
    CannotApply,
    Dropped,
    ProxyError,
    UpstreamFailed,
)
from copur.transport.grpcutil import abort
from copur_client.v1 import party_pb2, party_pb2_grpc

__all__ = ["SERVICE", "AdversaryServicer"]

SERVICE: Final = party_pb2.DESCRIPTOR.services_by_name["PartyService"].full_name

_STATUS: Final[dict[type[ProxyError], grpc.StatusCode]] = {
    CallerGone: grpc.StatusCode.CANCELLED,
    Dropped: grpc.StatusCode.UNAVAILABLE,
    BadAnswer: grpc.StatusCode.INTERNAL,
    CannotApply: grpc.StatusCode.FAILED_PRECONDITION,
}


def _status(exc: ProxyError) -> grpc.StatusCode:
    if isinstance(exc, UpstreamFailed):
        return grpc.StatusCode.__members__.get(exc.code, grpc.StatusCode.UNKNOWN)
    codes = (code for kind, code in _STATUS.items() if isinstance(exc, kind))
    return next(codes, grpc.StatusCode.INTERNAL)


class AdversaryServicer(party_pb2_grpc.PartyServiceServicer):
    """PartyService as the fusion center expects it from a party: every call forwarded by
    ``core``."""

    def __init__(self, core: AdversaryCore) -> None:
        self.core = core

    def _embed(self, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        gone = threading.Event()  # set when the call ends, the caller giving up included
        if not context.add_callback(gone.set):
            gone.set()
        try:
            return self.core.relay_embed(method, request, gone)
        except ProxyError as exc:
            abort(context, _status(exc), str(exc))

    def Embed(
        self,
        request: party_pb2.EmbedRequest,
        context: grpc.ServicerContext,
    ) -> party_pb2.EmbedResponse:
        """The upstream's blocks of the ids asked for, corrupted per the policy in force."""
        return self._embed("Embed", request, context)

    def EmbedFeatures(
        self, request: party_pb2.EmbedFeaturesRequest, context: grpc.ServicerContext
    ) -> party_pb2.EmbedResponse:
        """The upstream's extractor on raw feature rows, corrupted per the policy in force."""
        return self._embed("EmbedFeatures", request, context)

    def Info(
        self,
        request: party_pb2.InfoRequest,
        context: grpc.ServicerContext,
    ) -> party_pb2.PartyInfo:
        """The upstream's Info, unchanged."""
        try:
            return self.core.relay_info(request)
        except ProxyError as exc:
            abort(context, _status(exc), str(exc))
