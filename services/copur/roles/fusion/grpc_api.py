"""gRPC front door (FusionService.Predict): a thin adapter over :class:`FusionHandler`."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from copur.errors import CopurError
from copur.roles.fusion.handler import FusionHandler
from copur.transport.auth.grpcauth import BearerInterceptor
from copur.transport.auth.guard import Authenticator
from copur.transport.grpcutil import MAX_MESSAGE_BYTES, grpc_status
from copur.transport.tls.credentials import TlsIdentity, add_port
from copur_client.serde import predict_request_from_proto, predictions_to_proto
from copur_client.v1 import fusion_pb2, fusion_pb2_grpc

__all__ = ["FusionServicer", "create_grpc_server", "mark_serving"]

SERVICE = fusion_pb2.DESCRIPTOR.services_by_name["FusionService"].full_name


class FusionServicer(fusion_pb2_grpc.FusionServiceServicer):
    def __init__(self, handler: FusionHandler) -> None:
        self.handler = handler

    async def Predict(
        self, request: fusion_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> fusion_pb2.PredictResponse:
        started = time.perf_counter()
        ids, defense, certify = predict_request_from_proto(request)
        label = defense or self.handler.node.default_defense
        try:
            preds = await self.handler.predict(ids, defense or None, certify)
        except CopurError as exc:
            self.handler.observe("grpc", label, grpc_status(exc).name, started)
            await context.abort(grpc_status(exc), str(exc))
            raise
        self.handler.observe("grpc", label, "OK", started)
        return predictions_to_proto(preds)


def create_grpc_server(
    handler: FusionHandler, address: str, tls: TlsIdentity | None = None, *, auth: Authenticator | None
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """An asyncio gRPC server with FusionService, grpc.health.v1 and reflection; returns the bound port (0
    when it cannot bind). With ``tls`` it serves mTLS only: callers must present a certificate signed by
    ``tls``'s CA (applications use the ``client`` key pair); None serves plaintext. ``auth``: Predict needs
    ``authorization: Bearer <key>`` metadata with scope ``predict`` (health and reflection stay open); None
    (``auth.mode: none``, loopback only) leaves it open. Keyword and required: never open by omission."""
    interceptors = [BearerInterceptor(auth, {f"/{SERVICE}/Predict": "predict"})] if auth is not None else []
    server = grpc.aio.server(
        interceptors=interceptors, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    )
    fusion_pb2_grpc.add_FusionServiceServicer_to_server(FusionServicer(handler), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE, reflection.SERVICE_NAME, health.SERVICE_NAME), server)
    port = add_port(server, address, tls)
    return server, port, health_servicer


async def mark_serving(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE):
        await health_servicer.set(name, status)
