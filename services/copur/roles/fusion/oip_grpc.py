"""The Open Inference Protocol v2 over gRPC: ``inference.GRPCInferenceService`` (the KServe
``grpc_predict_v2.proto``, what ``tritonclient.grpc`` calls), a thin adapter over
:mod:`copur.roles.fusion.oip` and the handler, served beside FusionService on the fusion center's
one asyncio gRPC server (:func:`copur.roles.fusion.grpc_api.fusion_grpc_server`).

ServerLive, ServerReady and ModelReady are open (probes carry no key); ServerMetadata,
ModelMetadata and ModelInfer need scope ``predict`` (:data:`SCOPES`). A domain error ends the call
with the status of the one mapping (:func:`copur.transport.grpcutil.grpc_status`) and its one-line
message; a message whose tensor contents contradict themselves is INVALID_ARGUMENT. Outputs are
always raw little-endian bytes in ``raw_output_contents`` (what tritonclient reads)."""

from __future__ import annotations

import time
from typing import Final

import grpc

from copur.errors import CopurError
from copur.roles.fusion.handler import FusionHandler
from copur.roles.fusion.oip import OipModel, infer_response, parse_infer, server_metadata
from copur.transport.auth.keys import Scope
from copur.transport.grpcutil import InvalidRequest, grpc_status
from copur_client.oip import grpc_predict_v2_pb2 as oip_pb2
from copur_client.oip import grpc_predict_v2_pb2_grpc as oip_pb2_grpc
from copur_client.serde import (
    oip_infer_request_from_proto,
    oip_infer_response_to_proto,
    oip_model_metadata_to_proto,
    oip_model_ready_to_proto,
    oip_model_ref_from_proto,
    oip_server_live_to_proto,
    oip_server_metadata_to_proto,
    oip_server_ready_to_proto,
)
from copur_client.wire import WireError

__all__ = ["OPEN_METHODS", "SCOPES", "SERVICE", "TRANSPORT", "OipServicer", "add_oip_service"]

SERVICE: Final = oip_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
"""``inference.GRPCInferenceService``: for health, reflection and the method paths."""
TRANSPORT: Final = "grpc-v2"
"""The ``transport`` label of the request metrics of ModelInfer."""
OPEN_METHODS: Final = tuple(f"/{SERVICE}/{m}" for m in ("ServerLive", "ServerReady", "ModelReady"))
"""The methods that need no key (probes)."""
SCOPES: Final[dict[str, Scope]] = {
    f"/{SERVICE}/{m}": "predict" for m in ("ServerMetadata", "ModelMetadata", "ModelInfer")
}
"""The scope each guarded method needs."""


class OipServicer(oip_pb2_grpc.GRPCInferenceServiceServicer):
    """GRPCInferenceService over ``handler``: the model of its active bundle, every ModelInfer
    counted and timed (transport :data:`TRANSPORT`)."""

    def __init__(self, handler: FusionHandler) -> None:
        self.handler = handler

    @property
    def model(self) -> OipModel:
        """The model of the bundle active now (its version: the bundle's id)."""
        return self.handler.oip_model()

    async def ServerLive(
        self, request: oip_pb2.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> oip_pb2.ServerLiveResponse:
        """Live: the server answers."""
        return oip_server_live_to_proto(True)

    async def ServerReady(
        self, request: oip_pb2.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> oip_pb2.ServerReadyResponse:
        """Ready: enough parties answer (``handler.ready``)."""
        return oip_server_ready_to_proto(self.handler.ready)

    async def ModelReady(
        self, request: oip_pb2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> oip_pb2.ModelReadyResponse:
        """The model is ready when the server is; NOT_FOUND for another model or version."""
        try:
            self.model.check(*oip_model_ref_from_proto(request))
        except CopurError as exc:
            await context.abort(grpc_status(exc), str(exc))
            raise
        return oip_model_ready_to_proto(self.handler.ready)

    async def ServerMetadata(
        self, request: oip_pb2.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> oip_pb2.ServerMetadataResponse:
        """The server's name, version and extensions."""
        return oip_server_metadata_to_proto(server_metadata())

    async def ModelMetadata(
        self, request: oip_pb2.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> oip_pb2.ModelMetadataResponse:
        """The model's inputs and outputs; NOT_FOUND for another model or version."""
        try:
            self.model.check(*oip_model_ref_from_proto(request))
        except CopurError as exc:
            await context.abort(grpc_status(exc), str(exc))
            raise
        return oip_model_metadata_to_proto(self.model.metadata())

    async def ModelInfer(
        self, request: oip_pb2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> oip_pb2.ModelInferResponse:
        """The handler's predictions for the request's sample ids as the asked outputs."""
        started = time.perf_counter()
        defense = "invalid"
        try:
            try:
                decoded = oip_infer_request_from_proto(request)
            except WireError as exc:
                raise InvalidRequest(str(exc)) from None
            query = parse_infer(decoded, self.model)
            defense = query.defense or self.model.default_defense
            preds = await self.handler.predict(query.sample_ids, query.defense, query.certify)
        except CopurError as exc:
            self.handler.observe(TRANSPORT, defense, grpc_status(exc).name, started)
            await context.abort(grpc_status(exc), str(exc))
            raise
        except Exception:  # a bug: counted as the INTERNAL it becomes, for the error-rate alert
            self.handler.observe(TRANSPORT, defense, "INTERNAL", started)
            raise
        self.handler.observe(TRANSPORT, defense, "OK", started)
        return oip_infer_response_to_proto(infer_response(query, preds, self.model, all_raw=True))


def add_oip_service(server: grpc.aio.Server, handler: FusionHandler) -> None:
    """Register :class:`OipServicer` over ``handler`` on ``server`` (list :data:`SERVICE` for
    health and reflection, and guard it with :data:`SCOPES` and :data:`OPEN_METHODS`)."""
    oip_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(OipServicer(handler), server)
