"""One instance of a Python model, in its own process.

Started by ``serving.python_backend._runtime`` with the socket it talks on; loads
``model.py``, then answers ``execute`` messages one at a time until told to stop or
the server goes away. Two forms of model are served: Triton's ``TritonPythonModel``
(``initialize``/``execute``/``finalize``) and the plain form (a class with ``load``
and ``predict``, optional ``preprocess``/``postprocess``).
"""

from __future__ import annotations

import importlib.util
import inspect
import socket
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from serving.python_backend import triton_python_backend_utils as pb_utils
from serving.python_backend._channel import Arena, ArenaReader, ChannelClosed, receive, send

__all__ = ["main"]


def _load_module(path: Path) -> ModuleType:
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("model", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["model"] = module
    spec.loader.exec_module(module)
    return module


def _plain_class(module: ModuleType, wanted: str) -> type:
    if wanted:
        found = getattr(module, wanted, None)
        if not inspect.isclass(found):
            raise ImportError(f"model.py defines no class {wanted!r}")
        return found
    classes = [
        c
        for c in vars(module).values()
        if inspect.isclass(c) and c.__module__ == module.__name__ and hasattr(c, "predict")
    ]
    if len(classes) != 1:
        names = ", ".join(c.__name__ for c in classes) or "none"
        raise ImportError(
            "model.py must define TritonPythonModel, or exactly one class with predict() "
            f"(found: {names}); name one with the parameter sluice.python.class"
        )
    return classes[0]


def _summary(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _Served:
    """The loaded model, whichever form it has."""

    def __init__(self, module: ModuleType, args: dict[str, Any], class_name: str) -> None:
        self.triton = hasattr(module, "TritonPythonModel")
        if self.triton:
            self.model = module.TritonPythonModel()
            initialize = getattr(self.model, "initialize", None)
            if initialize is not None:
                initialize(args)
        else:
            self.model = _plain_class(module, class_name)()
            load = getattr(self.model, "load", None)
            if load is not None:
                load()

    def execute(
        self, requests: list[tuple[str, dict[str, np.ndarray], list[str], dict[str, Any]]]
    ) -> list[dict[str, Any] | str]:
        """Each request's outputs, or the message of the error that failed it."""
        if self.triton:
            return self._execute_triton(requests)
        results: list[dict[str, Any] | str] = []
        for _id, inputs, _outputs, _parameters in requests:
            try:
                data: Any = inputs
                if hasattr(self.model, "preprocess"):
                    data = self.model.preprocess(data)
                data = self.model.predict(data)
                if hasattr(self.model, "postprocess"):
                    data = self.model.postprocess(data)
                if not isinstance(data, dict):
                    raise TypeError(
                        f"predict must return a dict of arrays, not {type(data).__name__}"
                    )
                results.append({k: np.asarray(v) for k, v in data.items()})
            except Exception as exc:
                traceback.print_exc()
                results.append(f"model raised {_summary(exc)}")
        return results

    def _execute_triton(
        self, requests: list[tuple[str, dict[str, np.ndarray], list[str], dict[str, Any]]]
    ) -> list[dict[str, Any] | str]:
        objects = [
            pb_utils.InferenceRequest(
                requested_output_names=outputs,
                inputs=[pb_utils.Tensor(n, a) for n, a in inputs.items()],
                request_id=request_id,
                parameters=parameters,
            )
            for request_id, inputs, outputs, parameters in requests
        ]
        try:
            responses = self.model.execute(objects)
        except Exception as exc:
            traceback.print_exc()
            return [f"model raised {_summary(exc)}"] * len(requests)
        if not isinstance(responses, list | tuple) or len(responses) != len(requests):
            got = (
                len(responses) if isinstance(responses, list | tuple) else type(responses).__name__
            )
            return [f"execute returned {got} responses for {len(requests)} requests"] * len(
                requests
            )
        results: list[dict[str, Any] | str] = []
        for response in responses:
            if not isinstance(response, pb_utils.InferenceResponse):
                results.append(f"execute returned {type(response).__name__}, not InferenceResponse")
            elif response.has_error():
                error = response.error()
                results.append(error.message() if error is not None else "error")
            else:
                results.append({t.name(): t.as_numpy() for t in response.output_tensors()})
        return results

    def finalize(self) -> None:
        finalize = getattr(self.model, "finalize", None)
        if self.triton and finalize is not None:
            finalize()


class _Worker:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader: ArenaReader | None = None
        self.outgoing: Arena | None = None
        self.bls_out: Arena | None = None

    def run(self) -> None:
        init = receive(self.sock)
        directory = Path(init["directory"])
        self.reader = ArenaReader(directory)
        self.outgoing = Arena(directory, "resp")
        self.bls_out = Arena(directory, "blsin")
        try:
            module = _load_module(Path(init["model_file"]))
            served = _Served(module, init["args"], init.get("class", ""))
        except BaseException as exc:
            traceback.print_exc()
            send(self.sock, {"op": "failed", "message": f"loading model.py: {_summary(exc)}"})
            return
        send(self.sock, {"op": "ready", "form": "triton" if served.triton else "plain"})
        pb_utils._bls = self._bls
        try:
            while True:
                message = receive(self.sock)
                op = message.get("op")
                if op == "execute":
                    self._execute(served, message)
                elif op == "finalize":
                    break
        finally:
            try:
                served.finalize()
            finally:
                self.outgoing.close()
                self.bls_out.close()

    def _execute(self, served: _Served, message: dict[str, Any]) -> None:
        assert self.reader is not None and self.outgoing is not None
        requests = []
        for item, places in zip(message["requests"], message["places"], strict=True):
            inputs = self.reader.read(message["file"], places, copy=False)
            requests.append((item["id"], inputs, item["outputs"], item["parameters"]))
        results = served.execute(requests)
        outputs = [r if isinstance(r, dict) else {} for r in results]
        try:
            path, places = self.outgoing.write(outputs)
        except Exception as exc:
            traceback.print_exc()
            send(
                self.sock,
                {"op": "result", "errors": [f"bad output: {_summary(exc)}"] * len(results)},
            )
            return
        errors = [r if isinstance(r, str) else None for r in results]
        send(self.sock, {"op": "result", "file": path, "places": places, "errors": errors})

    def _bls(self, request: pb_utils.InferenceRequest) -> pb_utils.InferenceResponse:
        assert self.bls_out is not None and self.reader is not None
        inputs = {t.name(): t.as_numpy() for t in request.inputs()}
        path, places = self.bls_out.write([inputs])
        version = "" if request.model_version in (-1, None, "") else str(request.model_version)
        send(
            self.sock,
            {
                "op": "bls",
                "model": request.model_name,
                "version": version,
                "outputs": request.requested_output_names(),
                "file": path,
                "places": places[0],
            },
        )
        answer = receive(self.sock)
        if answer.get("error"):
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(answer["error"]))
        tensors = self.reader.read(answer["file"], answer["places"], copy=True)
        return pb_utils.InferenceResponse([pb_utils.Tensor(n, a) for n, a in tensors.items()])


def main(fd: int) -> None:
    pb_utils._install()
    sock = socket.socket(fileno=fd)
    try:
        _Worker(sock).run()
    except ChannelClosed:
        pass  # the server went away: nothing left to answer
    finally:
        sock.close()
