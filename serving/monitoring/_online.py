"""Online drift in the server: collected inputs against a baseline profile shipped
with the model version (``<version dir>/drift_baseline.json``, written by ``sluice
drift profile``; a registry version that holds it brings it along when pulled).

The collector's writer thread hands each written record to ``observe``, which keeps
the last ``window`` values of every baseline feature (bounded memory: features x
window). A timer thread compares each window with its profile (``compare``: the same
tests, thresholds and Bonferroni correction as ``sluice drift``), sets
``sluice_drift_score{model,version,feature,method}`` and publishes
``io.sluice.drift.detected`` when a feature drifts. Hysteresis: a drifted feature is
``io.sluice.drift.recovered`` only once its distance (PSI or JS) is below
``RECOVER_RATIO`` of its threshold and its test no longer significant, so a window
hovering at the threshold does not flap.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from serving.monitoring._config import CollectConfig
from serving.monitoring._features import split_features
from serving.monitoring._record import OK, CollectRecord

__all__ = ["BASELINE_FILE", "RECOVER_RATIO", "OnlineDrift"]

log = logging.getLogger("sluice.drift")

BASELINE_FILE = "drift_baseline.json"
RECOVER_RATIO = 0.5
_DISTANCES = ("psi", "js")

Publish = Callable[[str, dict[str, Any], str], object]


def load_profile(path: Path) -> dict[str, Any] | None:
    """The profile at ``path``; None when there is none; raises ValueError when unusable."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("sluice_profile") != 1:
        raise ValueError(
            f"{str(path)!r} is not a baseline profile (written by sluice drift profile)"
        )
    return data


class _Window:
    """One model version's recent feature values against its profile."""

    def __init__(self, profile: dict[str, Any], size: int) -> None:
        self.profile = profile
        self.values: dict[str, deque[Any]] = {n: deque(maxlen=size) for n in profile["features"]}
        self.added = 0  # values appended since the last evaluation
        self.drifted: set[str] = set()
        self.unprofiled: set[str] = set()


