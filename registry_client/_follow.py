"""Following registry references: resolve, pull, retain; the server decides the rest.

``sluice serve --registry URI --model models:/NAME@champion`` pulls the version the
reference resolves to into the model repository (the Puller's verified, atomic install)
and hands the server the versions each model should serve (``ServingTarget.follow``);
every ``--registry-poll-secs`` it resolves the reference again, and when the alias has
moved, up or down, it pulls the new version and hands it over; the server loads and
warms it while the old one keeps serving, switches traffic and retires the old one.
The follower keeps old versions on disk for rollback (the newest
``--registry-retention`` versions, plus the serving one, stay).

The follower knows nothing of the server: a ``ServingTarget`` (in Sluice,
``serving.following.ManagerTarget``) turns what it hands over into the server's
desired state, so every later load of the model keeps to the followed version.

What each reference last resolved to is kept in ``<repository>/.sluice/following.json``,
so a restart with the registry unreachable serves the same versions as before (else
whatever the model's version policy picks on disk), and retries with backoff. A local
registry also records the versions in use under ``pins/<deployment>.json``, so
``sluice registry delete`` refuses them; the pin goes away on a clean shutdown. The
registry's audit log (``sluice registry history``; local or MLflow) gets a ``deploy``
record, by the deployment, each time a model starts serving other versions, and an
``undeploy`` record on a clean shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from registry_client._pull import LINEAGE_FILE
from registry_client._schedule import PollSchedule, Sleep

__all__ = ["Follower", "LoadRefused", "ServingTarget"]

log = logging.getLogger("sluice.registry")

STATE_FILE = Path(".sluice") / "following.json"


class LoadRefused(Exception):
    """The server could not serve the versions handed to it (what served keeps serving)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServingTarget(Protocol):
    """What the follower hands its choices to: the server's desired state."""

    @property
    def repository(self) -> Path:
        """The model repository the follower pulls into."""
        ...

    def serving(self, name: str) -> tuple[int, ...]:
        """The versions of ``name`` that serve now."""
        ...

    def hold(self, name: str, versions: tuple[int, ...]) -> None:
        """Serve ``versions`` of ``name`` from its next load on (no load now)."""
        ...

    async def follow(self, name: str, versions: tuple[int, ...]) -> None:
        """Serve ``versions`` of ``name`` now: load and warm them, then switch.

        Raises ``LoadRefused`` when they cannot serve.
        """
        ...


