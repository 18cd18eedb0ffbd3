"""The fusion center's bundle operations over gRPC (``copur.v1.FusionAdmin``, scope ``admin``): a
thin adapter over :class:`~copur.roles.fusion.bundles.BundleSet`, the twin of ``/v1/admin``.
Domain errors end the call with the status of the one mapping (FAILED_PRECONDITION for a state
that refuses it, NOT_FOUND for an unknown party, UNAVAILABLE for an unreachable one)."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc

from copur.errors import CopurError
from copur.roles.fusion.bundles import BundleSet
from copur.transport.grpcutil import grpc_status
from copur_client.serde import bundles_status_to_proto
from copur_client.v1 import fusion_pb2, fusion_pb2_grpc
from copur_client.wire import BundlesStatus

__all__ = ["SERVICE", "FusionAdminServicer", "add_admin_service"]

SERVICE = fusion_pb2.DESCRIPTOR.services_by_name["FusionAdmin"].full_name


class FusionAdminServicer(fusion_pb2_grpc.FusionAdminServicer):
    """FusionAdmin over ``bundles``; the bearer interceptor demands scope ``admin`` (every method
    not mapped to another scope needs it)."""

    def __init__(self, bundles: BundleSet) -> None:
        self.bundles = bundles

    async def _answer(
        self, op: Awaitable[BundlesStatus], context: grpc.aio.ServicerContext
    ) -> fusion_pb2.BundlesStatus:
        try:
            return bundles_status_to_proto(await op)
        except CopurError as exc:
            await context.abort(grpc_status(exc), str(exc))
            raise

    async def Bundles(
        self, request: fusion_pb2.BundlesRequest, context: grpc.aio.ServicerContext
    ) -> fusion_pb2.BundlesStatus:
        """The bundles held, the active one, the history and each party's bundles."""
        return bundles_status_to_proto(self.bundles.status())

    async def LoadBundle(
        self, request: fusion_pb2.BundlePathRequest, context: grpc.aio.ServicerContext
    ) -> fusion_pb2.BundlesStatus:
        """Load a bundle beside the active one."""
        return await self._answer(self.bundles.load(request.path), context)

    async def Activate(
        self, request: fusion_pb2.ActivateRequest, context: grpc.aio.ServicerContext
    ) -> fusion_pb2.BundlesStatus:
        """Switch to a held bundle once enough parties serve it."""
        op = self.bundles.activate(request.bundle_id, quorum=request.quorum, wait_s=request.wait_s)
        return await self._answer(op, context)

    async def DropBundle(
        self, request: fusion_pb2.BundleIdRequest, context: grpc.aio.ServicerContext
    ) -> fusion_pb2.BundlesStatus:
        """Drop a held bundle that is not the active one."""
        return await self._answer(self.bundles.drop(request.bundle_id), context)

    async def LoadPartyBundle(
        self, request: fusion_pb2.PartyBundleRequest, context: grpc.aio.ServicerContext
    ) -> fusion_pb2.BundlesStatus:
        """Relay LoadBundle to a party."""
        return await self._answer(self.bundles.relay_load(request.party, request.path), context)

    async def DropPartyBundle(
        self, request: fusion_pb2.PartyBundleRequest, context: grpc.aio.ServicerContext
    ) -> fusion_pb2.BundlesStatus:
        """Relay DropBundle to a party."""
        op = self.bundles.relay_drop(request.party, request.bundle_id)
        return await self._answer(op, context)


def add_admin_service(server: grpc.aio.Server, bundles: BundleSet) -> None:
    """Register FusionAdmin on ``server``."""
    fusion_pb2_grpc.add_FusionAdminServicer_to_server(FusionAdminServicer(bundles), server)
