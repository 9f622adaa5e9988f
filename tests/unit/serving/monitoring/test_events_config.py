"""The events file's [[mqtt]] tables: defaults, and a precise refusal for each bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.monitoring._events import EventsConfig, EventsConfigError, MqttSink


def _load(tmp_path: Path, text: str) -> EventsConfig:
    path = tmp_path / "events.toml"
    path.write_text(text)
    return EventsConfig.load(path)


def test_an_mqtt_sink_gets_its_defaults(tmp_path: Path) -> None:
    config = _load(tmp_path, '[[mqtt]]\nhost = "broker.example"\n')
    (sink,) = config.mqtt
    assert sink == MqttSink(host="broker.example")
    assert (sink.port, sink.topic, sink.qos, sink.retain, sink.protocol) == (
        1883, "sluice/events/{type}", 1, False, "5",
    )  # fmt: skip
    assert config.webhooks == ()


def test_tls_moves_the_default_port_and_files_are_relative_to_the_events_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "ca.pem").write_text("not read until connecting")
    (tmp_path / "secret").write_text("s3cret\n")
    config = _load(
        tmp_path,
        '[[mqtt]]\nhost = "b"\ntls = true\nca_file = "ca.pem"\n'
        'username = "u"\npassword_file = "secret"\ntypes = ["io.sluice.drift.*"]\n',
    )
    (sink,) = config.mqtt
    assert sink.port == 8883 and sink.ca_file == tmp_path.resolve() / "ca.pem"
    assert (sink.username, sink.password) == ("u", "s3cret")
    assert sink.wants("io.sluice.drift.detected") and not sink.wants("io.sluice.version.loaded")
    assert "s3cret" not in repr(sink)


def test_topic_placeholders_are_filled_without_wildcards() -> None:
    sink = MqttSink(host="b", topic="fleet/{source}/{type}/{subject}")
    topic = sink.topic_for("io.sluice.version.loaded", "/sluice/h1", "m+#:1")
    assert topic == "fleet//sluice/h1/io.sluice.version.loaded/m__:1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[mqtt]]\nport = 1883", r"mqtt #1: host .* is missing"),
        ('[[mqtt]]\nhost = "b"\n[[mqtt]]\nhost = ""', r"mqtt #2: host must be a non-empty string"),
        ('[[mqtt]]\nhost = "b"\nprt = 1', r"mqtt #1: unknown key 'prt'"),
        ('[[mqtt]]\nhost = "b"\nport = 0', r"mqtt #1: port must be an integer 1-65535, not 0"),
        ('[[mqtt]]\nhost = "b"\nport = 70000', r"port must be an integer 1-65535, not 70000"),
        ('[[mqtt]]\nhost = "b"\nport = "1883"', r"port must be an integer 1-65535, not '1883'"),
        ('[[mqtt]]\nhost = "b"\nqos = 3', r"mqtt #1: qos must be 0, 1 or 2, not 3"),
        ('[[mqtt]]\nhost = "b"\nqos = true', r"qos must be 0, 1 or 2, not True"),
        ('[[mqtt]]\nhost = "b"\nretain = 1', r"mqtt #1: retain must be true or false, not 1"),
        ('[[mqtt]]\nhost = "b"\nprotocol = "3"', r"mqtt #1: protocol must be \"5\" or \"3.1.1\""),
        ('[[mqtt]]\nhost = "b"\ntopic = "s/{model}"',
         r"mqtt #1: topic 's/\{model\}': unknown placeholder \{model\}"),
        ('[[mqtt]]\nhost = "b"\ntopic = "s/{type!r}"', r"takes no format spec or conversion"),
        ('[[mqtt]]\nhost = "b"\ntopic = "s/+/{type}"', r"mqtt #1: topic 's/\+/\{type\}': '\+' and '#'"),
        ('[[mqtt]]\nhost = "b"\ntopic = "s/#"', r"'\+' and '#' are subscription wildcards"),
        ('[[mqtt]]\nhost = "b"\ntopic = "s/{type"', r"topic 's/\{type'"),
        ('[[mqtt]]\nhost = "b"\ntopic = "$SYS/x"', r"starting with '\$' are the broker's"),
        ('[[mqtt]]\nhost = "b"\ntls = true\nca_file = "nope.pem"',
         r"mqtt #1: ca_file: no such file: .*nope.pem"),
        ('[[mqtt]]\nhost = "b"\ntls = true\nkey_file = "missing.key"', r"key_file: no such file"),
        ('[[mqtt]]\nhost = "b"\npassword_file = "missing"', r"mqtt #1: password_file: no such file"),
        ('[[mqtt]]\nhost = "b"\npassword = "p"', r"mqtt #1: a password needs a username"),
        ('[[mqtt]]\nhost = "b"\ntypes = ["io.other.*"]',
         r"mqtt #1: type filter 'io.other.\*' matches no Sluice event type"),
        ('[[mqtt]]\nhost = "b"\ntypes = "io.sluice.*"', r"mqtt #1: types must be a list of strings"),
        ('mqtt = "b"', r"mqtt must be \[\[mqtt\]\] tables"),
        ("[[broker]]", r"unknown key 'broker' \(known: max_event_age, max_outbox_bytes, mqtt, outbox, webhook\)"),
    ],
)  # fmt: skip
def test_bad_mqtt_sinks_are_refused_precisely(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(EventsConfigError, match=message):
        _load(tmp_path, text)


def test_tls_files_need_tls_and_a_certificate_needs_its_key(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("")
    with pytest.raises(EventsConfigError, match=r"mqtt #1: ca_file, .* need tls = true"):
        _load(tmp_path, '[[mqtt]]\nhost = "b"\nca_file = "c.pem"')
    with pytest.raises(EventsConfigError, match=r"mqtt #1: cert_file and key_file go together"):
        _load(tmp_path, '[[mqtt]]\nhost = "b"\ntls = true\ncert_file = "c.pem"')
    (tmp_path / "pw").write_text("p")
    with pytest.raises(EventsConfigError, match=r"password and password_file: give one"):
        _load(tmp_path, '[[mqtt]]\nhost = "b"\nusername = "u"\npassword = "p"\npassword_file = "pw"')  # fmt: skip
