"""The ``sluice`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from serving.settings import add_arguments, settings_from

__all__ = ["main"]

_DEFAULT_URL = "http://127.0.0.1:8000"


class CommandError(Exception):
    """A failure to report as one line and a non-zero exit."""


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SLUICE_{name}", default)


def _version() -> str:
    from serving import __version__

    return __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluice",
        description="Serve ONNX models over the Open Inference Protocol (KServe V2), "
        "compatible with Triton clients and tools.",
    )
    parser.add_argument("--version", action="version", version=f"sluice {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server on a model repository")
    add_arguments(serve)  # one flag per setting (serving.settings)

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
    _add_registry_commands(sub)
    return parser


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"sluice: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _serve_registry(args: argparse.Namespace) -> str | None:
    """``--registry``, else (only when ``--model`` is given) the environment's default."""
    if args.registry or not args.registry_models:
        return args.registry or None
    from registry_client import RegistryError, default_registry_uri

    try:
        return default_registry_uri()
    except RegistryError:
        return None  # Settings says --model needs --registry


def _cmd_serve(args: argparse.Namespace) -> None:
    values = vars(args) | {
        "model_repository": args.model_repository.resolve(),
        "registry": _serve_registry(args),
    }
    try:
        settings = settings_from(values)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    try:
        if settings.workers > 1:  # a supervisor and N server processes
            from serving.workers import supervise

            supervise(settings)
        else:
            from serving.server import run

            run(settings)
    except OSError as exc:
        raise CommandError(str(exc)) from None


def _cmd_config(args: argparse.Namespace) -> None:
    from serving.config import describe_model_dir, format_config, padding_plan

    if not args.model_dir.is_dir():
        raise CommandError(f"{args.model_dir} is not a directory")
    config = describe_model_dir(args.model_dir)
    print(format_config(config, args.format), end="")
    # On stderr, so stdout stays a config Triton's tools parse.
    print(f"sluice: model '{config.name}' {padding_plan(config).explain()}", file=sys.stderr)


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


_COMMANDS = {"serve": _cmd_serve, "config": _cmd_config, "models": _cmd_models, "infer": _cmd_infer,
             "pull": lambda args: _cmd_pull(args), "registry": lambda args: _cmd_registry(args)}  # fmt: skip


# -- model registry: `sluice pull` and `sluice registry ...` ------------------------------

_PULL_EXIT_CODES = """exit codes: 0 installed (or already there), 2 bad reference or usage,
3 not found, 4 verification failed (nothing installed), 5 network (unreachable, timed
out, retries exhausted), 6 credentials refused (401/403), 7 not enough disk space,
8 conflict (a pinned version, a foreign version directory), 9 files not reachable
through the MLflow artifact proxy, 1 anything else"""


def _registry_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", default=os.environ.get("SLUICE_REGISTRY"), metavar="URI",
                        help="mlflow+http(s)://HOST:PORT or a local registry directory "
                        "(default: $SLUICE_REGISTRY, else $MLFLOW_TRACKING_URI)")  # fmt: skip


