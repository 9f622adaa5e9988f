"""Generate the Python modules of Sluice's .proto files.

    python scripts/gen_protos.py          # rewrite the committed *_pb2.py / *_pb2.pyi
    python scripts/gen_protos.py --check  # CI: exit 1 when they are stale

The protos are compiled from their own directory so that the file names in the
descriptors match Triton's ("model_config.proto"); identical descriptors let
Sluice and tritonclient share one protobuf descriptor pool in one process. The
generated code then imports sibling modules by bare name, which this script
rewrites to package imports (each module to the package that owns it, so
serving/grpc/grpc_service.proto can import serving/config/model_config.proto by
its bare name). Protos that declare a service also get a ``*_pb2_grpc.py``
module. The output depends on the grpcio-tools version
(it stamps its protobuf version into the module), so CI must pin the same one.

The pin is grpcio-tools 1.72 (protoc 30.0), the oldest protobuf 6 gencode: protobuf
runtimes accept gencode no newer than themselves, so the modules load on protobuf
6.30 and later, 7 included, and Sluice installs beside tritonclient[grpc], which
pins protobuf<7. Generating with any other grpcio-tools is refused.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"  # its test extra pins grpcio-tools

# (directory of .proto files relative to ROOT, Python package they belong to)
PROTO_PACKAGES: tuple[tuple[str, str], ...] = (
    ("serving/config", "serving.config"),
    ("serving/grpc", "serving.grpc"),
)

_BARE_IMPORT = re.compile(r"^import (\w+_pb2) as ", re.MULTILINE)
_SERVICE = re.compile(r"^service \w+", re.MULTILINE)
_BARE_FROM_IMPORT = re.compile(r"^from (\w+_pb2) import ", re.MULTILINE)
# Stubs are generated, not written: keep the linter and the formatter off them.
_PYI_HEADER = "# ruff: noqa\n# fmt: off\n"
_BUILDER_MODULE = re.compile(r"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, )'(\w+_pb2)'")


def _protoc(args: list[str]) -> None:
    from grpc_tools import protoc

    include = str(resources.files("grpc_tools") / "_proto")
    status = protoc.main(["grpc_tools.protoc", f"-I{include}", *args])
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}: {' '.join(args)}")


def _owners() -> dict[str, str]:
    """Generated module name -> the package it lives in, for every proto we compile."""
    owners: dict[str, str] = {}
    for proto_dir, package in PROTO_PACKAGES:
        for proto in (ROOT / proto_dir).glob("*.proto"):
            owners[f"{proto.stem}_pb2"] = package
    return owners


def _fix_imports(text: str, owners: dict[str, str]) -> str:
    text = _BARE_IMPORT.sub(lambda m: f"from {owners[m[1]]} import {m[1]} as ", text)
    text = _BARE_FROM_IMPORT.sub(lambda m: f"from {owners[m[1]]}.{m[1]} import ", text)
    return _BUILDER_MODULE.sub(lambda m: f"{m[1]}'{owners[m[2]]}.{m[2]}'", text)


def generate(out_root: Path) -> list[Path]:
    """Compile every proto into ``out_root`` (mirroring ROOT); return the written paths."""
    owners = _owners()
    # Every proto directory is on the include path, so imports use bare file names.
    includes = [f"-I{ROOT / proto_dir}" for proto_dir, _ in PROTO_PACKAGES]
    written: list[Path] = []
    for proto_dir, _package in PROTO_PACKAGES:
        source = ROOT / proto_dir
        target = out_root / proto_dir
        target.mkdir(parents=True, exist_ok=True)
        protos = sorted(source.glob("*.proto"))
        if not protos:
            continue
        services = [p for p in protos if _SERVICE.search(p.read_text())]
        _protoc(
            [
                *includes,
                f"--python_out={target}",
                f"--pyi_out={target}",
                *(f"--grpc_python_out={target}" for _ in services[:1]),
                *(p.name for p in protos),
            ]
        )
        for proto in protos:
            outputs = [f"{proto.stem}_pb2.py", f"{proto.stem}_pb2.pyi"]
            if proto in services:
                outputs.append(f"{proto.stem}_pb2_grpc.py")
            for name in outputs:
                path = target / name
                text = _fix_imports(path.read_text(), owners)
                if name.endswith(".pyi"):
                    text = _PYI_HEADER + text
                path.write_text(text)
                written.append(path.relative_to(out_root))
    return written


def wrong_grpcio_tools() -> str | None:
    """Why the installed grpcio-tools cannot reproduce the committed modules, if it cannot."""
    from importlib.metadata import PackageNotFoundError, version

    pinned = re.search(r'"grpcio-tools==([^"; ]+)', PYPROJECT.read_text())
    try:
        installed = version("grpcio-tools")
    except PackageNotFoundError:
        installed = "none"
    if pinned is None or installed == pinned[1]:
        return None
    return (
        f"grpcio-tools {installed} is installed; the generated modules come from "
        f"grpcio-tools=={pinned[1]} (pyproject.toml's test extra): pip install -e '.[test]'"
    )


def check() -> int:
    """Regenerate into a temporary tree and report committed files that differ."""
    with tempfile.TemporaryDirectory() as tmp:
        stale = []
        for rel in generate(Path(tmp)):
            fresh = (Path(tmp) / rel).read_text()
            committed_path = ROOT / rel
            committed = committed_path.read_text() if committed_path.exists() else ""
            if fresh != committed:
                stale.append(rel)
                diff = difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    fresh.splitlines(keepends=True),
                    f"committed/{rel}",
                    f"generated/{rel}",
                    n=1,
                )
                sys.stdout.writelines(list(diff)[:40])
    if stale:
        names = ", ".join(str(p) for p in stale)
        print(f"stale generated files: {names}; run python scripts/gen_protos.py")
        return 1
    print("generated protobuf modules are up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail when committed modules are stale"
    )
    args = parser.parse_args(argv)
    if (problem := wrong_grpcio_tools()) is not None:
        print(problem, file=sys.stderr)
        return 2
    if args.check:
        return check()
    for rel in generate(ROOT):
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
