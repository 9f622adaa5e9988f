"""The one settings object of a server process, validated once at the edge.

Each setting is declared once, as a field of ``Settings``: its default, its flag, its help and
(derived from the flag) its ``SLUICE_*`` environment variable. The ``sluice serve`` parser
(``add_arguments``) and the fallback from flags to the environment to defaults
(``settings_from``) are both derived from those declarations.
"""

from __future__ import annotations

import argparse
import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from serving.cpus import available_cores

__all__ = [
    "ControlMode",
    "Option",
    "Settings",
    "add_arguments",
    "env_default",
    "options",
    "settings_from",
]


class ControlMode(enum.Enum):
    NONE = "none"
    POLL = "poll"
    EXPLICIT = "explicit"


def env_default(name: str, default: str) -> str:
    """``$SLUICE_<NAME>``, else ``default``: the fallback of the client commands' flags."""
    return os.environ.get(f"SLUICE_{name.upper()}", default)


# -- declaring a setting --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """How one setting is given on the command line and in the environment."""

    flag: str
    help: str
    parse: Callable[[str], Any]  # a flag's or variable's text -> the value; ValueError says why
    env: str | None  # SLUICE_<FLAG>; None: the flag alone
    default: str | None  # the default as the help shows it; None: not shown
    metavar: str | None = None
    switch: bool = False  # a flag without a value: present is True
    repeatable: bool = False  # given again for each value; a tuple
    required: bool = False
    group: str | None = None  # the help's section


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def _boolean(text: str) -> bool:
    """A switch's variable: 1, true, yes, on; or 0, false, no, off, empty."""
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not 1 or 0")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _control_mode(text: str) -> ControlMode:
    return ControlMode(_choice(*(m.value for m in ControlMode))(text))


def _directory(text: str) -> Path:
    """An absolute path, so a process that changes directory still finds it."""
    return Path(text).resolve()


def _workers(text: str) -> int:
    """A count, or ``auto``: one worker per CPU this process may use (``serving.cpus``)."""
    if text.strip().lower() == "auto":
        return available_cores()
    return _integer(text)


_PARSERS: dict[type, Callable[[str], Any]] = {int: _integer, float: _number, str: str}


def _setting(
    default: Any,
    flag: str,
    help: str,
    *,
    parse: Callable[[str], Any] | None = None,
    env: bool = True,
    shown: str | None = None,
    factory: Callable[[], Any] | None = None,
    choices: tuple[str, ...] = (),
    **option: Any,
) -> Any:
    """A field of ``Settings`` with its ``Option``: ``$SLUICE_<FLAG>`` unless ``env`` is False,
    parsed as the default's type unless ``parse`` says otherwise."""
    switch = default is False
    if choices:
        parse = parse or _choice(*choices)
        option.setdefault("metavar", "{" + ",".join(choices) + "}")
    if parse is None:
        parse = _boolean if switch else _PARSERS[type(default)]
    hidden = default is MISSING or default is None or default is False or default == ()
    if shown is None and factory is None and not hidden:
        shown = str(default.value if isinstance(default, enum.Enum) else default)
    name = flag.removeprefix("--").replace("-", "_").upper()
    declared = Option(
        flag, help, parse, env=f"SLUICE_{name}" if env else None, default=shown,
        switch=switch, **option,
    )  # fmt: skip
    if factory is not None:
        return field(default_factory=factory, metadata={"option": declared})
    if default is MISSING:
        return field(metadata={"option": declared})
    return field(default=default, metadata={"option": declared})


