"""``sluice registry ... --events FILE`` with [[mqtt]] sinks: the command closes its
broker connections when done, and waits a bounded time for receivers that do not answer,
leaving their events in the outbox and saying so on stderr."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from serving.cli import _governance, main
from tests.integration.edge.broker import Mosquitto
from tests.integration.test_events_mqtt import Subscriber, broker, subscribe

pytestmark = pytest.mark.integration

__all__ = ["broker", "subscribe"]  # fixtures


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        main(argv)
        raise SystemExit(0)
    return int(exited.value.code or 0)


def _register(tmp_path: Path, events: Path) -> int:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"the registry does not read it")
    registry = str(tmp_path / "registry")
    return _run(["registry", "register", "fraud", str(model), "--registry", registry,
                 "--events", str(events)])  # fmt: skip


def test_the_command_closes_its_broker_connection(
    tmp_path: Path, broker: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    rx = subscribe(broker.port)
    events = tmp_path / "events.toml"
    events.write_text(f'[[mqtt]]\nhost = "127.0.0.1"\nport = {broker.port}\n'
                      'client_id = "sluice-cli-under-test"\n')  # fmt: skip
    assert _register(tmp_path, events) == 0
    ((topic, _, _, _),) = rx.until(1)
    assert topic == "sluice/events/io.sluice.model.registered"
    # The command returned in this process: its connection must be gone, with a
    # DISCONNECT (mosquitto logs a lost connection differently).
    deadline = time.monotonic() + 10
    while "Client sluice-cli-under-test disconnected" not in broker.log_path.read_text():
        assert time.monotonic() < deadline, broker.log_path.read_text()[-2000:]
        time.sleep(0.05)
    assert not list((tmp_path / "events.toml.outbox").rglob("*.json"))


def test_a_broker_that_never_answers_costs_the_command_its_budget_not_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sinks whose peers accept the TCP connection and never send a CONNACK: the
    first one's wait takes the command's whole budget, so the second is not even
    tried; both events stay in the outbox, and stderr says so in one line."""
    monkeypatch.setattr(_governance, "DELIVERY_SECS", 1.0)  # the command's budget, 10 s
    silent = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    events = tmp_path / "events.toml"
    events.write_text("".join(
        f'[[mqtt]]\nhost = "127.0.0.1"\nport = {peer.getsockname()[1]}\n' for peer in silent
    ))  # fmt: skip
    try:
        assert _register(tmp_path, events) == 0
        first, _ = silent[0].accept()  # the first sink did connect
        first.close()
        silent[1].setblocking(False)
        with pytest.raises(BlockingIOError):  # the second never did
            silent[1].accept()
    finally:
        for peer in silent:
            peer.close()
    outbox = tmp_path / "events.toml.outbox"
    assert capsys.readouterr().err == (
        f"2 events pending in {outbox}, will be delivered by the next sluice command or "
        "server using this events file\n"
    )
    assert len(list((outbox / "mqtt-0").glob("*.json"))) == 1
    assert len(list((outbox / "mqtt-1").glob("*.json"))) == 1