def _add_registry_commands(sub: Any) -> None:
    pull = sub.add_parser("pull", help="pull a model version from a registry into a model repository",
                          epilog=_PULL_EXIT_CODES,
                          formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    pull.add_argument("ref", metavar="REF",
                      help="models:/NAME@ALIAS, models:/NAME/VERSION, models:/NAME@latest or models:/NAME?tag=value")  # fmt: skip
    _registry_option(pull)
    pull.add_argument("--model-repository", required=True, type=Path, metavar="DIR")
    pull.add_argument("--as", dest="install_as", metavar="NAME", help="install under another model name")  # fmt: skip
    pull.add_argument("--force", action="store_true",
                      help="replace a version directory that was not installed from this version")  # fmt: skip
    pull.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECS")
    pull.add_argument("--stall-timeout", type=float, default=30.0, metavar="SECS",
                      help="longest silence while reading a file before it counts as a failure")  # fmt: skip
    pull.add_argument("--total-timeout", type=float, default=3600.0, metavar="SECS")
    pull.add_argument("--retries", type=int, default=6, metavar="N",
                      help="failed attempts in a row (without progress) before giving up")  # fmt: skip
    pull.add_argument("--max-bandwidth", type=float, default=None, metavar="BYTES_PER_SEC")
    pull.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto",
                      help="auto: a progress bar on a terminal, one line per file otherwise")  # fmt: skip

    registry = sub.add_parser("registry", help="manage a local registry; read MLflow; push to MLflow",
                              epilog=_PULL_EXIT_CODES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    rsub = registry.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    reg = rsub.add_parser("register", help="record files as the next version of NAME")
    reg.add_argument("name")
    reg.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                     help="files, or directories whose tree becomes the version")  # fmt: skip
    reg.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    reg.add_argument("--alias", action="append", default=[])
    reg.add_argument("--description", default="")
    reg.add_argument("--git-commit", default="")
    reg.add_argument("--dataset", default="")
    reg.add_argument("--run-id", default="")
    lst = rsub.add_parser("list", help="registered models, or the versions of NAME")
    lst.add_argument("name", nargs="?")
    show = rsub.add_parser("show", help="one version: files, digests, lineage (JSON)")
    show.add_argument("ref", metavar="REF")
    search = rsub.add_parser("search", help="versions carrying every given tag")
    search.add_argument("--tag", action="append", required=True, metavar="KEY=VALUE")
    search.add_argument("--name")
    tag = rsub.add_parser("tag", help="set (or --remove) tags of a version")
    tag.add_argument("name")
    tag.add_argument("version", type=int)
    tag.add_argument("tags", nargs="*", metavar="KEY=VALUE")
    tag.add_argument("--remove", action="append", default=[], metavar="KEY")
    alias = rsub.add_parser("alias", help="point ALIAS at VERSION (or --delete it)")
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version", type=int, nargs="?")
    alias.add_argument("--delete", action="store_true")
    delete = rsub.add_parser("delete", help="delete a version (refused while a deployment pins it)")
    delete.add_argument("name")
    delete.add_argument("version", type=int)
    delete.add_argument("--force", action="store_true", help="delete even if pinned")
    push = rsub.add_parser("push", help="copy a local version to MLflow, with a digest manifest")
    push.add_argument("ref", metavar="REF")
    push.add_argument(
        "--to", required=True, metavar="MLFLOW_URI", help="mlflow+http(s)://HOST:PORT"
    )
    push.add_argument("--name", help="registered model name in MLflow (default: the same)")
    push.add_argument("--alias", action="append", default=[])
    push.add_argument("--experiment-id", default="0")
    for p in (reg, lst, show, search, tag, alias, delete, push):
        _registry_option(p)


def _key_values(items: Sequence[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"{flag} {item!r} must look like KEY=VALUE")
        out[key] = value
    return out


def _run_registry(coro_factory: Any) -> None:
    """Run an async registry action; registry errors exit with their own code."""
    import asyncio

    from registry_client import RegistryError

    try:
        asyncio.run(coro_factory())
    except RegistryError as exc:
        _fail(exc.message, exc.exit_code)


class _PullDisplay:
    """A rich progress bar on a terminal; otherwise one line per file."""

    def __init__(self, mode: str) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _PullDisplay:
        if self.mode == "bar":
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )  # fmt: skip

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), transient=False,
            )  # fmt: skip
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: Any) -> None:
        if self._progress is not None:
            task = self._tasks.get(event.path)
            if event.kind in ("start", "cached") and task is None:
                task = self._tasks[event.path] = self._progress.add_task(
                    event.path, total=event.total
                )
            if task is not None and event.kind in (
                "progress",
                "start",
                "cached",
                "verified",
                "restart",
            ):
                self._progress.update(task, completed=event.done, total=event.total)
            if event.kind == "retry":
                self._progress.console.print(f"[yellow]retrying {event.path} at byte {event.done}")
            return
        if self.mode == "none":
            return
        if event.kind == "cached":
            print(f"{event.path}  {event.done} bytes  from cache", flush=True)
        elif event.kind == "verified":
            print(f"{event.path}  {event.done} bytes  {event.message}", flush=True)
        elif event.kind in ("retry", "restart"):
            detail = f": {event.message}" if event.message else ""
            print(f"{event.path}  {event.kind} at byte {event.done}{detail}", file=sys.stderr, flush=True)  # fmt: skip