_SLOW_CLIENTS = "slow clients (on the HTTP and metrics ports of each process)"
_REGISTRY = "serving from a registry"
_SECURITY = "authentication and TLS"
_MONITORING = "data collection and events"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of ``sluice serve``: type, default, flag and help, declared once here."""

    model_repository: Path = _setting(
        MISSING, "--model-repository", "Triton-layout repository: DIR/<model>/[config.pbtxt] and <version>/model.onnx",
        parse=_directory, metavar="DIR")  # fmt: skip
    host: str = _setting("127.0.0.1", "--host", "address to listen on")
    http_port: int = _setting(8000, "--http-port", "HTTP port; 0 picks a free one")
    grpc_port: int = _setting(8001, "--grpc-port", "gRPC port; 0 picks a free one")
    metrics_port: int = _setting(8002, "--metrics-port", "Prometheus metrics port; 0 picks a free one")  # fmt: skip
    model_control_mode: ControlMode = _setting(
        ControlMode.NONE, "--model-control-mode", "none: load everything at start; poll: also "
        "rescan the repository; explicit: load and unload through the repository API",
        parse=_control_mode, choices=tuple(m.value for m in ControlMode))  # fmt: skip
    load_models: tuple[str, ...] = _setting(
        (), "--load-model", "in explicit mode, a model to load at start ('*' for all); repeatable",
        parse=str, env=False, repeatable=True, metavar="NAME")  # fmt: skip
    repository_poll_secs: float = _setting(
        15.0, "--repository-poll-secs", "seconds between repository scans in poll mode", metavar="SECS")  # fmt: skip
    log_level: str = _setting("info", "--log-level", "", choices=("debug", "info", "warning", "error"))  # fmt: skip
    max_request_bytes: int = _setting(
        64 * 1024 * 1024, "--max-request-size", "largest request body accepted, after decompression",
        metavar="BYTES")  # fmt: skip
    # Slow clients (serving.http.protocol): per HTTP and metrics server, per process
    http_header_timeout_secs: float = _setting(
        10.0, "--http-header-timeout-secs", "a request's line and headers must arrive within this, "
        "from its first byte or the connection's start; else 408 and close",
        metavar="SECS", group=_SLOW_CLIENTS)  # fmt: skip
    http_body_timeout_secs: float = _setting(
        60.0, "--http-body-timeout-secs", "a request's whole body must arrive within this, from "
        "the end of its headers; else 408 and close", metavar="SECS", group=_SLOW_CLIENTS)  # fmt: skip
    http_keepalive_secs: int = _setting(  # above load balancers' 60 s
        75, "--http-keepalive-secs", "an idle keep-alive connection closes after this",
        metavar="SECS", group=_SLOW_CLIENTS)  # fmt: skip
    http_max_connections: int = _setting(
        1024, "--http-max-connections", "open connections per process; one more is answered 503",
        metavar="N", group=_SLOW_CLIENTS)  # fmt: skip
    http_max_buffered_bytes: int | None = _setting(  # None: http_buffered_bytes_limit's default
        None, "--http-max-buffered-bytes", "request body bytes held across all connections of a "
        "process; the request that crosses it is answered 503", parse=_integer,
        shown="4 x --max-request-size, at least 256 MiB", metavar="BYTES", group=_SLOW_CLIENTS)  # fmt: skip
    default_max_batch_size: int = _setting(
        4, "--default-max-batch-size", "max_batch_size given to models whose config leaves it to Sluice",
        metavar="N")  # fmt: skip
    cores: int = _setting(
        None, "--cores", "CPUs the models' ONNX Runtime threads share, divided among --workers",
        parse=_integer, factory=available_cores, metavar="N",
        shown="the CPUs this process may use, after its affinity and its container's CPU limit")  # fmt: skip
    cache_dir: Path | None = _setting(
        None, "--cache-dir", "directory for optimized-model caches; off when unset", parse=Path,
        metavar="DIR")  # fmt: skip
    drain_timeout_secs: float = _setting(
        30.0, "--drain-timeout-secs", "how long a retired model version, or a stopping server "
        "or worker, may take to finish the requests it holds", metavar="SECS")  # fmt: skip
    inline_execution_us: int = _setting(
        200, "--inline-execution-us", "executions averaging under this many microseconds run on "
        "the event loop; 0: always in a thread", metavar="US")  # fmt: skip
    shared_memory: bool = _setting(
        False, "--allow-shared-memory", "serve the system shared memory extension (tensors in "
        "POSIX shm regions)")  # fmt: skip
    allow_python_models: bool = _setting(
        False, "--allow-python-models", "load models with backend \"python\" (their model.py runs "
        "in worker processes, with the server's rights; docs/python-models.md)")  # fmt: skip
    python_env: str = _setting(
        "prebuilt", "--python-env", "a Python model with a requirements.txt runs in its environment: "
        "prebuilt: only one 'sluice env build' made; auto: build a missing one at load",
        choices=("prebuilt", "auto"))  # fmt: skip
    workers: int = _setting(
        1, "--workers", "server processes (auto: one per CPU the container may use) sharing the "
        "HTTP and gRPC ports (serving.workers), each "
        "with its own models and cores/N threads", parse=_workers, metavar="N|auto")  # fmt: skip
    # gRPC connections end after an age, so clients reconnect (and re-resolve DNS) and reach
    # pods added since; off by default: one machine gains nothing from it (docs/kubernetes.md).
    grpc_max_connection_age_secs: float = _setting(
        0.0, "--grpc-max-connection-age-secs", "a gRPC connection is sent GOAWAY after this "
        "(gRPC adds +-10% jitter), so clients reconnect; 0: never", metavar="SECS")  # fmt: skip
    grpc_max_connection_age_grace_secs: float = _setting(
        30.0, "--grpc-max-connection-age-grace-secs", "calls still running on a connection past "
        "its age get this long to finish before it closes", metavar="SECS")  # fmt: skip
    # Serving from a registry (serving.following): --registry URI --model REF...
    registry: str | None = _setting(
        None, "--registry", "follow --model references in this registry: mlflow+http(s)://HOST:PORT "
        "or a local registry directory (with --model: default $SLUICE_REGISTRY, else "
        "$MLFLOW_TRACKING_URI)", parse=str, env=False, metavar="URI", group=_REGISTRY)  # fmt: skip
    registry_models: tuple[str, ...] = _setting(
        (), "--model", "a model to pull at start and follow, e.g. models:/NAME@champion; repeatable "
        "(the variable: references separated by spaces)",
        parse=str, repeatable=True, metavar="REF", group=_REGISTRY)  # fmt: skip
    registry_poll_secs: float = _setting(
        30.0, "--registry-poll-secs", "seconds between registry checks for moved references",
        metavar="SECS", group=_REGISTRY)  # fmt: skip
    registry_retention: int = _setting(
        3, "--registry-retention", "pulled versions kept on disk for rollback: the newest K plus "
        "the serving one", metavar="K", group=_REGISTRY)  # fmt: skip
    # Authentication and TLS (serving.auth, serving.tls; README "Authentication and TLS")
    auth_token_file: Path | None = _setting(
        None, "--auth-token-file", "require bearer tokens: a JSON file of named tokens (or their "
        "SHA-256) with scopes infer, read, admin, metrics; health and ready stay open",
        parse=Path, metavar="FILE", group=_SECURITY)  # fmt: skip
    jwt_jwks: str | None = _setting(
        None, "--jwt-jwks", "require bearer tokens: accept JWTs signed by a key in this JSON Web "
        "Key Set (needs --jwt-issuer and --jwt-audience)", parse=str, metavar="FILE|URL",
        group=_SECURITY)  # fmt: skip
    jwt_issuer: str | None = _setting(
        None, "--jwt-issuer", "the 'iss' a JWT must carry", parse=str, group=_SECURITY)  # fmt: skip
    jwt_audience: str | None = _setting(
        None, "--jwt-audience", "the 'aud' a JWT must carry", parse=str, group=_SECURITY)  # fmt: skip
    metrics_auth: bool = _setting(
        False, "--metrics-auth", "the metrics port requires a token with the 'metrics' scope too",
        group=_SECURITY)  # fmt: skip
    tls_cert: Path | None = _setting(
        None, "--tls-cert", "serve HTTP, gRPC and metrics over TLS with this certificate (chain)",
        parse=Path, metavar="PEM", group=_SECURITY)  # fmt: skip
    tls_key: Path | None = _setting(
        None, "--tls-key", "the private key of --tls-cert", parse=Path, metavar="PEM",
        group=_SECURITY)  # fmt: skip
    tls_client_ca: Path | None = _setting(
        None, "--tls-client-ca", "mutual TLS: require client certificates signed by this CA",
        parse=Path, metavar="PEM", group=_SECURITY)  # fmt: skip
    # Data collection and events (serving.monitoring, docs/monitoring.md)
    collect: str | None = _setting(
        None, "--collect", "collect sampled inputs and outputs of the models whose config turns "
        "it on (sluice.collect.*) into Parquet under this directory", parse=str, metavar="DEST",
        group=_MONITORING)  # fmt: skip
    collect_sample_rate: float = _setting(
        1.0, "--collect-sample-rate", "the rate for models that set no sluice.collect.sample_rate; "
        "0: only models that set one are collected", metavar="RATE", group=_MONITORING)  # fmt: skip
    collect_queue_size: int = _setting(
        10_000, "--collect-queue-size", "records waiting for the writer; past it they are dropped "
        "and counted, never waited for", metavar="N", group=_MONITORING)  # fmt: skip
    collect_roll_secs: float = _setting(
        60.0, "--collect-roll-secs", "a spool segment rolls into Parquet this long after its "
        "first record (or at 16 MiB)", metavar="SECS", group=_MONITORING)  # fmt: skip
    collect_spool_max_bytes: int = _setting(
        1024**3, "--collect-spool-max-bytes", "local spool cap; the oldest segments are dropped "
        "and counted past it", metavar="BYTES", group=_MONITORING)  # fmt: skip
    collect_max_bytes: int = _setting(
        0, "--collect-max-bytes", "Parquet output cap; the oldest files are dropped and counted "
        "past it; 0: no cap", metavar="BYTES", group=_MONITORING)  # fmt: skip
    collect_sink: str | None = _setting(
        None, "--collect-sink", "also POST each collected request and response as a CloudEvent "
        "(KServe logger headers) to this URL", parse=str, metavar="URL", group=_MONITORING)  # fmt: skip
    events: Path | None = _setting(
        None, "--events", "send Sluice's CloudEvents to the sinks of this TOML file",
        parse=Path, metavar="FILE", group=_MONITORING)  # fmt: skip
    collect_spool: Path | None = _setting(
        None, "--collect-spool", "the local spool directory (default: DEST/_spool; for a URL "
        "DEST, <model-repository>/.sluice/collect-spool)", parse=Path, metavar="DIR",
        group=_MONITORING)  # fmt: skip
    drift_window: int = _setting(
        1000, "--drift-window", "online drift: the last N collected values of each feature are "
        "compared with the version's drift_baseline.json", metavar="N", group=_MONITORING)  # fmt: skip
    drift_interval_secs: float = _setting(
        30.0, "--drift-interval-secs", "online drift: how often the windows are compared",
        metavar="SECS", group=_MONITORING)  # fmt: skip

    def __post_init__(self) -> None:
        if not self.model_repository.is_dir():
            raise ValueError(f"model repository {str(self.model_repository)!r} is not a directory")
        for name in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ValueError(f"--{name.replace('_', '-')} {port} is not a port number")
        if self.repository_poll_secs <= 0:
            raise ValueError("--repository-poll-secs must be positive")
        if self.max_request_bytes <= 0:
            raise ValueError("--max-request-size must be positive")
        self._check_http_limits()
        if self.load_models and self.model_control_mode is not ControlMode.EXPLICIT:
            raise ValueError("--load-model is only allowed with --model-control-mode explicit")
        if self.cores < 1:
            raise ValueError("--cores must be at least 1")
        if self.drain_timeout_secs < 0:
            raise ValueError("--drain-timeout-secs must not be negative")
        if self.inline_execution_us < 0:
            raise ValueError("--inline-execution-us must not be negative")
        if self.workers < 1:
            raise ValueError(f"--workers {self.workers} must be at least 1")
        if self.grpc_max_connection_age_secs < 0 or self.grpc_max_connection_age_grace_secs < 0:
            raise ValueError("--grpc-max-connection-age-secs and its grace must not be negative")
        self._check_registry()
        self._check_security()
        self._check_monitoring()

    def _check_monitoring(self) -> None:
        if not 0.0 <= self.collect_sample_rate <= 1.0:
            raise ValueError("--collect-sample-rate must be in 0..1")
        for name in ("collect_queue_size", "collect_spool_max_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.collect_roll_secs <= 0 or self.collect_max_bytes < 0:
            raise ValueError(
                "--collect-roll-secs must be positive, --collect-max-bytes not negative"
            )
        if self.drift_window < 1 or self.drift_interval_secs <= 0:
            raise ValueError("--drift-window must be at least 1, --drift-interval-secs positive")
        if self.collect is not None and "://" in self.collect:
            from serving.monitoring import check_destination

            check_destination(self.collect, output_max_bytes=self.collect_max_bytes)
        if self.collect_sink is not None and not self.collect:
            raise ValueError("--collect-sink needs --collect DEST")
        if self.events is not None:
            from serving.monitoring import EventsConfig, EventsConfigError

            try:
                EventsConfig.load(self.events)
            except EventsConfigError as exc:
                raise ValueError(str(exc)) from None

    @property
    def http_buffered_bytes_limit(self) -> int:
        """Request body bytes all connections may hold: by default four largest requests,
        and at least 256 MiB so that many ordinary requests never wait on a few large ones."""
        if self.http_max_buffered_bytes is not None:
            return self.http_max_buffered_bytes
        return max(4 * self.max_request_bytes, 256 * 1024 * 1024)

    def _check_http_limits(self) -> None:
        for name in ("http_header_timeout_secs", "http_body_timeout_secs", "http_keepalive_secs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        if self.http_max_connections < 1:
            raise ValueError("--http-max-connections must be at least 1")
        if self.http_buffered_bytes_limit < self.max_request_bytes:
            raise ValueError(
                f"--http-max-buffered-bytes {self.http_buffered_bytes_limit} is below "
                f"--max-request-size {self.max_request_bytes}: the largest request could never "
                "be received"
            )

    def _check_registry(self) -> None:
        if self.registry_models and not self.registry:
            raise ValueError("--model needs --registry URI (or $SLUICE_REGISTRY)")
        if self.registry and not self.registry_models:
            raise ValueError("--registry needs at least one --model REF to follow")
        if self.registry_poll_secs <= 0:
            raise ValueError("--registry-poll-secs must be positive")
        if self.registry_retention < 1:
            raise ValueError("--registry-retention must be at least 1")
        if self.registry_models:
            from registry_client import RegistryError, parse_reference

            for ref in self.registry_models:
                try:
                    parse_reference(ref)
                except RegistryError as exc:
                    raise ValueError(f"--model {ref!r}: {exc.message}") from None

    @property
    def auth_enabled(self) -> bool:
        return self.auth_token_file is not None or self.jwt_jwks is not None

    def _check_security(self) -> None:
        if (self.jwt_issuer or self.jwt_audience) and not self.jwt_jwks:
            raise ValueError("--jwt-issuer and --jwt-audience need --jwt-jwks FILE|URL")
        if self.jwt_jwks and not (self.jwt_issuer and self.jwt_audience):
            raise ValueError(
                "--jwt-jwks needs --jwt-issuer and --jwt-audience to check tokens against"
            )
        if self.metrics_auth and not self.auth_enabled:
            raise ValueError("--metrics-auth needs --auth-token-file or --jwt-jwks")
        if self.auth_enabled:
            from serving.auth import Authenticator

            Authenticator.check_files(self.auth_token_file, self.jwt_jwks)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        if self.tls_cert is not None and self.tls_key is not None:
            from serving.tls import check_files

            check_files(self.tls_cert, self.tls_key, self.tls_client_ca)


def options() -> dict[str, Option]:
    """Each setting's name and how it is given, in the order they are declared."""
    return {f.name: f.metadata["option"] for f in fields(Settings)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting. A flag left out is None, for ``settings_from`` to fill in."""
    groups: dict[str, Any] = {}
    for name, option in options().items():
        target: Any = parser
        if option.group is not None:
            if option.group not in groups:
                groups[option.group] = parser.add_argument_group(option.group)
            target = groups[option.group]
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": _help(option)}
        if option.switch:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = _flag_type(option.parse)
            kwargs["metavar"] = option.metavar
            if option.repeatable:
                kwargs["action"] = "append"
        if option.required:
            kwargs["required"] = True
        target.add_argument(option.flag, **kwargs)


def settings_from(values: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Each setting from ``values`` (the parsed flags; None: not given), else from its
    ``SLUICE_*`` variable, else its default. A variable that does not parse is a ValueError
    that names it; an empty one leaves a setting that defaults to nothing unset."""
    environ = os.environ if environ is None else environ
    given: dict[str, Any] = {}
    for f in fields(Settings):
        option: Option = f.metadata["option"]
        value = values.get(f.name)
        text = environ.get(option.env) if option.env is not None else None
        if value is None and text is not None and (text or f.default is not None):
            try:
                # a repeatable setting's variable holds its values separated by spaces
                value = (
                    [option.parse(t) for t in text.split()]
                    if option.repeatable
                    else option.parse(text)
                )
            except ValueError as exc:
                raise ValueError(f"${option.env}: {exc}") from None
        if value is not None:
            given[f.name] = tuple(value) if option.repeatable else value
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ValueError(f"{option.flag} {option.metavar} is required (or ${option.env})")
    return Settings(**given)


def _help(option: Option) -> str:
    parts = [option.help] if option.help else []
    if option.switch:
        parts.append(f"(or ${option.env}=1)" if option.env else "")
    elif option.env and option.default is not None:
        parts.append(f"(default ${option.env}, else {option.default})")
    elif option.env:
        parts.append(f"(default ${option.env})")
    elif option.default is not None:
        parts.append(f"(default {option.default})")
    return " ".join(p for p in parts if p).replace("%", "%%")


def _flag_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` for argparse, whose error then says why, after the flag's name."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert
