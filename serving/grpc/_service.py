"""The ``inference.GRPCInferenceService`` servicer: each RPC is one core call.

Errors are Sluice errors mapped once (``serving.grpc.errors``); anything else is
logged and answered INTERNAL, and the server keeps serving. ``add_to_server``
registers it; every RPC decodes its own messages, so an undecodable unary request is
INVALID_ARGUMENT and one undecodable message is answered in the stream instead of ending it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

from serving.core import InferenceCore
from serving.errors import InvalidArgument, SluiceError, Unsupported
from serving.grpc import codec
from serving.grpc import grpc_service_pb2 as pb
from serving.grpc import grpc_service_pb2_grpc as pb_grpc
from serving.grpc.errors import status_for

__all__ = ["InferenceServicer", "add_to_server"]

log = logging.getLogger("sluice.grpc")

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_Handler = Callable[[Any, _Req, grpc.aio.ServicerContext], Awaitable[_Resp]]


def _message(exc: BaseException) -> str:
    if isinstance(exc, SluiceError):
        return exc.message
    return f"internal error: {type(exc).__name__}: {exc}"


def _stream_request(message: bytes | pb.ModelInferRequest) -> pb.ModelInferRequest:
    if isinstance(message, pb.ModelInferRequest):
        return message
    try:
        return pb.ModelInferRequest.FromString(message)
    except DecodeError as exc:
        raise InvalidArgument(f"cannot decode the ModelInferRequest: {exc}") from None


def _metadata(context: Any) -> dict[str, str] | None:
    """A call's text metadata, for a sticky traffic split routing on a header."""
    if context is None:
        return None
    pairs = context.invocation_metadata() or ()
    return {k.lower(): v for k, v in pairs if isinstance(v, str)}


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> NoReturn:
    """End the call: a Sluice error with its status code and message, anything else INTERNAL."""
    if isinstance(exc, SluiceError):
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            context.set_trailing_metadata((("retry-after", f"{retry_after:g}"),))
        await context.abort(status_for(exc.code), exc.message)
    else:
        log.error("unexpected error in %s", method, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, _message(exc))
    raise AssertionError("unreachable: context.abort raises")


