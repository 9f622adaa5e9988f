"""How every ``sluice`` command fails: one ``sluice: error: ...`` line and a non-zero exit."""

from __future__ import annotations

import sys
from typing import NoReturn

__all__ = ["CommandError", "explain", "fail"]


class CommandError(Exception):
    """A failure to report as one line and a non-zero exit."""


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"sluice: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def explain(exc: Exception, url: str) -> str | None:
    """One line for a failure users meet outside Sluice's own errors; None for a bug."""
    name = type(exc).__name__
    if name in {"ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError"}:
        return f"cannot reach the server at {url}: {exc}"
    return _protobuf_mismatch(exc)


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
