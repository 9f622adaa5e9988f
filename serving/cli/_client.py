"""``sluice models`` and ``sluice infer``: a client of a running server over HTTP, with
tensors in the binary data extension."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from serving.cli._errors import CommandError
from serving.cli._server_http import DEFAULT_URL, checked
from serving.settings import env_default

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    models = sub.add_parser("models", help="list, load or unload models on a running server")
    models.add_argument("action", choices=["list", "load", "unload"])
    models.add_argument("name", nargs="?", help="model name (load and unload)")
    models.add_argument("--url", default=env_default("URL", DEFAULT_URL))
    models.add_argument("--config", help="JSON config override for load")
    models.set_defaults(run=_models)

    infer = sub.add_parser(
        "infer", help="run one inference on a running server and print the outputs"
    )
    infer.add_argument("model")
    infer.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE",
                       help="an input: NAME=path.npy, NAME=path.json, or NAME=<inline JSON>; repeatable")  # fmt: skip
    infer.add_argument("--model-version", default="")
    infer.add_argument("--url", default=env_default("URL", DEFAULT_URL))
    infer.set_defaults(run=_infer)


def _client(url: str) -> Any:
    import httpx

    return httpx.Client(base_url=url, timeout=60.0)


def _models(args: argparse.Namespace) -> None:
    with _client(args.url) as client:
        if args.action == "list":
            index = checked(client.post("/v2/repository/index", json={})).json()
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
        checked(client.post(f"/v2/repository/models/{args.name}/{args.action}", json=body))
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
    if path.suffix in (".npy", ".json") and not path.is_file():
        raise CommandError(f"no such file: {source}")
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


def _infer(args: argparse.Namespace) -> None:
    from serving.codecs import array_to_binary, binary_to_array
    from serving.datatypes import by_name

    base = f"/v2/models/{args.model}" + (
        f"/versions/{args.model_version}" if args.model_version else ""
    )
    with _client(args.url) as client:
        meta = checked(client.get(base)).json()
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
        response = checked(
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
