"""``sluice health``: is the local server ready (or live)? A container's HEALTHCHECK.

It reads the server's own settings from the same ``SLUICE_*`` variables (``SLUICE_HTTP_PORT``,
``SLUICE_TLS_CERT``), so one command works with TLS on or off. With TLS on, it trusts
``--ca`` when given, else the server's own certificate: pinned to that file, so the host name
it was issued for need not be 127.0.0.1. Under mutual TLS it presents ``--client-cert``.
"""

from __future__ import annotations

import argparse
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from serving.cli._errors import fail

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    health = sub.add_parser(
        "health", help="exit 0 when the local server is ready (a container's HEALTHCHECK)"
    )
    health.add_argument("--url", default=None, metavar="URL",
                        help="the server (default: http(s)://127.0.0.1:$SLUICE_HTTP_PORT, "
                        "https when $SLUICE_TLS_CERT is set)")  # fmt: skip
    health.add_argument("--live", action="store_true",
                        help="ask /v2/health/live instead of /v2/health/ready")  # fmt: skip
    health.add_argument("--timeout", type=float, default=2.0, metavar="SECS")
    health.add_argument("--ca", type=Path, default=_env_path("SLUICE_HEALTH_CA"), metavar="PEM",
                        help="trust this CA (default $SLUICE_HEALTH_CA, else the server's own "
                        "certificate $SLUICE_TLS_CERT)")  # fmt: skip
    health.add_argument("--client-cert", type=Path, default=_env_path("SLUICE_HEALTH_CLIENT_CERT"),
                        metavar="PEM", help="mutual TLS: present this certificate "
                        "(default $SLUICE_HEALTH_CLIENT_CERT)")  # fmt: skip
    health.add_argument("--client-key", type=Path, default=_env_path("SLUICE_HEALTH_CLIENT_KEY"),
                        metavar="PEM", help="its private key (default $SLUICE_HEALTH_CLIENT_KEY)")  # fmt: skip
    health.set_defaults(run=_health)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _context(args: argparse.Namespace, server_cert: Path | None) -> ssl.SSLContext:
    if args.ca is not None:
        context = ssl.create_default_context(cafile=str(args.ca))
    elif server_cert is not None:
        # Pinned to the server's own certificate: it is the trust anchor, whatever name it
        # carries (the pod's, the Service's), so the name is not checked.
        context = ssl.create_default_context(cafile=str(server_cert))
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        context.check_hostname = False
    else:
        context = ssl.create_default_context()
    if args.client_cert is not None:
        context.load_cert_chain(args.client_cert, args.client_key)
    return context


def _health(args: argparse.Namespace) -> None:
    """Exit 0 on 200; 1 with one line (the status, or why no answer came) otherwise."""
    server_cert = _env_path("SLUICE_TLS_CERT")
    url = args.url
    if url is None:
        scheme = "https" if server_cert is not None else "http"
        url = f"{scheme}://127.0.0.1:{os.environ.get('SLUICE_HTTP_PORT') or '8000'}"
    url = f"{url.rstrip('/')}/v2/health/{'live' if args.live else 'ready'}"
    try:
        context = _context(args, server_cert) if url.startswith("https:") else None
    except (OSError, ssl.SSLError) as exc:
        fail(f"cannot load the TLS files: {exc}")
    try:
        with urllib.request.urlopen(url, timeout=args.timeout, context=context) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        fail(f"{url}: {reason}")
    if status != 200:
        fail(f"{url}: {status} (not {'live' if args.live else 'ready'})")
    print(f"{url}: 200")
