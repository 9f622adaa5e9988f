"""``sluice-edge``: ``run`` the agent on a device; ``publish``, ``status`` and ``collect-receive`` for
the fleet."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from edge_agent._config import ConfigError, config_keys, load_config
from edge_agent._document import DocumentError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice-edge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent on this device")
    run.add_argument("--config", required=True, type=Path, help="the agent's TOML file")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    check = sub.add_parser("check-config", help="validate a config file and print it with defaults")
    check.add_argument("--config", required=True, type=Path)
    sub.add_parser("keys", help="list every config key with its default")
    pub = sub.add_parser("publish", help="publish a desired document (retained, QoS 1)")
    pub.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://...")
    pub.add_argument("--device", required=True, action="append", help="device id (repeatable)")
    pub.add_argument("--topic-prefix", default="sluice/devices")
    pub.add_argument("document", type=Path, help="desired.json")
    st = sub.add_parser("status", help="every device's reported state")
    st.add_argument("--broker", required=True)
    st.add_argument("--device", help="only this device")
    st.add_argument("--topic-prefix", default="sluice/devices")
    st.add_argument("--json", action="store_true", help="raw JSON instead of a table")
    st.add_argument("--timeout", type=float, default=5.0)
    rcv = sub.add_parser("collect-receive", help="write the data devices collect into a collection directory")  # fmt: skip
    rcv.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://...")
    rcv.add_argument("--out", required=True, type=Path, help="the directory (sluice drift --current reads it)")  # fmt: skip
    rcv.add_argument("--device", help="only this device")
    rcv.add_argument("--topic-prefix", default="sluice/devices")
    rcv.add_argument("--client-id", default="sluice-collect-receiver", help="the broker keeps this session's messages while the receiver is away")  # fmt: skip
    rcv.add_argument("--per-device", action="store_true", help="OUT/device=<id>/model=... instead of every device together")  # fmt: skip
    rcv.add_argument("--idle-secs", type=float, help="stop after this long without a message (default: run until interrupted)")  # fmt: skip
    return parser


def _collect_receive(args: argparse.Namespace) -> int:
    """Exit status 1 when a chunk was refused or a file is still incomplete at the end."""
    from edge_agent._receiver import receive_collected

    refused: list[str] = []

    def on_file(got: Any) -> None:
        print(f"{got.device} {got.path}: {got.rows} rows -> {got.file}", flush=True)

    def on_refused(reason: str) -> None:
        refused.append(reason)
        print(f"sluice-edge collect-receive: refused: {reason}", file=sys.stderr, flush=True)

    try:
        receiver = receive_collected(
            args.broker, args.out, device=args.device, prefix=args.topic_prefix,
            client_id=args.client_id, per_device=args.per_device, idle_secs=args.idle_secs,
            on_file=on_file, on_refused=on_refused,
        )  # fmt: skip
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"sluice-edge collect-receive: {exc}", file=sys.stderr)
        return 1
    incomplete = receiver.incomplete()
    for item in incomplete:
        print(f"sluice-edge collect-receive: {item}", file=sys.stderr)
    return 1 if refused or incomplete else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("run", "check-config"):
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(f"sluice-edge: bad config: {exc}", file=sys.stderr)
            return 2
        if args.command == "check-config":
            for key in config_keys():
                print(f"{key.name} = {config[key.name]!r}")
            return 0
        logging.basicConfig(
            level=args.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)  # the gate polls on loopback
        from edge_agent._agent import Agent

        try:
            import uvloop
        except ImportError:  # pragma: no cover
            asyncio.run(Agent(config).run())
        else:
            uvloop.run(Agent(config).run())
        return 0
    if args.command == "keys":
        for key in config_keys():
            default = "(required)" if key.required else repr(key.default)
            print(f"{key.name:28} {default:22} {key.help}")
        return 0
    if args.command == "collect-receive":
        return _collect_receive(args)
    from edge_agent._fleet import collect_status, publish_desired, render_table

    if args.command == "publish":
        try:
            version = publish_desired(args.broker, args.device, args.document.read_bytes(), prefix=args.topic_prefix)  # fmt: skip
        except (DocumentError, OSError, TimeoutError) as exc:
            print(f"sluice-edge publish: {exc}", file=sys.stderr)
            return 1
        print(f"published desired version {version} to {', '.join(args.device)}")
        return 0
    views = collect_status(args.broker, device=args.device, prefix=args.topic_prefix, timeout=args.timeout)  # fmt: skip
    if args.json:
        print(json.dumps({k: {"status": v.status, "reported": v.reported, "desired": v.desired} for k, v in views.items()}, indent=2))  # fmt: skip
    else:
        print(render_table(views))
    return 0
