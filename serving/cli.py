"""The ``sluice`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main"]

_DEFAULT_URL = "http://127.0.0.1:8000"


class CommandError(Exception):
    """A failure to report as one line and a non-zero exit."""


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SLUICE_{name}", default)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluice",
        description="Serve ONNX models over the Open Inference Protocol (KServe V2), "
        "compatible with Triton clients and tools.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server on a model repository")
    serve.add_argument("--model-repository", required=True, type=Path, metavar="DIR",
                       help="Triton-layout repository: DIR/<model>/[config.pbtxt] and <version>/model.onnx")  # fmt: skip
    serve.add_argument("--host", default=_env("HOST", "127.0.0.1"),
                       help="address to listen on (default %(default)s)")  # fmt: skip
    serve.add_argument("--http-port", type=int, default=int(_env("HTTP_PORT", "8000")),
                       help="HTTP port; 0 picks a free one (default %(default)s)")  # fmt: skip
    serve.add_argument("--grpc-port", type=int, default=int(_env("GRPC_PORT", "8001")),
                       help="gRPC port (accepted; the gRPC front end is not in this build)")  # fmt: skip
    serve.add_argument("--metrics-port", type=int, default=int(_env("METRICS_PORT", "8002")),
                       help="Prometheus metrics port; 0 picks a free one (default %(default)s)")  # fmt: skip
    serve.add_argument("--model-control-mode", choices=["none", "poll", "explicit"],
                       default=_env("MODEL_CONTROL_MODE", "none"),
                       help="none: load everything at start; poll: also rescan the repository; "
                       "explicit: load and unload through the repository API (default %(default)s)")  # fmt: skip
    serve.add_argument("--load-model", action="append", default=[], metavar="NAME",
                       help="in explicit mode, a model to load at start ('*' for all); repeatable")  # fmt: skip
    serve.add_argument("--repository-poll-secs", type=float,
                       default=float(_env("REPOSITORY_POLL_SECS", "15")),
                       help="seconds between repository scans in poll mode (default %(default)s)")  # fmt: skip
    serve.add_argument("--max-request-size", type=int,
                       default=int(_env("MAX_REQUEST_SIZE", str(64 * 1024 * 1024))), metavar="BYTES",
                       help="largest request body accepted, after decompression (default %(default)s)")  # fmt: skip
    serve.add_argument("--default-max-batch-size", type=int,
                       default=int(_env("DEFAULT_MAX_BATCH_SIZE", "4")),
                       help="max_batch_size given to models whose config leaves it to Sluice (default %(default)s)")  # fmt: skip
    serve.add_argument("--cache-dir", type=Path, default=os.environ.get("SLUICE_CACHE_DIR"),
                       help="directory for optimized-model caches (off when unset)")  # fmt: skip
    serve.add_argument("--log-level", default=_env("LOG_LEVEL", "info"),
                       choices=["debug", "info", "warning", "error"], help="(default %(default)s)")  # fmt: skip

    config = sub.add_parser("config", help="print a model's complete config (derived where absent)")
    config.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    config.add_argument("--format", choices=["pbtxt", "json"], default="pbtxt")

    models = sub.add_parser("models", help="list, load or unload models on a running server")
    models.add_argument("action", choices=["list", "load", "unload"])
    models.add_argument("name", nargs="?", help="model name (load and unload)")
    models.add_argument("--url", default=_env("URL", _DEFAULT_URL))
    models.add_argument("--config", help="JSON config override for load")

    infer = sub.add_parser(
        "infer", help="run one inference on a running server and print the outputs"
    )
    infer.add_argument("model")
    infer.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE",
                       help="an input: NAME=path.npy, NAME=path.json, or NAME=<inline JSON>; repeatable")  # fmt: skip
    infer.add_argument("--model-version", default="")
    infer.add_argument("--url", default=_env("URL", _DEFAULT_URL))
    return parser


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"sluice: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _cmd_serve(args: argparse.Namespace) -> None:
    from serving.server import run
    from serving.settings import ControlMode, Settings

    try:
        settings = Settings(
            model_repository=args.model_repository.resolve(),
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            model_control_mode=ControlMode(args.model_control_mode),
            load_models=tuple(args.load_model),
            repository_poll_secs=args.repository_poll_secs,
            log_level=args.log_level,
            max_request_bytes=args.max_request_size,
            default_max_batch_size=args.default_max_batch_size,
            cache_dir=args.cache_dir,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    try:
        run(settings)
    except OSError as exc:
        raise CommandError(str(exc)) from None


def _cmd_config(args: argparse.Namespace) -> None:
    from serving.config import describe_model_dir, format_config

    if not args.model_dir.is_dir():
        raise CommandError(f"{args.model_dir} is not a directory")
    print(format_config(describe_model_dir(args.model_dir), args.format), end="")


def _client(url: str) -> Any:
    import httpx

    return httpx.Client(base_url=url, timeout=60.0)


def _check(response: Any) -> Any:
    if response.status_code != 200:
        try:
            message = response.json()["error"]
        except Exception:
            message = response.text.strip() or f"HTTP {response.status_code}"
        raise CommandError(f"server answered {response.status_code}: {message}")
    return response


def _cmd_models(args: argparse.Namespace) -> None:
    with _client(args.url) as client:
        if args.action == "list":
            index = _check(client.post("/v2/repository/index", json={})).json()
            width = max((len(e["name"]) for e in index), default=4)
            print(f"{'NAME':<{width}}  VERSION  STATE        REASON")
            for e in index:
                print(f"{e['name']:<{width}}  {e.get('version', ''):<7}  "
                      f"{e.get('state', ''):<11}  {e.get('reason', '')}")  # fmt: skip
            return
        if not args.name:
            raise CommandError(f"'models {args.action}' needs a model name")
        body: dict[str, Any] = {}
        if args.config and args.action == "load":
            body["parameters"] = {"config": args.config}
        _check(client.post(f"/v2/repository/models/{args.name}/{args.action}", json=body))
        print(f"{args.action}ed {args.name}" if args.action == "unload" else f"loaded {args.name}")


def _read_input(spec: str, meta: dict[str, dict[str, Any]]) -> tuple[str, Any]:
    import numpy as np

    from serving.datatypes import by_name

    name, sep, source = spec.partition("=")
    if not sep or not name:
        raise CommandError(f"--input {spec!r} must look like NAME=FILE")
    if name not in meta:
        raise CommandError(f"model has no input {name!r}; inputs: {', '.join(meta)}")
    datatype = by_name(meta[name]["datatype"])
    path = Path(source)
    try:
        if path.suffix == ".npy" and path.is_file():
            array = np.load(path, allow_pickle=False)
        else:
            text = path.read_text() if path.is_file() else source
            value = json.loads(text)
            if isinstance(value, dict) and "data" in value:
                array = np.asarray(value["data"]).reshape(value.get("shape", -1))
            else:
                array = np.asarray(value)
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read input {name!r} from {source!r}: {exc}") from None
    if datatype.is_bytes:
        flat = [x.encode() if isinstance(x, str) else bytes(x) for x in array.reshape(-1).tolist()]
        array = np.array(flat, dtype=object).reshape(array.shape)
    else:
        array = array.astype(datatype.numpy)
    return name, array


def _cmd_infer(args: argparse.Namespace) -> None:
    from serving.codecs import array_to_binary, binary_to_array
    from serving.datatypes import by_name

    base = f"/v2/models/{args.model}" + (
        f"/versions/{args.model_version}" if args.model_version else ""
    )
    with _client(args.url) as client:
        meta = _check(client.get(base)).json()
        inputs_meta = {i["name"]: i for i in meta["inputs"]}
        header_inputs = []
        chunks = []
        for spec in args.input:
            name, array = _read_input(spec, inputs_meta)
            datatype = by_name(inputs_meta[name]["datatype"])
            payload = bytes(array_to_binary(array, datatype))
            header_inputs.append({
                "name": name, "datatype": datatype.name, "shape": list(array.shape),
                "parameters": {"binary_data_size": len(payload)},
            })  # fmt: skip
            chunks.append(payload)
        header = json.dumps(
            {"inputs": header_inputs, "parameters": {"binary_data_output": True}}
        ).encode()
        response = _check(
            client.post(
                base + "/infer",
                content=header + b"".join(chunks),
                headers={
                    "Inference-Header-Content-Length": str(len(header)),
                    "Content-Type": "application/octet-stream",
                },
            )
        )
    body = response.content
    length = int(response.headers.get("inference-header-content-length", len(body)))
    result = json.loads(body[:length])
    offset = length
    printed: dict[str, Any] = {}
    for out in result["outputs"]:
        datatype = by_name(out["datatype"])
        if "data" in out:
            data = out["data"]
        else:
            size = out["parameters"]["binary_data_size"]
            array = binary_to_array(
                body[offset : offset + size], datatype, tuple(out["shape"]), out["name"]
            )
            offset += size
            if datatype.is_bytes:
                data = [x.decode("utf-8", "replace") for x in array.reshape(-1).tolist()]
            else:
                data = array.reshape(-1).tolist()
        printed[out["name"]] = {"datatype": out["datatype"], "shape": out["shape"], "data": data}
    print(json.dumps({"model_name": result.get("model_name"),
                      "model_version": result.get("model_version"), "outputs": printed}, indent=2))  # fmt: skip


_COMMANDS = {"serve": _cmd_serve, "config": _cmd_config, "models": _cmd_models, "infer": _cmd_infer}


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    from serving.errors import SluiceError

    try:
        _COMMANDS[args.command](args)
    except CommandError as exc:
        _fail(str(exc))
    except SluiceError as exc:
        _fail(exc.message)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # a network failure, say: one line, not a traceback
        name = type(exc).__name__
        if name in {"ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError"}:
            _fail(f"cannot reach the server at {getattr(args, 'url', '?')}: {exc}")
        raise


if __name__ == "__main__":
    main()
