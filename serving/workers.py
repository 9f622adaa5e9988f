"""``sluice serve --workers N``: a supervisor and N server processes sharing the ports.

The supervisor picks the HTTP and gRPC ports once and holds them (``shared_listener``);
each worker binds its own SO_REUSEPORT listeners on them, and the kernel spreads new
connections among the workers. Workers keep their metrics in prometheus_client's
multiprocess files; the supervisor alone serves the metrics port, with every worker's
values merged. SIGTERM and SIGINT are forwarded: each worker stops accepting, drains
what it holds and exits. A worker that dies otherwise is restarted, later each time
while it keeps dying, and joins the ports only once its models are ready.
See docs/workers.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from serving.desired_sync import DesiredRelay
from serving.process import bind, configure_logging, http_server, metrics_app, run_loop
from serving.settings import Settings

__all__ = [
    "RestartBackoff",
    "Supervisor",
    "WorkerLink",
    "describe_exit",
    "shared_listener",
    "supervise",
    "worker_settings",
]

log = logging.getLogger("sluice")

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# How long past drain_timeout_secs a worker may take to exit before it is killed.
_KILL_GRACE_SECS = 10.0


def worker_settings(settings: Settings, http_port: int, grpc_port: int) -> Settings:
    """One worker's settings: the shared ports and its share of the cores."""
    return dataclasses.replace(
        settings,
        http_port=http_port,
        grpc_port=grpc_port,
        cores=max(1, settings.cores // settings.workers),
    )


def shared_listener(host: str, port: int) -> socket.socket:
    """Reserve ``host:port`` (0: a free port) for workers that share it with SO_REUSEPORT.

    A probe socket without SO_REUSEPORT binds first, so a port another process
    listens on fails loudly, as with one process, even when that process shares
    with SO_REUSEPORT itself. The socket returned is bound with SO_REUSEPORT and
    never listens: it takes no connections, and holds the port number (chosen
    once when ``port`` is 0) for the workers while any of them restarts.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    hold = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
        # Bound while the probe still is (neither listens), so the port cannot slip away.
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        hold.bind((host, port))
    except OSError as exc:
        hold.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        probe.close()
    return hold


def describe_exit(exitcode: int) -> str:
    """How a worker ended, from ``multiprocessing.Process.exitcode``."""
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


@dataclass(slots=True)
class RestartBackoff:
    """How long to wait before restarting a worker that died.

    At once the first time; then ``initial`` seconds, doubling up to ``maximum``,
    while it keeps dying within ``stable_secs`` of its start. A worker that ran
    that long starts over at once.
    """

    initial: float = 0.5
    maximum: float = 30.0
    stable_secs: float = 60.0
    _next: float = 0.0

    def delay(self, lived_secs: float) -> float:
        if lived_secs >= self.stable_secs:
            self._next = 0.0
        delay = self._next
        self._next = min(self.maximum, max(self.initial, delay * 2))
        return delay


# -- the worker side ------------------------------------------------------------------------


class WorkerLink:
    """A worker's end of its pipe to the supervisor: it reports listening and ready, and
    shuts the worker down when the supervisor is gone (the pipe reads end-of-file)."""

    def __init__(self, index: int, conn: Connection, join_when_ready: bool) -> None:
        self.index = index
        self.join_when_ready = join_when_ready
        self._conn = conn
        self._desired: Any = None  # serving.desired_sync.WorkerDesiredState, once serving
        self._early: list[tuple[Any, ...]] = []  # desired-state messages before that
        self._arms: Any = None  # serving.rollout.WorkerArms: a canary judged on all workers

    def follow_desired(self, manager: Any) -> None:
        """Send this worker's API load/unload targets to the supervisor and apply the
        ones it relays (serving.desired_sync)."""
        from serving.desired_sync import WorkerDesiredState

        self._desired = WorkerDesiredState(manager, self.index, self._send)
        # What the supervisor sent before this worker started (earlier API calls) is
        # already in the pipe: take it now, so the first load keeps to it.
        with contextlib.suppress(EOFError, OSError):
            while self._conn.poll():
                message = self._conn.recv()
                if message[0] == "desired":
                    self._early.append(message)
                elif self._arms is not None:
                    self._arms.received(message)
        early, self._early = self._early, []
        for message in early:
            self._desired.relayed(*message[1:])

    def share_rollouts(self, rollout: Any) -> None:
        """Judge this worker's canary rollouts on every worker's traffic, and answer the
        worker that judges one (serving.rollout._peers)."""
        from serving.rollout import ArmWindows, WorkerArms

        self._arms = WorkerArms(self._send)
        self._arms.windows = ArmWindows(rollout.traffic.arms)
        rollout.peers = self._arms.peers

    def listening(self, http_port: int, grpc_port: int) -> None:
        self._send(("listening", http_port, grpc_port))

    def ready(self) -> None:
        self._send(("ready",))

    def _send(self, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(message)

    def watch_supervisor(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self._conn.fileno(), self._on_readable, loop)

    def _on_readable(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            message = self._conn.recv()  # relayed desired state, or end-of-file
            if message[0] == "desired":
                if self._desired is None:
                    self._early.append(message)
                else:
                    self._desired.relayed(*message[1:])
            elif self._arms is not None:  # a rollout's questions and answers
                self._arms.received(message)
        except (EOFError, OSError):
            loop.remove_reader(self._conn.fileno())
            log.warning("the supervisor is gone; shutting down")
            os.kill(os.getpid(), signal.SIGTERM)  # the server's own graceful stop


async def _serve_worker(settings: Settings, link: WorkerLink) -> None:
    from serving.server import serve

    link.watch_supervisor(asyncio.get_running_loop())
    await serve(settings, link)


def _worker_main(settings: Settings, index: int, conn: Connection, join_when_ready: bool) -> None:
    """The entry point of a worker process (started with multiprocessing's spawn)."""
    # Ctrl-C reaches the whole process group; the supervisor forwards SIGTERM, so a worker
    # still starting up ignores SIGINT, and once it serves both stop it gracefully.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_level, f"[worker {index} pid %(process)d]")
    try:
        run_loop(_serve_worker(settings, WorkerLink(index, conn, join_when_ready)))
    except OSError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None


# -- the supervisor -------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Slot:
    """One worker position; its process changes when it is restarted."""

    index: int
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    process: Any = None  # a multiprocessing process while one runs
    conn: Connection | None = None
    started_at: float = 0.0
    listening: bool = False
    ready: bool = False
    restarts: int = 0
    restart: asyncio.TimerHandle | None = None


class Supervisor:
    """Starts, watches, restarts and stops the workers; serves the merged metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = [_Slot(i + 1) for i in range(settings.workers)]
        self._worker_settings = settings
        self._metrics_dir = ""
        self._stopping = False
        self._unclean = False
        self._failure: str | None = None
        self._ready_logged = False
        self._kill_timer: asyncio.TimerHandle | None = None
        self._started = asyncio.Event()  # every worker listens, or the start failed
        self._exited = asyncio.Event()  # stopping, and no worker runs
        self._relay = DesiredRelay()  # API loads/unloads, to every worker
        from serving.rollout import ArmRelay

        self._arm_relay = ArmRelay()  # a rollout's judge asks the other workers' traffic

    async def run(self) -> int:
        """Serve until SIGTERM or SIGINT; 0 when every worker drained and exited."""
        from serving import __version__
        from serving.metrics import AggregatedMetrics

        s = self.settings
        loop = asyncio.get_running_loop()
        with contextlib.ExitStack() as stack:
            http_hold = stack.enter_context(shared_listener(s.host, s.http_port))
            grpc_hold = stack.enter_context(shared_listener(s.host, s.grpc_port))
            metrics_sock = stack.enter_context(bind(s.host, s.metrics_port))
            self._metrics_dir = tempfile.mkdtemp(prefix="sluice-metrics-")
            stack.callback(shutil.rmtree, self._metrics_dir, ignore_errors=True)
            # Set before any worker starts: prometheus_client reads it when it is imported.
            previous = os.environ.get(_MULTIPROC_ENV)
            os.environ[_MULTIPROC_ENV] = self._metrics_dir
            stack.callback(_restore_env, _MULTIPROC_ENV, previous)
            http_port, grpc_port = http_hold.getsockname()[1], grpc_hold.getsockname()[1]
            self._worker_settings = worker_settings(s, http_port, grpc_port)
            scrape_app: Any = metrics_app(AggregatedMetrics(self._metrics_dir))
            if s.metrics_auth:  # the workers check their own ports' tokens
                from serving.auth import Authenticator
                from serving.http.auth import protect_metrics

                scrape_app = protect_metrics(scrape_app, Authenticator.from_settings(s))
            metrics_server = http_server(scrape_app, s)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
            log.info(
                "sluice %s starting %d workers, %d core(s) each",
                __version__, s.workers, self._worker_settings.cores,
            )  # fmt: skip
            metrics_task: asyncio.Task[None] | None = None
            try:
                for slot in self._slots:
                    self._spawn(slot, join_when_ready=False)
                await self._started.wait()
                if not self._stopping:
                    log.info("HTTP service listening on %s:%d", s.host, http_port)
                    log.info("gRPC service listening on %s:%d", s.host, grpc_port)
                    host, port = metrics_sock.getsockname()[:2]
                    log.info("metrics service listening on %s:%d", host, port)
                    metrics_task = asyncio.create_task(metrics_server.serve(sockets=[metrics_sock]))
                await self._exited.wait()
            finally:
                self._kill_all()
                if metrics_task is not None:
                    metrics_server.should_exit = True
                    await metrics_task
        if self._failure is not None:
            log.error("%s", self._failure)
            return 1
        if self._unclean:
            return 1
        log.info("all workers exited")
        return 0

    def stop(self) -> None:
        """Forward SIGTERM to every worker; kill those still running after the drain."""
        if self._stopping:
            return
        self._stopping = True
        self._started.set()
        running = [slot for slot in self._slots if slot.process is not None]
        log.info("shutting down: draining %d worker(s)", len(running))
        for slot in self._slots:
            if slot.restart is not None:
                slot.restart.cancel()
                slot.restart = None
        for slot in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.process.pid, signal.SIGTERM)
        if not running:
            self._exited.set()
            return
        timeout = self.settings.drain_timeout_secs + _KILL_GRACE_SECS
        self._kill_timer = asyncio.get_running_loop().call_later(timeout, self._kill_stragglers)

    def _spawn(self, slot: _Slot, *, join_when_ready: bool) -> None:
        slot.restart = None
        if self._stopping:
            return
        loop = asyncio.get_running_loop()
        # Duplex, so that the worker reads end-of-file when the supervisor is gone.
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main,
            args=(self._worker_settings, slot.index, child, join_when_ready),
            name=f"sluice-worker-{slot.index}",
        )
        process.start()
        child.close()
        for kept in self._relay.backlog():  # what earlier API calls asked of every worker
            parent.send(kept)
        slot.process, slot.conn, slot.started_at = process, parent, time.monotonic()
        slot.listening = slot.ready = False
        loop.add_reader(parent.fileno(), self._on_message, slot)
        loop.add_reader(process.sentinel, self._on_exit, slot)
        log.info("worker %d started (pid %d)", slot.index, process.pid)

    def _on_message(self, slot: _Slot) -> None:
        conn = slot.conn
        assert conn is not None
        try:
            message = conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
            return
        if message[0] == "listening":
            slot.listening = True
            if all(s.listening for s in self._slots):
                self._started.set()
        elif message[0] == "desired":  # an API load/unload: every worker applies it
            relayed = self._relay.received(slot.index, message[1], message[2])
            for other in self._slots:
                if other.conn is not None and other.process is not None:
                    with contextlib.suppress(OSError):
                        other.conn.send(relayed)
        elif message[0].startswith("arms-"):
            live = [s.index for s in self._slots if s.conn is not None and s.process is not None]
            self._arm_relay.received(slot.index, message, live, self._send_to)
        elif message[0] == "ready":
            slot.ready = True
            pid = slot.process.pid if slot.process is not None else 0
            if slot.restarts:
                log.info("worker %d (pid %d) restarted and serving", slot.index, pid)
            elif not self._ready_logged and all(s.ready for s in self._slots):
                self._ready_logged = True
                log.info("server ready: %d workers serving", len(self._slots))

    def _on_exit(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        process, conn = slot.process, slot.conn
        loop.remove_reader(process.sentinel)
        if conn is not None:
            loop.remove_reader(conn.fileno())
            conn.close()
        process.join()
        slot.process = slot.conn = None
        self._arm_relay.gone(slot.index, self._send_to)
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(process.pid, self._metrics_dir)
        how = describe_exit(process.exitcode)
        if self._stopping:
            if process.exitcode not in (0, -signal.SIGTERM):
                self._unclean = True
                log.warning("worker %d (pid %d) %s", slot.index, process.pid, how)
            if all(s.process is None for s in self._slots):
                if self._kill_timer is not None:
                    self._kill_timer.cancel()
                self._exited.set()
            return
        if not self._started.is_set():
            self._failure = f"worker {slot.index} (pid {process.pid}) {how} while starting"
            self.stop()
            return
        delay = slot.backoff.delay(time.monotonic() - slot.started_at)
        log.warning(
            "worker %d (pid %d) %s; restarting it in %.1fs", slot.index, process.pid, how, delay
        )
        slot.restarts += 1
        slot.restart = loop.call_later(
            delay, functools.partial(self._spawn, slot, join_when_ready=True)
        )

    def _send_to(self, index: int, message: tuple[Any, ...]) -> None:
        for slot in self._slots:
            if slot.index == index and slot.conn is not None and slot.process is not None:
                with contextlib.suppress(OSError):
                    slot.conn.send(message)

    def _kill_stragglers(self) -> None:
        for slot in self._slots:
            if slot.process is not None and slot.process.exitcode is None:
                log.error(
                    "worker %d (pid %d) did not exit within %.0fs; killing it",
                    slot.index, slot.process.pid, self.settings.drain_timeout_secs,
                )  # fmt: skip
                self._unclean = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signal.SIGKILL)

    def _kill_all(self) -> None:
        """Leave no worker behind when the supervisor itself fails."""
        for slot in self._slots:
            process = slot.process
            if process is not None and process.exitcode is None:
                process.kill()
                process.join()


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def supervise(settings: Settings) -> None:
    """Run ``settings.workers`` server processes; exits non-zero when they did not end cleanly."""
    configure_logging(settings.log_level)
    code = 0

    async def main() -> None:
        nonlocal code
        code = await Supervisor(settings).run()

    run_loop(main())
    if code:
        raise SystemExit(code)
