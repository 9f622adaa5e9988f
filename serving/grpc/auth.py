"""Bearer-token checks for the gRPC port, as a ``grpc.aio`` server interceptor.

Installed only when authentication is on. Each call is authorized once, before its
handler runs (a stream once, at its start), from its ``authorization`` metadata,
against the scope ``serving.auth.OPERATION_SCOPES`` names for the method. A refused
call is answered UNAUTHENTICATED or PERMISSION_DENIED through the front end's one
error table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from serving.auth import OPERATION_SCOPES, Authenticator, Scope
from serving.errors import SluiceError
from serving.grpc import grpc_service_pb2 as pb
from serving.grpc import sluice_admin_pb2
from serving.grpc.errors import status_for

__all__ = ["AuthInterceptor", "grpc_operation"]

_INFERENCE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
_HEALTH = "grpc.health.v1.Health"
_ADMIN = sluice_admin_pb2.DESCRIPTOR.services_by_name["SluiceAdmin"].full_name


def grpc_operation(method: str) -> str | None:
    """The operation of a full method name ("/package.Service/Method"); None if unknown."""
    service, _, name = method.lstrip("/").rpartition("/")
    if service in (_INFERENCE, _ADMIN):
        return name
    if service == _HEALTH:
        return "Health" + name
    return None


def _refusal(handler: grpc.RpcMethodHandler, exc: SluiceError) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that aborts with ``exc``."""
    code, message = status_for(exc.code), exc.message

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[bool(handler.request_streaming), bool(handler.response_streaming)]
    return make(  # type: ignore[no-any-return, operator]
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        operation = grpc_operation(details.method)  # type: ignore[attr-defined]
        needed: Scope | None = None
        if operation is not None:
            needed = OPERATION_SCOPES.get(operation, Scope.ADMIN)
            if needed is None:  # open: health and readiness
                return await continuation(details)
        authorization = None
        for key, value in details.invocation_metadata or ():  # type: ignore[attr-defined]
            if key == "authorization":
                authorization = value if isinstance(value, str) else value.decode("latin-1")
                break
        try:
            await self.authenticator.authorize(authorization, needed, operation or "")
        except SluiceError as exc:
            handler = await continuation(details)
            if handler is None:  # no such method: grpc answers UNIMPLEMENTED
                return handler
            return _refusal(handler, exc)
        return await continuation(details)
