"""The server's side of a Python model: one worker process per instance.

``PythonRuntime`` is a ``serving.model.Runtime``: the scheduler calls ``run`` (one
request) or ``run_each`` (a dynamic batch, handed to ``execute`` as its requests)
from a worker thread. An instance that crashes, or whose ``execute`` outlives the
model's timeout, is killed and restarted in the background; the requests it held
fail with an error saying so, and the other instances (and models) keep serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.backends import BackendContext
from serving.errors import InternalError, InvalidArgument, SluiceError, Unavailable
from serving.python_backend._channel import (
    Arena,
    ArenaReader,
    ChannelClosed,
    ChannelTimeout,
    receive,
    send,
)

__all__ = ["PythonRuntime"]

log = logging.getLogger("sluice.python")

_DEFAULT_EXECUTE_TIMEOUT_SECS = 60.0
_DEFAULT_LOAD_TIMEOUT_SECS = 300.0
_DEFAULT_MAX_START_FAILURES = 5
# Request parameters Triton consumes itself and does not hand to execute.
_TRITON_OWN_PARAMETERS = frozenset(
    {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "binary_data_output"}
)
_STOP_GRACE_SECS = 5.0
_BOOTSTRAP = (
    "import json, os, sys; sys.path.extend(json.loads(os.environ.pop('SLUICE_WORKER_PATH')));"
    "from serving.python_backend._worker import main; main(int(sys.argv[1]))"
)


def _shm_directory() -> Path:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="sluice-python-", dir=base))


def _request_item(inputs: Mapping[str, Any], output_names: Sequence[str]) -> dict[str, Any]:
    """What ``execute`` learns of one request beside its tensors: its id and the
    parameters Triton would pass on (``serving.backends.RequestInputs`` carries them)."""
    parameters = getattr(inputs, "parameters", None) or {}
    return {
        "id": str(getattr(inputs, "request_id", "") or ""),
        "outputs": list(output_names),
        "parameters": {k: v for k, v in parameters.items() if k not in _TRITON_OWN_PARAMETERS},
    }


def _exit_description(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class _Instance:
    """One worker process and its channel."""

    def __init__(self, runtime: PythonRuntime, index: int) -> None:
        self.runtime = runtime
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.requests = Arena(runtime.directory, f"req{index}")
        self.bls_answers = Arena(runtime.directory, f"blsout{index}")
        self.reader = ArenaReader(runtime.directory)

    @property
    def label(self) -> str:
        return f"model '{self.runtime.name}' instance {self.index}"

    def start(self) -> None:
        """Start the process, load model.py in it; raise InvalidArgument when it fails."""
        rt = self.runtime
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["SLUICE_WORKER_PATH"] = rt.worker_path
        try:
            self.proc = subprocess.Popen(
                [str(rt.python), "-c", _BOOTSTRAP, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=env,
                cwd=str(rt.model_file.parent),
            )
        finally:
            theirs.close()
        self.sock = ours
        send(ours, {**rt.init_message, "args": {**rt.args, "model_instance_name": self.label}})
        try:
            reply = receive(ours, time.monotonic() + rt.load_timeout)
        except (ChannelClosed, ChannelTimeout):
            code = self._reap()
            raise InvalidArgument(
                f"{self.label}: the worker process {_exit_description(code)} while loading "
                "model.py (its output is in the server log)"
            ) from None
        if reply.get("op") != "ready":
            self._reap()
            raise InvalidArgument(f"{self.label}: {reply.get('message', 'failed to load')}")

    def execute(
        self, requests: Sequence[Mapping[str, np.ndarray]], output_names: Sequence[str]
    ) -> list[dict[str, np.ndarray] | BaseException]:
        rt = self.runtime
        assert self.sock is not None
        path, places = self.requests.write(requests)
        items = [_request_item(r, output_names) for r in requests]
        send(self.sock, {"op": "execute", "file": path, "places": places, "requests": items})
        deadline = time.monotonic() + rt.execute_timeout
        while True:
            message = receive(self.sock, deadline)
            if message.get("op") == "bls":
                self._answer_bls(message, deadline)
                continue
            break
        results: list[dict[str, np.ndarray] | BaseException] = []
        for index, error in enumerate(message["errors"]):
            if error is not None:
                results.append(InternalError(f"model '{rt.name}': {error}"))
                continue
            outputs = self.reader.read(message["file"], message["places"][index], copy=True)
            try:
                results.append(rt.check_outputs(outputs, output_names))
            except SluiceError as exc:
                results.append(exc)
        return results

    def _answer_bls(self, message: dict[str, Any], deadline: float) -> None:
        """Run a model's ``InferenceRequest(...).exec()`` on this server and answer it."""
        from serving.datatypes import by_numpy
        from serving.types import InferInput, InferRequest, RequestedOutput

        assert self.sock is not None
        rt = self.runtime
        context = rt.context
        try:
            if context.models is None or context.loop is None:
                raise Unavailable("calls to other models (BLS) are not available here")
            inputs = self.reader.read(message["file"], message["places"], copy=True)
            name, version = str(message["model"]), str(message["version"])
            target = context.models(name, version)
            request = InferRequest(
                model_name=name,
                model_version=version,
                inputs=tuple(
                    InferInput(n, by_numpy(a.dtype).name, tuple(a.shape), a)
                    for n, a in inputs.items()
                ),
                outputs=tuple(RequestedOutput(o) for o in message["outputs"]),
            )
            future = asyncio.run_coroutine_threadsafe(target.infer(request), context.loop)
            try:
                response = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                future.cancel()
                raise Unavailable(f"the call to model '{name}' did not finish in time") from None
            path, places = self.bls_answers.write([{o.name: o.data for o in response.outputs}])
            send(self.sock, {"op": "bls_result", "file": path, "places": places[0]})
        except SluiceError as exc:
            send(self.sock, {"op": "bls_result", "error": exc.message})
        except (ChannelClosed, ChannelTimeout):
            raise
        except Exception as exc:
            send(self.sock, {"op": "bls_result", "error": f"{type(exc).__name__}: {exc}"})

    def _reap(self) -> int | None:
        """Kill the process (if it still runs) and return how it ended."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        return proc.wait()

    def stop(self) -> None:
        if self.sock is not None and self.proc is not None and self.proc.poll() is None:
            try:
                send(self.sock, {"op": "finalize"})
                self.proc.wait(_STOP_GRACE_SECS)
            except (ChannelClosed, subprocess.TimeoutExpired):
                pass
        self._reap()
        self.requests.close()
        self.bls_answers.close()


class PythonRuntime:
    """``instance_group`` count worker processes running one ``model.py``."""

    inline = False  # executions block on another process: never on the event loop
    takes_request = True  # execute sees each request's id and parameters
    providers = ["python"]

    def __init__(
        self,
        model_file: Path,
        config: Any,
        context: BackendContext,
        python: Path,
        parameters: Mapping[str, str],
    ) -> None:
        from serving.config import config_to_json
        from serving.model import tensor_specs

        self.name = context.name
        self.context = context
        self.model_file = model_file
        self.python = python
        self.parameters = dict(parameters)
        self.instances = max(1, sum(g.count or 1 for g in config.instance_group) or 1)
        params = {k: p.string_value for k, p in config.parameters.items()}
        self.execute_timeout = _seconds(
            params, "sluice.python.execute_timeout_secs", _DEFAULT_EXECUTE_TIMEOUT_SECS
        )
        self.load_timeout = _seconds(
            params, "sluice.python.load_timeout_secs", _DEFAULT_LOAD_TIMEOUT_SECS
        )
        self.max_start_failures = _count(
            params, "sluice.python.max_start_failures", _DEFAULT_MAX_START_FAILURES
        )
        self.failure = ""  # why this version serves no more (its instances do not start)
        self._outputs = {s.name: s for s in tensor_specs(config.output)}
        import json

        model_dir = model_file.parent.parent
        self.args = {
            "model_config": json.dumps(config_to_json(config)),
            "model_instance_kind": "CPU",
            "model_instance_device_id": "0",
            "model_repository": str(model_dir),
            "model_version": str(context.version),
            "model_name": context.name,
        }
        root = str(Path(__file__).resolve().parents[2])
        self.worker_path = json.dumps([root, *(p for p in sys.path if p)])
        self.directory = _shm_directory()
        self.init_message = {
            "directory": str(self.directory),
            "model_file": str(model_file),
            "class": params.get("sluice.python.class", ""),
        }
        self._idle: queue.SimpleQueue[_Instance] = queue.SimpleQueue()
        self._closed = False
        self._all: list[_Instance] = []
        try:
            for index in range(self.instances):
                instance = _Instance(self, index)
                self._all.append(instance)
                instance.start()
                self._idle.put(instance)
        except BaseException:
            self.close()
            raise

    def check_outputs(
        self, outputs: dict[str, np.ndarray], wanted: Sequence[str]
    ) -> dict[str, np.ndarray]:
        for name in wanted:
            array = outputs.get(name)
            if array is None:
                raise InternalError(f"model '{self.name}' did not return output '{name}'")
            spec = self._outputs.get(name)
            if spec is None:
                continue
            if spec.datatype.is_bytes:
                if array.dtype != object:
                    raise InternalError(
                        f"model '{self.name}' returned output '{name}' as {array.dtype}; "
                        "its config says TYPE_STRING"
                    )
            elif array.dtype != spec.datatype.numpy:
                raise InternalError(
                    f"model '{self.name}' returned output '{name}' as {array.dtype}; its "
                    f"config says {spec.datatype.config_name}"
                )
        return outputs

    def run(
        self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        names = list(output_names) if output_names else list(self._outputs)
        (result,) = self.run_each([inputs], names)
        if isinstance(result, BaseException):
            raise result
        return result

    def run_each(
        self, requests: Sequence[Mapping[str, np.ndarray]], output_names: Sequence[str]
    ) -> list[dict[str, np.ndarray] | BaseException]:
        """Hand ``requests`` to one instance's ``execute`` as one batch."""
        if self.failure:
            raise Unavailable(self.failure)
        if self._closed:
            raise Unavailable(f"model '{self.name}' is unloaded")
        try:
            instance = self._idle.get(timeout=self.execute_timeout)
        except queue.Empty:
            if self.failure:
                raise Unavailable(self.failure) from None
            raise Unavailable(
                f"model '{self.name}': no instance became free within "
                f"{self.execute_timeout:g} s (instances are restarting)"
            ) from None
        try:
            results = instance.execute(requests, output_names)
        except ChannelTimeout:
            self._restart(instance)
            raise Unavailable(
                f"model '{self.name}': execute did not finish within its timeout of "
                f"{self.execute_timeout:g} s (sluice.python.execute_timeout_secs); instance "
                f"{instance.index} was killed and is restarting"
            ) from None
        except ChannelClosed:
            code = instance._reap()
            self._restart(instance)
            raise Unavailable(
                f"model '{self.name}': the worker process of instance {instance.index} "
                f"{_exit_description(code)} during execute; it is restarting"
            ) from None
        self._idle.put(instance)
        return results

    def _restart(self, instance: _Instance) -> None:
        instance._reap()
        log.error("%s: restarting its worker process", instance.label)
        threading.Thread(
            target=self._restart_loop, args=(instance,), name="sluice-python-restart", daemon=True
        ).start()

    def _restart_loop(self, instance: _Instance) -> None:
        delay = 0.5
        failures = 0
        while not self._closed:
            try:
                instance.start()
            except SluiceError as exc:
                failures += 1
                log.error("%s failed to restart: %s", instance.label, exc.message)
                if failures >= self.max_start_failures:
                    self._fail(instance, failures, exc.message)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if self._closed:
                instance.stop()
                return
            log.info("%s restarted", instance.label)
            self._idle.put(instance)
            return

    def _fail(self, instance: _Instance, failures: int, reason: str) -> None:
        """Stop restarting: the version is failed, with the last start's reason."""
        self.failure = (
            f"model '{self.name}' version {self.context.version} failed: instance "
            f"{instance.index} could not be restarted ({failures} consecutive failed starts, "
            f"sluice.python.max_start_failures); the last: {reason}"
        )
        log.error("%s", self.failure)
        if self.context.failed is not None:
            self.context.failed(self, self.failure)

    def close(self) -> None:
        self._closed = True
        for instance in self._all:
            instance.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _count(params: Mapping[str, str], key: str, default: int) -> int:
    text = params.get(key)
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 1000:
        raise InvalidArgument(f"parameter {key} must be a whole number in [1, 1000], got {text!r}")
    return int(text)


def _seconds(params: Mapping[str, str], key: str, default: float) -> float:
    text = params.get(key)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(
            f"parameter {key} must be a number of seconds, got {text!r}"
        ) from None
    if not 0 < value <= 86_400:
        raise InvalidArgument(f"parameter {key} must be within (0, 86400] seconds, got {text!r}")
    return value
