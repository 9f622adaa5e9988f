"""The HTTP/REST front end: Open Inference Protocol routes plus Triton's extensions.

Each handler translates the wire into one core call and the result back.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serving.core import InferenceCore
from serving.errors import InvalidArgument, SluiceError, Unsupported
from serving.http import request_codec, response_codec
from serving.http.infer_route import ASGIApp, InferRoute, error_parts, read_body

__all__ = ["create_app"]

log = logging.getLogger("sluice.http")

_HEADER_LENGTH = "inference-header-content-length"


def _error(status: int, message: str) -> Response:
    return Response(
        response_codec.encode_error(message), status_code=status, media_type="application/json"
    )


def _json(obj: Any, status: int = 200) -> Response:
    return JSONResponse(obj, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    return await read_body(request.receive, request.headers, limit)


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    body = await _read_body(request, limit)
    if not body.strip():
        return {}
    obj = request_codec.parse_json(body)
    if not isinstance(obj, dict):
        raise InvalidArgument("request body must be a JSON object")
    return obj


def create_app(core: InferenceCore) -> ASGIApp:
    limit = core.settings.max_request_bytes

    async def live(request: Request) -> Response:
        ok = core.live()
        return _json({"live": ok}, 200 if ok else 503)

    async def ready(request: Request) -> Response:
        ok = core.ready()
        return _json({"ready": ok}, 200 if ok else 503)

    async def server_metadata(request: Request) -> Response:
        return _json(core.server_metadata())

    def _mv(request: Request) -> tuple[str, str]:
        p = request.path_params
        return p["model"], p.get("version", "")

    async def model_metadata(request: Request) -> Response:
        return _json(core.model_metadata(*_mv(request)))

    async def model_ready(request: Request) -> Response:
        name, version = _mv(request)
        ok = core.model_ready(name, version)
        return _json({"name": name, "ready": ok}, 200 if ok else 503)

    async def model_config(request: Request) -> Response:
        return _json(core.model_config(*_mv(request)))

    async def model_stats(request: Request) -> Response:
        p = request.path_params
        return _json(core.model_statistics(p.get("model", ""), p.get("version", "")))

    async def repository_index(request: Request) -> Response:
        body = await _json_body(request, limit)
        ready_only = body.get("ready", False)
        if not isinstance(ready_only, bool):
            raise InvalidArgument("'ready' must be a boolean")
        return _json(core.repository_index(ready_only))

    async def repository_load(request: Request) -> Response:
        name = request.path_params["model"]
        body = await _json_body(request, limit)
        params = body.get("parameters", {})
        if not isinstance(params, dict):
            raise InvalidArgument("'parameters' must be an object")
        await core.load_model(name, params)
        return Response(status_code=200)

    async def repository_unload(request: Request) -> Response:
        name = request.path_params["model"]
        await _json_body(request, limit)
        await core.unload_model(name)
        return Response(status_code=200)

    async def shm_status(request: Request) -> Response:
        return _json(core.shm_status(request.path_params.get("name", "")))

    async def shm_register(request: Request) -> Response:
        name = request.path_params["name"]
        body = await _json_body(request, limit)
        key = body.get("key")
        if not isinstance(key, str) or not key:
            raise InvalidArgument("'key' must be a non-empty string")
        offset, size = body.get("offset", 0), body.get("byte_size")
        for field, value in (("offset", offset), ("byte_size", size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgument(f"'{field}' must be an integer, got {value!r}")
        core.shm_register(name, key, int(offset), int(size or 0))
        return Response(status_code=200)

    async def shm_unregister(request: Request) -> Response:
        await _json_body(request, limit)
        core.shm_unregister(request.path_params.get("name", ""))
        return Response(status_code=200)

    async def traffic_show(request: Request) -> Response:
        return _json(core.traffic_show(request.path_params["model"]))

    async def traffic_set(request: Request) -> Response:
        body = await _json_body(request, limit)
        return _json(core.traffic_set(request.path_params["model"], body))

    async def rollout_status(request: Request) -> Response:
        return _json(core.rollout_status(request.path_params["model"]))

    async def rollout_start(request: Request) -> Response:
        body = await _json_body(request, limit)
        return _json(await core.rollout_start(request.path_params["model"], body))

    async def rollout_abort(request: Request) -> Response:
        await _json_body(request, limit)
        return _json(await core.rollout_abort(request.path_params["model"]))

    async def cuda_shm(request: Request) -> Response:
        raise Unsupported("CUDA shared memory is not supported by this server")

    async def sluice_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SluiceError)
        status, body, headers = error_parts(exc)
        response = Response(body, status_code=status, media_type="application/json")
        for key, value in headers:
            response.headers[key.decode()] = value.decode()
        return response

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return _error(404, f"no route for {request.method} {request.url.path}")
        if exc.status_code == 405:
            return _error(405, f"method {request.method} is not allowed on {request.url.path}")
        return _error(exc.status_code, str(exc.detail))

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    m = "/v2/models/{model}"
    mv = m + "/versions/{version}"
    shm = "/v2/systemsharedmemory"
    routes = [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/models/stats", model_stats, methods=["GET"]),
        Route(m, model_metadata, methods=["GET"]),
        Route(mv, model_metadata, methods=["GET"]),
        Route(m + "/ready", model_ready, methods=["GET"]),
        Route(mv + "/ready", model_ready, methods=["GET"]),
        Route(m + "/config", model_config, methods=["GET"]),
        Route(mv + "/config", model_config, methods=["GET"]),
        Route(m + "/stats", model_stats, methods=["GET"]),
        Route(mv + "/stats", model_stats, methods=["GET"]),
        Route(m + "/traffic", traffic_show, methods=["GET"]),
        Route(m + "/traffic", traffic_set, methods=["POST"]),
        Route(m + "/rollout", rollout_status, methods=["GET"]),
        Route(m + "/rollout", rollout_start, methods=["POST"]),
        Route(m + "/rollout/abort", rollout_abort, methods=["POST"]),
        Route("/v2/repository/index", repository_index, methods=["POST"]),
        Route("/v2/repository/models/{model}/load", repository_load, methods=["POST"]),
        Route("/v2/repository/models/{model}/unload", repository_unload, methods=["POST"]),
        Route(shm + "/status", shm_status, methods=["GET"]),
        Route(shm + "/region/{name}/status", shm_status, methods=["GET"]),
        Route(shm + "/region/{name}/register", shm_register, methods=["POST"]),
        Route(shm + "/unregister", shm_unregister, methods=["POST"]),
        Route(shm + "/region/{name}/unregister", shm_unregister, methods=["POST"]),
        Route("/v2/cudasharedmemory/{rest:path}", cuda_shm, methods=["GET", "POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            SluiceError: sluice_error,
            HTTPException: http_error,
            Exception: internal_error,
        },
    )
    # Inference skips starlette's routing and middleware; see infer_route.py.
    return InferRoute(core, app)
