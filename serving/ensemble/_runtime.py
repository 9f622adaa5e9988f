"""Running an ensemble: each step as soon as its inputs exist, independent ones at once.

A step is an inference request to the composing model's serving version, in process:
its tensors are the arrays the previous steps returned (no copies, no wire), and the
request goes through that model's own scheduler, so its dynamic batcher batches the
ensemble's requests with everyone else's and its statistics count them. A failing step
fails the ensemble's request with the step named.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.ensemble._graph import Step
from serving.errors import SluiceError, Unavailable
from serving.types import InferInput, InferRequest, RequestedOutput

if TYPE_CHECKING:
    from serving.model import ModelVersion

__all__ = ["EnsembleRuntime"]

# Ensemble executions that may wait on their steps at once (each holds a worker thread
# while its steps run on the event loop and in other threads).
MAX_INFLIGHT = 16


class EnsembleRuntime:
    inline = False  # an execution waits on other models: never on the event loop
    takes_request = True  # each step's request carries the ensemble request's id and parameters
    providers = ["ensemble"]

    def __init__(
        self,
        name: str,
        steps: Sequence[Step],
        models: Callable[[str, str], ModelVersion],
        loop: asyncio.AbstractEventLoop,
        max_inflight: int = 0,
    ) -> None:
        self.name = name
        self.steps = tuple(steps)
        self.instances = max_inflight or MAX_INFLIGHT
        self._models = models
        self._loop = loop

    def run(
        self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Blocking, from a worker thread: the steps run on the server's event loop."""
        future = asyncio.run_coroutine_threadsafe(self.execute(inputs), self._loop)
        tensors = future.result()
        if output_names is None:
            return tensors
        return {name: tensors[name] for name in output_names}

    async def execute(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        request_id = str(getattr(inputs, "request_id", "") or "")
        parameters: Mapping[str, Any] = getattr(inputs, "parameters", None) or {}
        tensors: dict[str, np.ndarray] = dict(inputs)
        waiting = list(self.steps)
        running: dict[asyncio.Task[dict[str, np.ndarray]], Step] = {}
        try:
            while waiting or running:
                for step in [s for s in waiting if all(t in tensors for _, t, _ in s.inputs)]:
                    waiting.remove(step)
                    task = asyncio.create_task(
                        self._run_step(step, tensors, request_id, parameters)
                    )
                    running[task] = step
                if not running:  # cannot happen after validation; never hang on it
                    raise Unavailable(f"ensemble '{self.name}': no step can run")
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    step = running.pop(task)
                    tensors.update(self._result(step, task))
        finally:
            for task in running:
                task.cancel()
        return tensors

    def _result(
        self, step: Step, task: asyncio.Task[dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        exc = task.exception()
        if exc is None:
            return task.result()
        if isinstance(exc, SluiceError):
            error = type(exc).__new__(type(exc))
            error.__dict__.update(exc.__dict__)
            error.message = f"ensemble '{self.name}' {step.label}: {exc.message}"
            error.args = (error.message,)
            raise error from exc
        raise Unavailable(
            f"ensemble '{self.name}' {step.label}: {type(exc).__name__}: {exc}"
        ) from exc

    async def _run_step(
        self,
        step: Step,
        tensors: Mapping[str, np.ndarray],
        request_id: str = "",
        parameters: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        model = self._models(step.model, step.version)
        request = InferRequest(
            step.model,
            tuple(
                InferInput(model_input, datatype, tuple(tensors[tensor].shape), tensors[tensor])
                for model_input, tensor, datatype in step.inputs
            ),
            id=request_id,
            outputs=tuple(RequestedOutput(model_output) for model_output, _ in step.outputs),
            parameters=parameters if parameters is not None else {},
        )
        response = await model.infer(request)
        by_name = {o.name: o.data for o in response.outputs}
        return {tensor: by_name[model_output] for model_output, tensor in step.outputs}

    def close(self) -> None:
        pass


def create(name: str, steps: Sequence[Step], context: Any, max_inflight: int) -> EnsembleRuntime:
    if context.models is None or context.loop is None:
        raise Unavailable(f"ensemble '{name}': other models cannot be reached here")
    return EnsembleRuntime(name, steps, context.models, context.loop, max_inflight)
