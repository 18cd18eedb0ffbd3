"""gRPC front door (FusionService.Predict): a thin adapter over :class:`FusionHandler`, served by
the one asyncio builder (:class:`~copur.transport.grpc_server.AioGrpcServer`)."""

from __future__ import annotations

import time

import grpc

from copur.errors import CopurError
from copur.roles.fusion import admin_grpc, oip_grpc
from copur.roles.fusion.handler import FusionHandler
from copur.transport.auth.grpcauth import BearerInterceptor
from copur.transport.auth.guard import Authenticator
from copur.transport.auth.keys import Scope
from copur.transport.grpc_server import AioGrpcServer
from copur.transport.grpcutil import grpc_status
from copur.transport.tls.credentials import TlsIdentity
from copur_client.serde import predict_request_from_proto, predictions_to_proto
from copur_client.v1 import fusion_pb2, fusion_pb2_grpc

__all__ = ["FusionServicer", "fusion_grpc_server"]

SERVICE = fusion_pb2.DESCRIPTOR.services_by_name["FusionService"].full_name


class FusionServicer(fusion_pb2_grpc.FusionServiceServicer):
    """FusionService over ``handler``: every call is counted and timed (transport ``grpc``), and a
    domain error ends the call with the status of the one mapping and its one-line message."""

    def __init__(self, handler: FusionHandler) -> None:
        self.handler = handler

    async def Predict(
        self, request: fusion_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> fusion_pb2.PredictResponse:
        """The handler's predictions for the request's sample ids, in request order."""
        started = time.perf_counter()
        ids, defense, certify = predict_request_from_proto(request)
        label = defense or self.handler.node.default_defense
        try:
            preds = await self.handler.predict(ids, defense or None, certify)
        except CopurError as exc:
            self.handler.observe("grpc", label, grpc_status(exc).name, started)
            await context.abort(grpc_status(exc), str(exc))
            raise
        except Exception:  # a bug: counted as the INTERNAL it becomes, for the error-rate alert
            self.handler.observe("grpc", label, "INTERNAL", started)
            raise
        self.handler.observe("grpc", label, "OK", started)
        return predictions_to_proto(preds)


def fusion_grpc_server(
    handler: FusionHandler,
    address: str,
    tls: TlsIdentity | None = None,
    *,
    auth: Authenticator | None,
) -> AioGrpcServer:
    """The fusion center's asyncio gRPC server on ``address`` (bound; CopurError when it cannot be):
    FusionService, the Open Inference Protocol's ``inference.GRPCInferenceService``
    (:mod:`copur.roles.fusion.oip_grpc`), health (NOT_SERVING until told) and reflection. With
    ``tls`` it serves mTLS only: callers must present a certificate signed by ``tls``'s CA
    (applications use the ``client`` key pair); None serves plaintext. ``auth``: Predict,
    ModelInfer and the two metadata methods need ``authorization: Bearer <key>`` metadata with
    scope ``predict`` (health, reflection, ServerLive, ServerReady and ModelReady stay open), the
    bundle operations of ``FusionAdmin`` scope ``admin``; None
    (``auth.mode: none``, loopback only) leaves it open. Keyword and required: never open by
    omission."""
    scopes: dict[str, Scope] = {f"/{SERVICE}/Predict": "predict", **oip_grpc.SCOPES}
    interceptors = (
        [BearerInterceptor(auth, scopes, open_methods=oip_grpc.OPEN_METHODS)]
        if auth is not None
        else []
    )
    server = AioGrpcServer(
        name="fusion",
        address=address,
        services=[SERVICE, oip_grpc.SERVICE, admin_grpc.SERVICE],
        tls=tls,
        interceptors=interceptors,
    )
    fusion_pb2_grpc.add_FusionServiceServicer_to_server(FusionServicer(handler), server.server)
    oip_grpc.add_oip_service(server.server, handler)
    admin_grpc.add_admin_service(server.server, handler.bundles)
    return server