def _cmd_pull(args: argparse.Namespace) -> None:
    from registry_client import HttpOptions, Puller, RetryPolicy, open_registry

    if args.model_repository.exists() and not args.model_repository.is_dir():
        raise CommandError(f"model repository {args.model_repository} is not a directory")
    args.model_repository.mkdir(parents=True, exist_ok=True)  # a first pull starts one
    options = HttpOptions(
        connect_timeout=args.connect_timeout,
        stall_timeout=args.stall_timeout,
        total_timeout=args.total_timeout,
        retry=RetryPolicy(max_attempts=max(1, args.retries)),
        bandwidth=args.max_bandwidth,
    )

    async def pull() -> None:
        with _PullDisplay(args.progress) as display:
            async with open_registry(args.registry, options=options) as registry:
                puller = Puller(registry, args.model_repository, options=options,
                                on_event=display, force=args.force)  # fmt: skip
                result = await puller.pull(args.ref, install_as=args.install_as)
        version = result.version
        verb = "installed" if result.installed else "already installed"
        note = {"registry": "digests recorded by the registry",
                "manifest": "digests from sluice-manifest.json",
                "first-pull": "no published digests: recorded on first pull, verified from now on"}  # fmt: skip
        print(f"{verb} {version.name} version {version.version} at {result.path} "
              f"({note.get(version.digest_source, version.digest_source)})")  # fmt: skip

    _run_registry(pull)


def _print_version(version: Any) -> None:
    print(json.dumps(version.to_json(), indent=2))


def _cmd_registry(args: argparse.Namespace) -> None:
    from registry_client import LocalRegistry, MlflowRegistry, open_registry, parse_reference

    action = args.registry_command

    async def act() -> None:
        async with open_registry(args.registry, create=action == "register") as registry:
            if action in ("register", "tag", "delete") and not isinstance(registry, LocalRegistry):
                raise CommandError(f"'registry {action}' changes a local registry; "
                                   "for MLflow use 'sluice registry push' or MLflow's own client")  # fmt: skip
            if action == "register":
                assert isinstance(registry, LocalRegistry)
                version = registry.register(
                    args.name, args.paths, tags=_key_values(args.tag, "--tag"), aliases=args.alias,
                    description=args.description, git_commit=args.git_commit,
                    dataset=args.dataset, run_id=args.run_id,
                )  # fmt: skip
                print(f"registered {version.name} version {version.version}")
                for f in version.files:
                    print(f"  {f.path}  {f.size} bytes  {f.digest}")
            elif action == "list" and args.name:
                for v in await registry.list_versions(args.name):
                    aliases = f"  @{' @'.join(v.aliases)}" if v.aliases else ""
                    tags = " ".join(f"{k}={val}" for k, val in sorted(v.lineage.tags.items()))
                    print(
                        f"{v.name}  {v.version}  {v.lineage.created_at}{aliases}  {tags}".rstrip()
                    )
            elif action == "list":
                for m in await registry.list_models():
                    aliases = " ".join(f"@{a}={n}" for a, n in sorted(m["aliases"].items()))
                    print(f"{m['name']}  latest {m['latest_version']}  {aliases}".rstrip())
            elif action == "show":
                _print_version(await registry.resolve(parse_reference(args.ref)))
            elif action == "search":
                for v in await registry.search_versions(_key_values(args.tag, "--tag"), args.name):
                    print(f"{v.name}  {v.version}")
            elif action == "tag":
                assert isinstance(registry, LocalRegistry)
                version = registry.set_tags(args.name, args.version,
                                            _key_values(args.tags, "tag"), args.remove)  # fmt: skip
                print(" ".join(f"{k}={v}" for k, v in sorted(version.lineage.tags.items())))
            elif action == "alias":
                if args.delete == (args.version is not None):
                    raise CommandError("give either VERSION or --delete")
                if isinstance(registry, LocalRegistry):
                    registry.set_alias(args.name, args.alias, args.version)
                elif args.version is not None:
                    await registry.set_alias(args.name, args.alias, args.version)
                else:
                    raise CommandError("removing an MLflow alias: use MLflow's own client")
                print(f"{args.name}@{args.alias} -> {args.version if args.version else 'removed'}")
            elif action == "delete":
                assert isinstance(registry, LocalRegistry)
                dropped = registry.delete_version(args.name, args.version, force=args.force)
                extra = f" (aliases removed: {', '.join(dropped)})" if dropped else ""
                print(f"deleted {args.name} version {args.version}{extra}")
            elif action == "push":
                from registry_client import push_to_mlflow

                async with open_registry(args.to) as target:
                    if not isinstance(target, MlflowRegistry):
                        raise CommandError("--to must be mlflow+http(s)://HOST:PORT")
                    number = await push_to_mlflow(
                        registry, parse_reference(args.ref), target,
                        name=args.name, aliases=args.alias, experiment_id=args.experiment_id,
                    )  # fmt: skip
                print(f"pushed to {args.to}: {args.name or parse_reference(args.ref).name} version {number}")  # fmt: skip

    _run_registry(act)


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
        if (problem := _protobuf_mismatch(exc)) is not None:
            _fail(problem)
        raise