class Follower:
    """Keeps the models named by registry references serving their current versions.

    ``start()`` makes one round (pull, load) before returning and then polls in the
    background; ``close()`` stops polling and clears this deployment's pin.
    """

    def __init__(
        self,
        target: ServingTarget,
        registry_uri: str,
        references: Sequence[str],
        *,
        deployment: str,
        poll_secs: float = 30.0,
        retention: int = 3,
        max_backoff_secs: float = 60.0,
        options: Any = None,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        from registry_client._options import HttpOptions, RetryPolicy
        from registry_client._reference import parse_reference

        if not references:
            raise ValueError("a registry follower needs at least one model reference")
        if retention < 1:
            raise ValueError("retention must be at least 1")
        self.target = target
        self.uri = registry_uri
        self.references = tuple(parse_reference(r) for r in references)
        self.deployment = deployment
        self.poll_secs = poll_secs
        self.retention = retention
        self.max_backoff_secs = max(max_backoff_secs, poll_secs)
        # Jittered waits (registry_client._schedule), so a fleet does not poll in step.
        self.schedule = PollSchedule(
            poll_secs, max_backoff=self.max_backoff_secs, rng=rng or random.Random(), sleep=sleep
        )
        # Few retries inside one round: the follower retries whole rounds with backoff.
        self.options = options or HttpOptions(retry=RetryPolicy(max_attempts=3, max_delay=5.0))
        self._registry: Any = None
        self._state: dict[str, int] = {}  # reference -> the version it last resolved to
        self._switched: dict[str, tuple[int, ...]] = {}  # model -> versions switched to
        self._failed: dict[str, tuple[int, ...]] = {}  # model -> versions that failed to load
        self._problems: dict[str, str] = {}  # what is failing -> the kind of failure
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def repository(self) -> Path:
        return self.target.repository

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ref.name for ref in self.references))

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """One round now (what fails is retried in the background), then poll."""
        if self._closed:
            raise RuntimeError("registry follower is closed")
        if self._task is not None:
            raise RuntimeError("registry follower already started")
        self._state = self._read_state()
        for name, versions in self._targets().items():
            self.target.hold(name, versions)  # until the registry answers
        try:
            reachable = await self.sync()
        except Exception:  # serve what is on disk; the background rounds retry
            log.exception("registry round failed")
            reachable = False
        self._task = asyncio.create_task(self._poll_forever(reachable), name="sluice-registry")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        registry, self._registry = self._registry, None
        if registry is not None:
            for name, versions in sorted(self._switched.items()):
                await self._audit(registry, "undeploy", name, versions)
            if self._is_local(registry):
                try:
                    registry.unpin(self.deployment)
                except OSError as exc:
                    log.warning("could not clear pin of '%s': %s", self.deployment, exc)
            await registry.aclose()

    async def __aenter__(self) -> Follower:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _poll_forever(self, reachable: bool) -> None:
        failures = 0 if reachable else 1
        # The first wait is a random part of one interval: pods started together drift apart.
        delay = self.schedule.first() if reachable else self._delay(failures)
        while True:
            await self.schedule.wait(delay)
            try:
                reachable = await self.sync()
            except Exception:  # the follower must outlive any one bad round
                log.exception("registry round failed")
                reachable = False
            failures = 0 if reachable else failures + 1
            delay = self._delay(failures)

    def _delay(self, failures: int) -> float:
        """The poll interval +-20%; after failures, backoff with jitter from 1s (or sooner) up."""
        return self.schedule.delay(failures)

    # -- one round ----------------------------------------------------------------

    async def sync(self) -> bool:
        """Resolve every reference, pull what is new, switch what moved.

        False when the registry could not be reached (the next round then backs off);
        a reference that fails otherwise (no such alias, a digest mismatch) is reported
        and retried at the poll interval without holding up the others. Models whose
        reference could not be resolved keep serving what they served.
        """
        from registry_client._errors import NetworkError, RegistryError
        from registry_client._pull import Puller

        reachable = True
        registry = await self._open()
        if registry is None:
            reachable = False
        else:
            puller = Puller(registry, self.repository, options=self.options)
            for ref in self.references:
                try:
                    version = await registry.resolve(ref)
                    result = await puller.install(version)
                except (RegistryError, OSError) as exc:
                    reachable = reachable and not isinstance(exc, NetworkError | OSError)
                    self._report(str(ref), exc)
                    continue
                self._recovered(str(ref))
                if result.installed:
                    log.info("pulled %s: %s version %d", ref, version.name, version.version)
                if self._state.get(str(ref)) != version.version:
                    self._state[str(ref)] = version.version
                    self._write_state()
        for name, versions in self._targets().items():
            await self._switch(name, versions)
        return reachable

    async def _open(self) -> Any:
        from registry_client._errors import RegistryError
        from registry_client._open import open_registry

        if self._registry is None:
            try:
                self._registry = open_registry(self.uri, options=self.options)
            except (RegistryError, OSError) as exc:
                self._report("registry", exc)
                return None
            self._recovered("registry")
        return self._registry

    def _targets(self) -> dict[str, tuple[int, ...]]:
        """Model name -> the versions its references last resolved to."""
        targets: dict[str, set[int]] = {}
        for ref in self.references:
            version = self._state.get(str(ref))
            if version is not None:
                targets.setdefault(ref.name, set()).add(version)
        return {name: tuple(sorted(v)) for name, v in targets.items()}

    async def _switch(self, name: str, versions: tuple[int, ...]) -> None:
        """Serve ``versions`` of ``name``; the old versions serve until the new ones are warm."""
        if self._switched.get(name) == versions:
            return  # nothing moved (an unload through the API is left alone)
        serving = self.target.serving(name)
        if self._failed.get(name) == versions:
            return  # already failed to load; try again when the reference moves
        self._pin(extra={name: versions})  # both old and new are in use during the switch
        try:
            await self.target.follow(name, versions)
        except LoadRefused as exc:
            self._failed[name] = versions
            now = self.target.serving(name)
            if now:  # keep later loads (poll mode, the API) on what still serves
                self.target.hold(name, now)
            kept = f"; version {', '.join(map(str, now))} keeps serving" if now else ""
            log.error("model '%s': %s%s", name, exc.message, kept)
            self._pin()
            return
        self._failed.pop(name, None)
        self._switched[name] = versions
        if self._registry is not None:
            await self._audit(self._registry, "deploy", name, versions, was=list(serving))
        if serving != versions:
            was = f" (was {', '.join(map(str, serving))})" if serving else ""
            log.info(
                "model '%s' now serves version %s from the registry%s",
                name,
                ", ".join(map(str, versions)),
                was,
            )
        self._pin()
        keep = set(versions) | set(self.target.serving(name))
        await asyncio.get_running_loop().run_in_executor(None, self._prune, name, keep)

    # -- retention -------------------------------------------------------------------

    def _prune(self, name: str, keep: set[int]) -> None:
        """Delete pulled versions beyond the newest ``retention`` that nothing serves.

        Only versions the Puller installed (with ``lineage.json``) are candidates; a
        version directory put there by hand is never deleted.
        """
        from registry_client._pull import remove_version

        model_dir = self.repository / name
        if not model_dir.is_dir():
            return
        on_disk = sorted(
            int(entry.name)
            for entry in model_dir.iterdir()
            if entry.name.isascii() and entry.name.isdigit() and entry.is_dir()
        )
        protected = keep | set(on_disk[-self.retention :])
        for version in on_disk:
            if version in protected or not (model_dir / str(version) / LINEAGE_FILE).is_file():
                continue
            try:
                remove_version(self.repository, name, version)
            except OSError as exc:
                log.warning("could not remove model '%s' version %d: %s", name, version, exc)
            else:
                log.info("removed model '%s' version %d (retention %d)", name, version, self.retention)  # fmt: skip

    # -- pins and state ----------------------------------------------------------------

    @staticmethod
    def _is_local(registry: Any) -> bool:
        from registry_client._local import LocalRegistry

        return isinstance(registry, LocalRegistry)

    async def _audit(
        self, registry: Any, action: str, name: str, versions: tuple[int, ...], **details: Any
    ) -> None:
        """One record in the registry's audit log (local or MLflow), by this deployment;
        never fatal."""
        from registry_client._audit import append_record
        from registry_client._errors import RegistryError

        subject = f"{name}:{','.join(map(str, versions))}"
        details.update(versions=list(versions), model_repository=str(self.repository))
        try:
            await append_record(registry.audit, action, subject, user=self.deployment, details=details)  # fmt: skip
        except (OSError, RegistryError) as exc:
            self._report("audit", exc)
        else:
            self._recovered("audit")

    def _pin(self, extra: dict[str, tuple[int, ...]] | None = None) -> None:
        """Record what this deployment serves in a local registry (MLflow has no pins)."""
        registry = self._registry
        if registry is None or not self._is_local(registry):
            return
        models: dict[str, set[int]] = {}
        for name in self.names:
            in_use = set(self.target.serving(name))
            in_use |= set((extra or {}).get(name, ()))
            if in_use:
                models[name] = in_use
        try:
            registry.pin(self.deployment, models, model_repository=str(self.repository))
        except OSError as exc:
            self._report("pin", exc)
        else:
            self._recovered("pin")

    def _read_state(self) -> dict[str, int]:
        try:
            data = json.loads((self.repository / STATE_FILE).read_text())
            return {str(k): int(v) for k, v in data.get("references", {}).items()}
        except (OSError, ValueError, AttributeError, TypeError):
            return {}

    def _write_state(self) -> None:
        path = self.repository / STATE_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                data = json.loads(path.read_text())
                known = {str(k): int(v) for k, v in data.get("references", {}).items()}
            except (OSError, ValueError, AttributeError, TypeError):
                known = {}
            known.update(self._state)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".following-")
            with os.fdopen(fd, "w") as f:
                json.dump({"references": known}, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except OSError as exc:
            self._report("state", exc)

    # -- reporting: once per change of state, not every poll --------------------------------

    def _report(self, what: str, exc: BaseException) -> None:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        kind = type(exc).__name__
        if self._problems.get(what) == kind:
            log.debug("%s still failing: %s", what, message)
            return
        self._problems[what] = kind
        if what == "registry":
            log.warning(
                "registry %s unavailable: %s; serving what is on disk and retrying",
                self.uri,
                message,
            )
        else:
            log.warning("%s: %s; retrying", what, message)

    def _recovered(self, what: str) -> None:
        if self._problems.pop(what, None) is not None:
            log.info("%s: the registry answers again", what if what != "registry" else self.uri)
