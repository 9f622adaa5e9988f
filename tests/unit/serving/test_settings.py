"""Each setting is declared once: its flag, its SLUICE_ variable and its default agree."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from serving.cpus import available_cores
from serving.settings import ControlMode, Settings, add_arguments, options, settings_from
from tests.tls_certs import Pki, make_pki

README = Path(__file__).parents[3] / "README.md"
WITH_VARIABLE = [name for name, option in options().items() if option.env is not None]
# Tested on their own (test_settings_environment.py): the repository has no default, and a
# list's variable holds several references (the flag one each).
GENERIC = [name for name in WITH_VARIABLE if name not in ("model_repository", "registry_models")]


@dataclass(frozen=True)
class Files:
    repository: Path
    tokens: Path
    jwks: Path
    pki: Pki
    cache: Path
    events: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("settings")
    (root / "repository").mkdir()
    tokens = root / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"name": "ci", "token": "t" * 24, "scopes": ["infer"]}]}))  # fmt: skip
    jwks = root / "jwks.json"
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    jwks.write_text(json.dumps({"keys": [{**ECAlgorithm.to_jwk(public, as_dict=True), "kid": "k"}]}))  # fmt: skip
    events = root / "events.toml"
    events.write_text("# no sinks\n")
    return Files(root / "repository", tokens, jwks, make_pki(root / "pki"), root / "cache", events)


@dataclass(frozen=True)
class Sample:
    text: str  # what $SLUICE_... (or the flag) says
    value: Any  # the setting it gives
    needs: dict[str, str] = field(default_factory=dict)  # other variables it is only valid with


def _sample(name: str, f: Files) -> Sample:
    """A value for each setting that differs from its default; a setting added to the table
    without one here fails ``test_each_variable_sets_its_setting``."""
    jwt = {"SLUICE_JWT_JWKS": str(f.jwks), "SLUICE_JWT_ISSUER": "https://idp", "SLUICE_JWT_AUDIENCE": "s"}  # fmt: skip
    tls = {"SLUICE_TLS_CERT": str(f.pki.server_cert), "SLUICE_TLS_KEY": str(f.pki.server_key)}
    samples = {
        "host": Sample("0.0.0.0", "0.0.0.0"),
        "http_port": Sample("9000", 9000),
        "grpc_port": Sample("9001", 9001),
        "metrics_port": Sample("9002", 9002),
        "model_control_mode": Sample("poll", ControlMode.POLL),
        "repository_poll_secs": Sample("2.5", 2.5),
        "log_level": Sample("debug", "debug"),
        "max_request_bytes": Sample("1048576", 1048576),
        "http_header_timeout_secs": Sample("3", 3.0),
        "http_body_timeout_secs": Sample("4.5", 4.5),
        "http_keepalive_secs": Sample("5", 5),
        "http_max_connections": Sample("7", 7),
        "http_max_buffered_bytes": Sample("134217728", 134217728),
        "default_max_batch_size": Sample("8", 8),
        "cores": Sample(str(available_cores() + 1), available_cores() + 1),
        "cache_dir": Sample(str(f.cache), f.cache),
        "drain_timeout_secs": Sample("1.5", 1.5),
        "inline_execution_us": Sample("0", 0),
        "shared_memory": Sample("1", True),
        "allow_python_models": Sample("1", True),
        "python_env": Sample("auto", "auto"),
        "workers": Sample("2", 2),
        "grpc_max_connection_age_secs": Sample("300", 300.0),
        "grpc_max_connection_age_grace_secs": Sample("5", 5.0),
        "registry_poll_secs": Sample("5", 5.0),
        "registry_retention": Sample("1", 1),
        "auth_token_file": Sample(str(f.tokens), f.tokens),
        "jwt_jwks": Sample(str(f.jwks), str(f.jwks), jwt),
        "jwt_issuer": Sample("https://other", "https://other", jwt),
        "jwt_audience": Sample("other", "other", jwt),
        "metrics_auth": Sample("1", True, {"SLUICE_AUTH_TOKEN_FILE": str(f.tokens)}),
        "tls_cert": Sample(str(f.pki.server_cert), f.pki.server_cert, tls),
        "tls_key": Sample(str(f.pki.server_key), f.pki.server_key, tls),
        "tls_client_ca": Sample(str(f.pki.client_ca), f.pki.client_ca, tls),
        "collect": Sample(str(f.cache.parent / "collected"), str(f.cache.parent / "collected")),
        "collect_sample_rate": Sample("0.5", 0.5),
        "collect_queue_size": Sample("16", 16),
        "collect_roll_secs": Sample("0.5", 0.5),
        "collect_spool_max_bytes": Sample("1000", 1000),
        "collect_max_bytes": Sample("2000", 2000),
        "collect_sink": Sample(
            "http://127.0.0.1:9/", "http://127.0.0.1:9/", {"SLUICE_COLLECT": "/c"}
        ),
        "events": Sample(str(f.events), f.events),
        "collect_spool": Sample(str(f.cache.parent / "spool"), f.cache.parent / "spool"),
        "drift_window": Sample("200", 200),
        "drift_interval_secs": Sample("5", 5.0),
    }
    assert name in samples, f"give the new setting {name!r} a sample value in this test"
    return samples[name]


def _parse(*argv: str) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return vars(parser.parse_args(argv))


def test_every_setting_has_one_flag_and_one_variable() -> None:
    declared = options()
    assert list(declared) == [f.name for f in fields(Settings)]
    flags = [o.flag for o in declared.values()]
    assert len(set(flags)) == len(flags) and all(re.fullmatch(r"--[a-z-]+", f) for f in flags)
    for option in declared.values():
        if option.env is not None:
            assert option.env == "SLUICE_" + option.flag[2:].replace("-", "_").upper()
    # The settings without a variable: --load-model, and --registry, whose fallback
    # ($SLUICE_REGISTRY, else $MLFLOW_TRACKING_URI) applies only with --model.
    assert [n for n in declared if n not in WITH_VARIABLE] == ["load_models", "registry"]


@pytest.mark.parametrize("name", GENERIC)
def test_each_variable_sets_its_setting(name: str, files: Files) -> None:
    sample = _sample(name, files)
    option = options()[name]
    assert option.env is not None
    declared = next(f for f in fields(Settings) if f.name == name)
    default = declared.default if declared.default is not MISSING else declared.default_factory()  # type: ignore[misc]
    assert sample.value != default, "the sample must differ from the default"
    others = {k: v for k, v in sample.needs.items() if k != option.env}
    repository = {"model_repository": files.repository}
    from_env = settings_from(repository, {**others, option.env: sample.text})
    assert getattr(from_env, name) == sample.value
    flag = [option.flag] if option.switch else [option.flag, sample.text]
    from_flag = settings_from(_parse("--model-repository", str(files.repository), *flag), others)
    assert from_flag == from_env


def test_without_flags_or_variables_the_defaults_hold(files: Files) -> None:
    settings = settings_from(_parse("--model-repository", str(files.repository)), {})
    assert settings == Settings(model_repository=files.repository)
    assert (settings.http_port, settings.grpc_port, settings.metrics_port) == (8000, 8001, 8002)
    assert settings.drain_timeout_secs == 30.0 and settings.inline_execution_us == 200
    assert settings.cores == available_cores()


def test_a_flag_wins_over_its_variable(files: Files) -> None:
    values = _parse("--model-repository", str(files.repository), "--http-port", "9100")
    environ = {"SLUICE_HTTP_PORT": "9000", "SLUICE_GRPC_PORT": "9001"}
    settings = settings_from(values, environ)
    assert (settings.http_port, settings.grpc_port) == (9100, 9001)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SLUICE_HTTP_PORT": "eighty"}, "$SLUICE_HTTP_PORT: 'eighty' is not an integer"),
        (
            {"SLUICE_DRAIN_TIMEOUT_SECS": "soon"},
            "$SLUICE_DRAIN_TIMEOUT_SECS: 'soon' is not a number",
        ),
        (
            {"SLUICE_MODEL_CONTROL_MODE": "auto"},
            "$SLUICE_MODEL_CONTROL_MODE: 'auto' is not one of none, poll, explicit",
        ),
        (
            {"SLUICE_ALLOW_SHARED_MEMORY": "maybe"},
            "$SLUICE_ALLOW_SHARED_MEMORY: 'maybe' is not 1 or 0",
        ),
        ({"SLUICE_CORES": "0"}, "--cores must be at least 1"),
        ({"SLUICE_DRAIN_TIMEOUT_SECS": "-1"}, "--drain-timeout-secs must not be negative"),
    ],
)
def test_a_bad_variable_is_refused_by_name(
    files: Files, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError) as raised:
        settings_from({"model_repository": files.repository}, environ)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("text", "value"), [("1", True), ("true", True), ("on", True), ("0", False), ("", False)]
)
def test_a_switch_variable(files: Files, text: str, value: bool) -> None:
    environ = {"SLUICE_ALLOW_SHARED_MEMORY": text}
    settings = settings_from({"model_repository": files.repository}, environ)
    assert settings.shared_memory is value


def test_an_empty_variable_leaves_an_optional_setting_unset(files: Files) -> None:
    environ = {"SLUICE_CACHE_DIR": "", "SLUICE_HTTP_MAX_BUFFERED_BYTES": "", "SLUICE_TLS_CERT": ""}
    settings = settings_from({"model_repository": files.repository}, environ)
    assert (settings.cache_dir, settings.http_max_buffered_bytes, settings.tls_cert) == (None,) * 3


def test_a_bad_flag_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _parse("--model-repository", ".", "--cores", "many")
    assert exited.value.code == 2
    assert "argument --cores: 'many' is not an integer" in capsys.readouterr().err


def test_the_readme_documents_every_flag() -> None:
    text = README.read_text()
    section = text[text.index("## Command line") :]
    section = section[: section.index("\n## ", 1)]
    missing = [o.flag for o in options().values() if not re.search(rf"{o.flag}\b", section)]
    assert missing == []