def _protobuf_mismatch(exc: Exception) -> str | None:
    """One line for generated protobuf code the installed protobuf runtime cannot load."""
    import re

    if type(exc).__name__ == "VersionError" and type(exc).__module__.startswith("google.protobuf"):
        found = re.search(r"loading (\S+): gencode (\S+) runtime (\S+?)\.?(?:\s|$)", str(exc))
        where, gencode, runtime = found.groups() if found else ("", "", "")
    elif isinstance(exc, ImportError) and exc.name == "google.protobuf":
        where, gencode, runtime = "", "", ""  # before runtime version checks (protobuf < 5.26)
    else:
        return None
    if not runtime:
        import google.protobuf

        runtime = google.protobuf.__version__
    pinned = _protobuf_requirement().split(",")
    lower = f">={gencode}" if gencode else (pinned[0] or ">=6.30.0")
    wanted = ",".join([lower, *(p for p in pinned if p.startswith("<"))])
    if gencode and _version_key(runtime) >= _version_key(gencode):
        return f"protobuf {runtime} cannot load {where or 'generated code'} ({exc})"
    if gencode:
        needs = f"{where} was generated for protobuf {gencode} or newer"
    else:
        needs = f"Sluice needs protobuf{lower}"
    line = f"protobuf {runtime} is too old: {needs}; install protobuf{wanted}"
    if where and where not in ("model_config.proto", "grpc_service.proto"):
        # Another package's code (grpcio-health-checking after a downgrade, say): installing
        # Sluice again beside what pinned the old protobuf lets pip pick versions that agree.
        line += " or reinstall Sluice together with what pinned it (pip install sluice PACKAGE)"
    return line


def _protobuf_requirement() -> str:
    """The protobuf specifier Sluice was installed with, lower bound first (">=6.30.0,<8")."""
    from importlib import metadata

    try:
        requirements = metadata.requires("sluice") or []
    except metadata.PackageNotFoundError:
        return ""
    for requirement in requirements:
        name, _, rest = requirement.partition(";")[0].replace(" ", "").partition("protobuf")
        if not name and rest[:1] in "<>=!~":
            return ",".join(sorted(rest.split(","), key=lambda s: not s.startswith(">")))
    return ""


def _version_key(version: str) -> tuple[int, ...]:
    import re

    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


if __name__ == "__main__":
    main()
