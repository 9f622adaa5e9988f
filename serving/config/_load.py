"""Loading a model's configuration: config.pbtxt, completed from the ONNX graph, validated."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format

from serving.backends import backend_for
from serving.config import model_config_pb2 as pb
from serving.config._derive import complete_config
from serving.config._graph import read_graph_signature
from serving.config._padding import padding_plan
from serving.config._validate import validate_config
from serving.errors import InvalidArgument, NotFound

__all__ = ["CONFIG_FILENAME", "describe_model_dir", "load_model_config", "parse_config_file"]

CONFIG_FILENAME = "config.pbtxt"


def parse_config_file(path: Path) -> pb.ModelConfig:
    """Parse a protobuf text-format config; a syntax error names the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{path} is not UTF-8 text: {exc}") from None
    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        line, column = exc.GetLine(), exc.GetColumn()
        message = str(exc)
        prefix = f"{line}:{column} : "
        if message.startswith(prefix):
            message = message[len(prefix) :]
        raise InvalidArgument(f"{path}:{line}:{column}: {message}") from None


def load_model_config(
    model_dir: Path,
    onnx_path: Path | None = None,
    default_max_batch_size: int = 4,
    *,
    config: pb.ModelConfig | None = None,
) -> pb.ModelConfig:
    """Return the complete, validated configuration of the model in ``model_dir``.

    ``config`` replaces ``config.pbtxt`` (the repository load API's override). The
    result is completed from the graph of ``onnx_path`` when given (see
    ``complete_config``).

    Batching is derived, never overridden: proto3 cannot tell ``max_batch_size: 0``
    from an absent field, so when there is no config at all, or the config has
    ``max_batch_size`` 0 and lists neither inputs nor outputs, Sluice decides from the
    graph (every input and output with a dynamic first dimension -> batching with
    ``default_max_batch_size``). A config that lists tensors is taken at its word: its
    ``max_batch_size`` (0 included) stands. To serve a batchable graph without
    batching, list its inputs with ``max_batch_size: 0``.
    """
    model_dir = Path(model_dir)
    config_path = model_dir / CONFIG_FILENAME
    if config is not None:
        cfg = pb.ModelConfig()
        cfg.CopyFrom(config)
        source = f"config override of model {model_dir.name!r}"
        explicit = True
    elif config_path.is_file():
        cfg = parse_config_file(config_path)
        source = str(config_path)
        explicit = True
    else:
        cfg = pb.ModelConfig()
        source = f"derived config of model {model_dir.name!r}"
        explicit = False
    derive_batching = not explicit or (cfg.max_batch_size == 0 and not cfg.input and not cfg.output)
    if backend_for(cfg) is not None:
        onnx_path = None  # another backend's model file (model.py) has no graph
    graph = read_graph_signature(Path(onnx_path)) if onnx_path is not None else None
    complete_config(
        cfg,
        model_dir.name,
        graph,
        derive_batching=derive_batching,
        default_max_batch_size=default_max_batch_size,
        source=source,
    )
    validate_config(cfg, source)
    if graph is not None:
        padding_plan(cfg, graph, source)  # refuses padding the graph's dim names contradict
    return cfg


def describe_model_dir(model_dir: Path, default_max_batch_size: int = 4) -> pb.ModelConfig:
    """Load the config of ``model_dir`` against its highest numeric version (``sluice config``)."""
    from serving.repository import model_file, scan_model_dir

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise NotFound(f"model directory {model_dir} does not exist")
    config_path = model_dir / CONFIG_FILENAME
    stated = parse_config_file(config_path) if config_path.is_file() else pb.ModelConfig()
    versions = scan_model_dir(model_dir).versions
    if not versions:
        raise NotFound(f"{model_dir} has no numeric version directory (e.g. {model_dir}/1)")
    onnx_path = model_file(model_dir, versions[-1], stated)
    if not onnx_path.is_file():
        raise NotFound(f"model file {onnx_path} does not exist")
    return load_model_config(model_dir, onnx_path, default_max_batch_size)
