"""The ``sluice.admin.SluiceAdmin`` servicer: Sluice's own admin operations over gRPC.

Each RPC is one core call, as in the inference servicer (``_rpc`` maps errors the same
way); the HTTP routes under ``/v2/models/{model}/traffic`` are the same calls.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from serving.core import InferenceCore
from serving.errors import InvalidArgument
from serving.grpc import sluice_admin_pb2 as pb
from serving.grpc import sluice_admin_pb2_grpc as pb_grpc
from serving.grpc._service import _rpc

__all__ = ["ADMIN_SERVICE", "AdminServicer", "add_admin_to_server"]

ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["SluiceAdmin"].full_name


def _traffic_response(shown: dict[str, Any]) -> pb.TrafficResponse:
    split = shown["split"]
    return pb.TrafficResponse(
        model=shown["model"],
        source=shown["source"],
        split=pb.TrafficSplit(
            traffic=split["traffic"], shadow=split["shadow"], sticky=split["sticky"]
        ),
        ready=shown["ready"],
        arms_json=json.dumps(shown["arms"], sort_keys=True),
    )


class AdminServicer(pb_grpc.SluiceAdminServicer):
    def __init__(self, core: InferenceCore) -> None:
        self.core = core

    @_rpc
    async def TrafficShow(self, request: pb.TrafficShowRequest, context: Any) -> Any:
        return _traffic_response(self.core.traffic_show(request.model))

    @_rpc
    async def TrafficSet(self, request: pb.TrafficSetRequest, context: Any) -> Any:
        body: dict[str, Any] = {}
        if not request.clear:
            body = {
                "traffic": dict(request.split.traffic),
                "shadow": dict(request.split.shadow),
                "sticky": request.split.sticky,
            }
        return _traffic_response(self.core.traffic_set(request.model, body))

    @_rpc
    async def RolloutStart(self, request: pb.RolloutRequest, context: Any) -> Any:
        try:
            spec = json.loads(request.spec_json or "{}")
        except ValueError as exc:
            raise InvalidArgument(f"spec_json is not JSON: {exc}") from None
        if not isinstance(spec, dict):
            raise InvalidArgument("spec_json must be a JSON object")
        status = await self.core.rollout_start(request.model, spec)
        return pb.RolloutResponse(status_json=json.dumps(status, sort_keys=True))

    @_rpc
    async def RolloutStatus(self, request: pb.RolloutRequest, context: Any) -> Any:
        status = self.core.rollout_status(request.model)
        return pb.RolloutResponse(status_json=json.dumps(status, sort_keys=True))

    @_rpc
    async def RolloutAbort(self, request: pb.RolloutRequest, context: Any) -> Any:
        status = await self.core.rollout_abort(request.model)
        return pb.RolloutResponse(status_json=json.dumps(status, sort_keys=True))


def add_admin_to_server(core: InferenceCore, server: grpc.aio.Server) -> None:
    pb_grpc.add_SluiceAdminServicer_to_server(AdminServicer(core), server)
