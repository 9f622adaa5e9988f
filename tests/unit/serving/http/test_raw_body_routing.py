"""A raw body (``Inference-Header-Content-Length: 0``) is shaped by the version that answers it.

Two versions of one model take inputs of different widths (version 2, with its new
width, was added while version 1 served: the config is completed from each one's graph);
a traffic split, not the highest version, decides which answers. The body must be read as
the chosen version's input, through the same ``infer_answer`` both HTTP routes run.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from serving.core import InferenceCore
from serving.errors import InvalidArgument
from serving.examples import IR_VERSION, OPSET
from serving.http.infer_route import infer_answer
from serving.http.response_codec import HEADER_LENGTH
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import ControlMode, Settings

MODEL = "widths"
_WIDTHS = {1: 4, 2: 2}  # version -> width of INPUT0 (and OUTPUT0)
_RAW = {"inference-header-content-length": "0", "content-type": "application/octet-stream"}


def _identity(width: int) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        f"identity_{width}",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, [None, width])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def _add_version(repo: Path, version: int) -> None:
    (repo / MODEL / str(version)).mkdir(parents=True)
    (repo / MODEL / str(version) / "model.onnx").write_bytes(_identity(_WIDTHS[version]))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _add_version(tmp_path, 1)
    (tmp_path / MODEL / "config.pbtxt").write_text("version_policy: { all: {} }\n")
    return tmp_path


def _run(repo: Path, split: dict | None, version: str, values: list[float]) -> tuple[str, list]:
    """Send ``values`` as a raw FP32 body (with ``split`` in force); the version that
    answered and the output it sent back."""

    async def main() -> tuple[str, list]:
        settings = Settings(model_repository=repo, cores=1, model_control_mode=ControlMode.EXPLICIT)
        metrics = Metrics()
        core = InferenceCore(settings, ModelManager(settings, metrics), metrics)
        await core.start()
        try:
            await core.load_model(MODEL)  # version 1, 4 wide
            _add_version(repo, 2)
            await core.load_model(MODEL)  # version 2 joins, 2 wide; version 1 keeps serving
            assert core.model_metadata(MODEL, "1")["inputs"][0]["shape"] == [-1, 4]
            assert core.model_metadata(MODEL, "2")["inputs"][0]["shape"] == [-1, 2]
            if split is not None:
                core.traffic_set(MODEL, split)
            body = np.array(values, dtype=np.float32).tobytes()
            payload, headers = await infer_answer(core, MODEL, version, _RAW, body)
        finally:
            await core.close()
        header = json.loads(payload[: int(headers[HEADER_LENGTH])])
        output = header["outputs"][0]
        data = np.frombuffer(payload[int(headers[HEADER_LENGTH]) :], dtype=np.float32)
        assert output["shape"] == [1, len(values)]
        return header["model_version"], data.tolist()

    return asyncio.run(main())


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_split_to_one_version_shapes_the_raw_body_for_it(repo: Path, version: str) -> None:
    values = [0.5, 1.5, 2.5, 3.5][: _WIDTHS[int(version)]]
    answered, data = _run(repo, {"traffic": {version: 100}}, "", values)
    assert (answered, data) == (version, values)


def test_a_named_version_shapes_the_raw_body_for_it(repo: Path) -> None:
    assert _run(repo, None, "1", [1.0, 2.0, 3.0, 4.0]) == ("1", [1.0, 2.0, 3.0, 4.0])


def test_a_body_that_fits_only_another_version_is_refused(repo: Path) -> None:
    """Routed to version 1 (4 wide), a body of 2 floats is refused with version 1's shape."""
    with pytest.raises(
        InvalidArgument, match=r"expected 16 bytes of FP32 data for shape \[1, 4\], got 8"
    ):
        _run(repo, {"traffic": {"1": 100}}, "", [1.0, 2.0])
