"""What the registry verbs leave behind besides the change itself: a record in the
registry's hash-chained audit log (who, what, why) and the CloudEvents of ``--events``."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any

from serving.cli._errors import CommandError
from serving.monitoring._events import COMMAND_DELIVERY_SECS

__all__ = ["Governance", "add_governance_options"]

DELIVERY_SECS = COMMAND_DELIVERY_SECS  # the most a command waits for its receivers, all sinks


def add_governance_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", help="who is changing the registry, for the audit log "
                        "(default: $SLUICE_USER, else the login name)")  # fmt: skip
    parser.add_argument("--message", "-m", default="", help="why, for the audit log")
    parser.add_argument("--events", type=Path, metavar="FILE",
                        help="send this change's events to the sinks of FILE (docs/monitoring.md)")  # fmt: skip


class Governance:
    """Built before the change, so a bad events file refuses it before anything moved."""

    def __init__(self, args: argparse.Namespace) -> None:
        from registry_client import current_user

        self.user: str = args.user or current_user()
        self.message: str = args.message
        self.bus: Any = None
        if args.events is not None:
            from serving.monitoring import EventBus, EventsConfig, EventsConfigError

            try:
                config = EventsConfig.load(args.events)
            except EventsConfigError as exc:
                raise CommandError(str(exc)) from None
            self.bus = EventBus(config, f"/sluice/{socket.gethostname()}/registry")

    async def audit(self, registry: Any, action: str, subject: str, **details: Any) -> None:
        """Append to the registry's audit log (a local registry's file, or MLflow's
        ``sluice-audit`` experiment)."""
        from registry_client import append_record

        await append_record(registry.audit, action, subject, user=self.user,
                            message=self.message, details=details)  # fmt: skip

    def emit(self, event_type: str, subject: str, **data: Any) -> None:
        if self.bus is not None:
            data.update(user=self.user, message=self.message)
            self.bus.publish(event_type, data, subject=subject)

    def deliver(self) -> None:
        """One delivery attempt, ``DELIVERY_SECS`` at most, then the MQTT connections are
        closed; what a receiver did not take waits in the outbox, and stderr says so."""
        if self.bus is not None:
            self.bus.deliver_before_exit(DELIVERY_SECS)