def _rpc(method: _Handler[_Req, _Resp]) -> _Handler[_Req, _Resp]:
    """Answer a Sluice error with its status code and message, anything else INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: _Req, context: grpc.aio.ServicerContext) -> _Resp:
        try:
            return await method(self, request, context)
        except Exception as exc:
            await _abort(context, exc, method.__name__)

    return wrapper


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: InferenceCore) -> None:
        self.core = core

    # -- health and metadata -----------------------------------------------

    @_rpc
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> Any:
        return pb.ServerLiveResponse(live=self.core.live())

    @_rpc
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.core.ready())

    @_rpc
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> Any:
        return pb.ModelReadyResponse(ready=self.core.model_ready(request.name, request.version))

    @_rpc
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> Any:
        meta = self.core.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    @_rpc
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> Any:
        return codec.encode_model_metadata(self.core.model_metadata(request.name, request.version))

    @_rpc
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> Any:
        config = self.core.model_config_message(request.name, request.version)
        return pb.ModelConfigResponse(config=config)

    @_rpc
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Any) -> Any:
        return codec.encode_statistics(self.core.model_statistics(request.name, request.version))

    # -- inference ---------------------------------------------------------

    async def _infer(
        self, request: pb.ModelInferRequest, context: Any = None
    ) -> pb.ModelInferResponse:
        infer_request = codec.decode_infer_request(request)
        metadata = _metadata(context) if self.core.wants_headers else None
        response = await self.core.infer(infer_request, metadata)
        return codec.encode_infer_response(response, infer_request)

    @_rpc
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> Any:
        return await self._infer(request, context)

    async def model_infer_wire(
        self, raw: bytes, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        """ModelInfer as ``add_to_server`` registers it: the hot RPC decodes, runs and
        answers in one coroutine (``ModelInfer`` through ``_decoding`` and ``_rpc`` is three)."""
        try:
            request = pb.ModelInferRequest.FromString(raw)
        except DecodeError as exc:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"cannot decode the ModelInferRequest: {exc}"
            )
        try:
            infer_request = codec.decode_infer_request(request)
            metadata = _metadata(context) if self.core.wants_headers else None
            response = await self.core.infer(infer_request, metadata)
            return codec.encode_infer_response(response, infer_request)
        except Exception as exc:
            await _abort(context, exc, "ModelInfer")

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterable[bytes | pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Requests run concurrently and are answered as they finish; a failed request,
        or a message that is no ``ModelInferRequest`` (``add_to_server`` hands the
        messages over undecoded), answers ``error_message`` and the stream carries on."""
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()

        async def answer(message: bytes | pb.ModelInferRequest) -> None:
            request = pb.ModelInferRequest()
            try:
                request = _stream_request(message)
                result = pb.ModelStreamInferResponse(
                    infer_response=await self._infer(request, context)
                )
            except Exception as exc:
                if not isinstance(exc, SluiceError):
                    log.exception("unexpected error in ModelStreamInfer")
                result = pb.ModelStreamInferResponse(error_message=_message(exc))
                result.infer_response.model_name = request.model_name
                result.infer_response.model_version = request.model_version
                result.infer_response.id = request.id
            await answers.put(result)

        async def read() -> None:
            try:
                async for message in request_iterator:
                    task = asyncio.create_task(answer(message))
                    running.add(task)
                    task.add_done_callback(running.discard)
                while running:
                    await asyncio.gather(*list(running), return_exceptions=True)
            finally:
                await answers.put(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await answers.get()) is not None:
                yield item
            await reader  # surfaces a broken request stream
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()

    # -- repository --------------------------------------------------------

    @_rpc
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> Any:
        msg = pb.RepositoryIndexResponse()
        for entry in self.core.repository_index(request.ready):
            msg.models.add(
                name=entry.get("name", ""),
                version=str(entry.get("version", "")),
                state=entry.get("state", ""),
                reason=entry.get("reason", ""),
            )
        return msg

    @_rpc
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> Any:
        parameters = codec.parameters_to_dict(request.parameters)
        await self.core.load_model(request.model_name, parameters)
        return pb.RepositoryModelLoadResponse()

    @_rpc
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> Any:
        await self.core.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    # -- system shared memory ----------------------------------------------

    @_rpc
    async def SystemSharedMemoryStatus(
        self, request: pb.SystemSharedMemoryStatusRequest, context: Any
    ) -> Any:
        msg = pb.SystemSharedMemoryStatusResponse()
        for region in self.core.shm_status(request.name):
            msg.regions[region["name"]].CopyFrom(
                pb.SystemSharedMemoryStatusResponse.RegionStatus(**region)
            )
        return msg

    @_rpc
    async def SystemSharedMemoryRegister(
        self, request: pb.SystemSharedMemoryRegisterRequest, context: Any
    ) -> Any:
        self.core.shm_register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    @_rpc
    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: Any
    ) -> Any:
        self.core.shm_unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    # -- declared by the protocol, not served --------------------------------

    @_rpc
    async def CudaSharedMemoryStatus(self, request: Any, context: Any) -> Any:
        raise Unsupported("CUDA shared memory is not supported by this server")

    CudaSharedMemoryRegister = CudaSharedMemoryStatus
    CudaSharedMemoryUnregister = CudaSharedMemoryStatus

    @_rpc
    async def TraceSetting(self, request: Any, context: Any) -> Any:
        raise Unsupported("trace settings are not supported by this server")

    @_rpc
    async def LogSettings(self, request: Any, context: Any) -> Any:
        raise Unsupported("log settings are not supported by this server")


_HANDLER_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
# grpcio ends a whole stream with UNKNOWN when one message fails to deserialize,
# before the servicer sees it: these methods take each message's bytes instead.
_UNDECODED = frozenset({"ModelStreamInfer"})


def _decoding(handler: Callable[[Any, Any], Awaitable[Any]], request_class: Any) -> Any:
    """A unary handler that decodes its own request, so bytes that are no message of its
    type are INVALID_ARGUMENT with the reason (grpcio's own deserializer answers UNKNOWN)."""

    @functools.wraps(handler)
    async def call(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            request = request_class.FromString(raw)
        except DecodeError as exc:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"cannot decode the {request_class.DESCRIPTOR.name}: {exc}",
            )
        return await handler(request, context)

    return call


def _message_class(type_name: str) -> Any:
    """The class in ``pb`` of a type name such as ``.inference.ModelInferRequest``."""
    return getattr(pb, type_name.rpartition(".")[2])


def add_to_server(servicer: InferenceServicer, server: grpc.aio.Server) -> None:
    """Register ``servicer`` as the generated ``add_GRPCInferenceServiceServicer_to_server``
    does, except that ModelStreamInfer receives its messages undecoded."""
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    methods = descriptor_pb2.ServiceDescriptorProto()
    service.CopyToProto(methods)  # older runtimes' descriptors do not say which methods stream
    handlers = {}
    for method in methods.method:
        make = _HANDLER_KINDS[method.client_streaming, method.server_streaming]
        request, response = _message_class(method.input_type), _message_class(method.output_type)
        handler = getattr(servicer, method.name)
        if method.name == "ModelInfer":
            handler = servicer.model_infer_wire
        elif not method.client_streaming:
            handler = _decoding(handler, request)
        handlers[method.name] = make(
            handler,
            request_deserializer=None
            if method.name in _UNDECODED or not method.client_streaming
            else request.FromString,
            response_serializer=response.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
