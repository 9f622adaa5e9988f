from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_agent import ConfigError, config_keys, load_config

MINIMAL = """
device_id = "dev-1"
state_dir = "/var/lib/sluice-edge"
registry = "file:///srv/registry"
[mqtt]
url = "mqtt://broker:1883"
[serve]
http_port = 8000
grpc_port = 8001
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def test_the_minimal_file_of_the_issue_loads_with_every_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.device_id == "dev-1"
    assert config["outbox.policy"] == "drop_oldest"
    assert config["serve.metrics_port"] == 8002
    assert all(key.name in config.values for key in config_keys())
    assert all(key.help for key in config_keys())


BASE = 'device_id = "d"\nstate_dir = "/x"\nregistry = "file:///r"\n'


@pytest.mark.parametrize(
    ("tables", "key", "reason"),
    [
        ("[outbox]\npolicy = 'drop_newest'", "outbox.policy", "must be one of"),
        ("[serve]\ncores = -1", "serve.cores", "at least 0"),
        ("[health]\nmax_error_rate = 'high'", "health.max_error_rate", "must be a number"),
        ("usr = 'x'", "mqtt.usr", "unknown key"),
        ("[poll]\nurl = 'ftp://x'", "poll.url", "http:// or https://"),
        ("cert_file = '/etc/hostname'", "mqtt.key_file", "go together"),
    ],
)
def test_a_bad_key_is_refused_with_its_name_and_reason(tmp_path: Path, tables: str, key: str, reason: str) -> None:  # fmt: skip
    # lines before any [table] belong to [mqtt]
    path = write(tmp_path, BASE + "[mqtt]\nurl = 'mqtt://b:1883'\n" + tables + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == key and reason in err.value.reason, str(err.value)


def test_a_required_key_and_a_source_of_desired_state_are_needed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(
            write(tmp_path, 'state_dir = "/x"\nregistry = "file:///r"\n[mqtt]\nurl = "mqtt://b"')
        )
    assert err.value.key == "device_id" and "required" in err.value.reason
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, 'device_id = "d"\nstate_dir = "/x"\nregistry = "file:///r"\n'))
    assert err.value.key == "mqtt.url"


def test_a_device_id_that_would_break_topics_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL.replace('"dev-1"', '"a/#"')))
    assert err.value.key == "device_id"


def test_not_toml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "device_id = "))


def test_docs_edge_md_lists_every_key_with_its_default() -> None:
    text = (Path(__file__).parents[3] / "docs" / "edge.md").read_text()
    for key in config_keys():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{key.name}` |")), None)  # fmt: skip
        assert row is not None, key.name
        if not key.required and key.default is not None:
            shown = str(key.default).lower() if isinstance(key.default, bool) else repr(key.default)
            assert f"`{shown}`" in row, (key.name, row)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[serve]\nenabled = false\n[collect]\nenabled = true\n", "collect.enabled: needs serve.enabled = true and mqtt.url"),
        ("[collect]\nsample_rate = 1.5\n", "collect.sample_rate: must be in 0..1, not 1.5"),
        ("[collect]\nchunk_bytes = 100\n", "collect.chunk_bytes: must be at least 1024, not 100"),
    ],
)  # fmt: skip
def test_collect_keys_are_checked(tmp_path: Path, extra: str, message: str) -> None:
    text = 'device_id = "d"\nstate_dir = "s"\nregistry = "file:///r"\n[mqtt]\nurl = "mqtt://b:1883"\n' + extra  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, text))