class OnlineDrift:
    def __init__(
        self,
        baseline_path: Callable[[str, str], Path],
        *,
        window: int = 1000,
        interval_s: float = 30.0,
        alpha: float = 0.05,
        registry: Any = None,
        publish: Publish | None = None,
    ) -> None:
        """``baseline_path(model, version)``: where that version's profile would be;
        ``publish(type, data, subject)``: sends an event (e.g. ``EventBus.publish``)."""
        self._baseline_path = baseline_path
        self.window = window
        self.interval_s = interval_s
        self.alpha = alpha
        self._publish = publish
        self._windows: dict[tuple[str, str], _Window | None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gauge = None
        if registry is not None:
            from prometheus_client import Gauge

            self._gauge = Gauge(
                "sluice_drift_score",
                "Online drift of a feature over the recent window against the version's "
                "baseline profile: the statistic of each method (ks/chi2, psi/js)",
                ["model", "version", "feature", "method"],
                registry=registry, multiprocess_mode="livemax",
            )  # fmt: skip

    # -- the collector's writer thread ---------------------------------------------

    def _window_for(self, model: str, version: str) -> _Window | None:
        key = (model, version)
        if key not in self._windows:
            path = self._baseline_path(model, version)
            try:
                profile = load_profile(path)
            except (OSError, ValueError) as exc:
                log.error("online drift off for %s version %s: %s", model, version, exc)
                profile = None
            if profile is not None:
                log.info("online drift for %s version %s against %s", model, version, path)
            with self._lock:
                self._windows[key] = None if profile is None else _Window(profile, self.window)
        return self._windows[key]

    def wants(self, model: str, version: str) -> bool:
        """Whether that version has a baseline profile (the collector then hands its
        records to ``observe``; the profile is read once, here)."""
        return self._window_for(model, version) is not None

    def observe(self, record: CollectRecord, config: CollectConfig) -> None:
        """A collector listener: keep the record's input features (successful requests)."""
        if record.status != OK:
            return
        win = self._window_for(record.model, record.version)
        if win is None:
            return
        features: dict[str, np.ndarray] = {}
        for spec in config.columns:
            if spec.kind != "input" or spec.hashed:
                continue
            arr = record.inputs.get(spec.tensor)
            if arr is None:
                continue
            arr = np.asarray(arr)
            if not config.batching:
                arr = arr.reshape((1, *arr.shape))
            features.update(split_features(spec.column, arr))
        with self._lock:
            for name, values in features.items():
                target = win.values.get(name)
                if target is None:
                    if name not in win.unprofiled:
                        win.unprofiled.add(name)
                        log.error(
                            "online drift of %s version %s: the baseline profile lacks feature "
                            "%r; it is not compared (profile features: %s)",
                            record.model, record.version, name, ", ".join(sorted(win.values)),
                        )  # fmt: skip
                    continue
                if values.dtype == object:
                    values = np.array([v.decode() if isinstance(v, bytes) else v for v in values])
                target.extend(values.tolist())
                win.added += len(values)

    # -- the timer thread -------------------------------------------------------------

    def evaluate(self) -> None:
        """Compare every window that changed since the last call with its profile."""
        from serving.monitoring._drift import compare

        with self._lock:
            pending = []
            for (model, version), win in self._windows.items():
                if win is None or win.added == 0:
                    continue
                win.added = 0
                current = {n: np.asarray(list(v)) for n, v in win.values.items() if v}
                pending.append((model, version, win, current))
        for model, version, win, current in pending:
            if not current:
                continue
            baseline = {"sluice_profile": 1, "features": win.profile["features"]}
            try:
                report = compare(baseline, current, alpha=self.alpha)
            except Exception as exc:
                log.error("online drift of %s version %s failed: %s", model, version, exc)
                continue
            self._act(model, version, win, report)

    def _act(self, model: str, version: str, win: _Window, report: dict[str, Any]) -> None:
        by_name: dict[str, list[dict[str, Any]]] = {}
        for score in report["features"]:
            by_name.setdefault(score["name"], []).append(score)
            stat = score["statistic"]
            if self._gauge is not None and stat is not None and math.isfinite(stat):
                self._gauge.labels(model, version, score["name"], score["method"]).set(stat)
        subject = f"{model}:{version}"
        for name, scores in sorted(by_name.items()):
            if any(s["too_small"] for s in scores):
                continue
            data = {
                "model": model, "version": version, "feature": name,
                "window": scores[0]["n_current"], "scores": scores,
            }  # fmt: skip
            if name not in win.drifted and name in report["drifted_features"]:
                win.drifted.add(name)
                log.warning("drift detected: %s version %s feature %s", model, version, name)
                self._send("io.sluice.drift.detected", data, subject)
            elif name in win.drifted and _recovered(scores):
                win.drifted.discard(name)
                log.info("drift recovered: %s version %s feature %s", model, version, name)
                self._send("io.sluice.drift.recovered", data, subject)

    def _send(self, event_type: str, data: dict[str, Any], subject: str) -> None:
        if self._publish is None:
            return
        try:
            self._publish(event_type, data, subject)
        except Exception:
            log.exception("sending %s failed", event_type)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sluice-drift", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            started = time.monotonic()
            self.evaluate()
            log.debug("online drift evaluated in %.3f s", time.monotonic() - started)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None


def _recovered(scores: list[dict[str, Any]]) -> bool:
    """Back under the threshold with a margin: the distance below RECOVER_RATIO of its
    threshold and the test not significant."""
    for s in scores:
        if s["method"] in _DISTANCES:
            if s["statistic"] is None or s["statistic"] >= RECOVER_RATIO * s["threshold"]:
                return False
        elif s["drifted"]:
            return False
    return True
