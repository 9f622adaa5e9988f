"""``sluice pull`` and ``sluice registry ...``: model registries (MLflow, local)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serving.cli._errors import CommandError, fail
from serving.cli._governance import Governance, add_governance_options
from serving.cli._progress import PullDisplay

__all__ = ["add_commands"]

_PULL_EXIT_CODES = """exit codes: 0 installed (or already there), 2 bad reference or usage,
3 not found, 4 verification failed (nothing installed), 5 network (unreachable, timed
out, retries exhausted), 6 credentials refused (401/403), 7 not enough disk space,
8 conflict (a pinned version, a foreign version directory), 9 files not reachable
through the MLflow artifact proxy, 1 anything else"""


def _registry_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", default=os.environ.get("SLUICE_REGISTRY"), metavar="URI",
                        help="mlflow+http(s)://HOST:PORT or a local registry directory "
                        "(default: $SLUICE_REGISTRY, else $MLFLOW_TRACKING_URI)")  # fmt: skip


def add_commands(sub: Any) -> None:
    pull = sub.add_parser("pull", help="pull a model version from a registry into a model repository",
                          epilog=_PULL_EXIT_CODES,
                          formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    pull.add_argument("ref", metavar="REF",
                      help="models:/NAME@ALIAS, models:/NAME/VERSION, models:/NAME@latest or models:/NAME?tag=value")  # fmt: skip
    pull.add_argument("dest", nargs="?", type=Path, metavar="DEST",
                      help="the model repository (as KServe's storage initializer passes it: "
                      "REF then /mnt/models); or --model-repository")  # fmt: skip
    _registry_option(pull)
    pull.add_argument("--model-repository", type=Path, metavar="DIR")
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
    pull.set_defaults(run=_pull)

    registry = sub.add_parser("registry", help="manage a local registry; read MLflow; push to MLflow",
                              epilog=_PULL_EXIT_CODES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    registry.set_defaults(run=_registry)
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
    history = rsub.add_parser("history", help="the audit log of NAME: who changed what, when, why")
    history.add_argument("name")
    history.add_argument("--verify", action="store_true",
                         help="check the whole hash chain; name the first broken record")  # fmt: skip
    for p in (reg, lst, show, search, tag, alias, delete, push, history):
        _registry_option(p)
    for p in (reg, tag, alias, delete, push):
        add_governance_options(p)


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
        fail(exc.message, exc.exit_code)


def _pull(args: argparse.Namespace) -> None:
    from registry_client import HttpOptions, Puller, RetryPolicy, open_registry

    if (args.dest is None) == (args.model_repository is None):
        fail("sluice pull: give the model repository once: DEST or --model-repository DIR", 2)
    args.model_repository = args.model_repository or args.dest
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
        with PullDisplay(args.progress) as display:
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


def _registry(args: argparse.Namespace) -> None:
    from registry_client import LocalRegistry, MlflowRegistry, open_registry, parse_reference

    action = args.registry_command
    governance = Governance(args) if hasattr(args, "events") else None

    async def act() -> None:
        async with open_registry(args.registry, create=action == "register") as registry:
            if action == "register":
                number, files = await _register(registry, args)
                print(f"registered {args.name} version {number}")
                for f in files:
                    print(f"  {f.path}  {f.size} bytes  {f.digest}")
                assert governance is not None
                subject = f"{args.name}:{number}"
                await governance.audit(registry, "register", subject, aliases=args.alias,
                                       files=[f.path for f in files])  # fmt: skip
                governance.emit("io.sluice.model.registered", subject, registry=registry.uri,
                                model=args.name, version=number)  # fmt: skip
                for name in args.alias:
                    governance.emit("io.sluice.model.alias_moved", subject, registry=registry.uri,
                                    model=args.name, alias=name, version=number)  # fmt: skip
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
                if isinstance(registry, LocalRegistry):
                    version = registry.set_tags(args.name, args.version,
                                                _key_values(args.tags, "tag"), args.remove)  # fmt: skip
                else:
                    await registry.set_tags(args.name, args.version, _key_values(args.tags, "tag"))
                    await registry.delete_tags(args.name, args.version, args.remove)
                    version = await registry.get_version(args.name, args.version)
                print(" ".join(f"{k}={v}" for k, v in sorted(version.lineage.tags.items())))
                assert governance is not None
                await governance.audit(registry, "tag", f"{args.name}:{args.version}",
                                       set=_key_values(args.tags, "tag"), removed=args.remove)  # fmt: skip
            elif action == "alias":
                if args.delete == (args.version is not None):
                    raise CommandError("give either VERSION or --delete")
                previous = await _alias_target(registry, args.name, args.alias)
                if isinstance(registry, LocalRegistry):
                    registry.set_alias(args.name, args.alias, args.version)
                elif args.version is not None:
                    await registry.set_alias(args.name, args.alias, args.version)
                else:
                    await registry.delete_alias(args.name, args.alias)
                print(f"{args.name}@{args.alias} -> {args.version if args.version else 'removed'}")
                assert governance is not None
                subject = f"{args.name}@{args.alias}"
                await governance.audit(registry, "alias", subject, version=args.version,
                                 previous=previous)  # fmt: skip
                governance.emit("io.sluice.model.alias_moved", subject, registry=registry.uri,
                                model=args.name, alias=args.alias, version=args.version,
                                previous=previous)  # fmt: skip
            elif action == "delete":
                if isinstance(registry, LocalRegistry):
                    dropped = registry.delete_version(args.name, args.version, force=args.force)
                else:  # MLflow keeps no pins: nothing to refuse on
                    dropped = await registry.delete_version(args.name, args.version)
                extra = f" (aliases removed: {', '.join(dropped)})" if dropped else ""
                print(f"deleted {args.name} version {args.version}{extra}")
                assert governance is not None
                await governance.audit(registry, "delete", f"{args.name}:{args.version}",
                                 aliases_removed=dropped, forced=args.force)  # fmt: skip
            elif action == "push":
                from registry_client import push_to_mlflow

                async with open_registry(args.to) as target:
                    if not isinstance(target, MlflowRegistry):
                        raise CommandError("--to must be mlflow+http(s)://HOST:PORT")
                    number = await push_to_mlflow(
                        registry, parse_reference(args.ref), target,
                        name=args.name, aliases=args.alias, experiment_id=args.experiment_id,
                    )  # fmt: skip
                pushed = args.name or parse_reference(args.ref).name
                print(f"pushed to {args.to}: {pushed} version {number}")
                assert governance is not None
                await governance.audit(
                    registry, "push", args.ref, to=args.to, name=pushed, version=number
                )
                governance.emit("io.sluice.model.registered", f"{pushed}:{number}", registry=args.to,
                                model=pushed, version=number, source=args.ref)  # fmt: skip
            elif action == "history":
                await _history(registry, args.name, args.verify)

    _run_registry(act)
    if governance is not None:
        governance.deliver()


async def _alias_target(registry: Any, name: str, alias: str) -> int | None:
    """The version ``alias`` points at now (None when unset or the model is unknown)."""
    from registry_client import LocalRegistry, RegistryError, parse_reference

    try:
        if isinstance(registry, LocalRegistry):
            return registry.find(parse_reference(f"models:/{name}@{alias}")).version
        return (await registry.resolve(parse_reference(f"models:/{name}@{alias}"))).version
    except RegistryError:
        return None


async def _register(registry: Any, args: argparse.Namespace) -> tuple[int, Sequence[Any]]:
    """A new version of NAME from files: in a local registry, or (through a scratch local
    registry, whose digests become the manifest) pushed to MLflow as ``push`` does."""
    import tempfile

    from registry_client import LocalRegistry, parse_reference, push_to_mlflow

    def register(into: Any) -> Any:
        return into.register(
            args.name, args.paths, tags=_key_values(args.tag, "--tag"), aliases=args.alias,
            description=args.description, git_commit=args.git_commit,
            dataset=args.dataset, run_id=args.run_id,
        )  # fmt: skip

    if isinstance(registry, LocalRegistry):
        version = register(registry)
        return version.version, version.files
    with tempfile.TemporaryDirectory(prefix="sluice-register-") as tmp:
        scratch = LocalRegistry(Path(tmp))
        staged = register(scratch)
        ref = parse_reference(f"models:/{staged.name}/{staged.version}")
        return await push_to_mlflow(scratch, ref, registry, aliases=args.alias), staged.files


async def _history(registry: Any, name: str, verify: bool) -> None:
    from registry_client import AuditError, read_history, verify_log

    log = registry.audit
    if verify:
        try:
            count = await verify_log(log)
        except AuditError as exc:
            raise CommandError(f"audit log {log.where}: {exc}") from None
        print(f"audit log {log.where}: {count} record(s), the chain is intact")
    for r in await read_history(log, name):
        why = f'  "{r["message"]}"' if r.get("message") else ""
        details = json.dumps(r.get("details") or {}, sort_keys=True)
        print(f"{r['seq']:>4}  {r['time']}  {r['user']:<12} {r['action']:<9} {r['subject']}{why}  {details}")  # fmt: skip
