"""The monitoring loop: data collection, drift detection, events and the audit trail.

Heavy dependencies (pyarrow, scipy, cloudevents, standardwebhooks) load lazily,
when the part that needs them runs; ``pip install sluice[monitoring]`` brings them.
See docs/monitoring.md.
"""

from serving.monitoring._cli import add_drift_parser, run_drift
from serving.monitoring._collector import DROP_REASONS, Collector, CollectorOptions
from serving.monitoring._config import CollectConfig, CollectConfigError, ColumnSpec, sampled
from serving.monitoring._destination import Destination, check_destination, open_destination
from serving.monitoring._events import EVENT_TYPES, EventBus, EventsConfig, EventsConfigError
from serving.monitoring._observer import (
    CollectObserver,
    VersionDescription,
    describe_model_version,
)
from serving.monitoring._online import BASELINE_FILE, OnlineDrift
from serving.monitoring._parquet import roll_segment
from serving.monitoring._server import Monitoring

__all__ = [
    "BASELINE_FILE",
    "DROP_REASONS",
    "EVENT_TYPES",
    "CollectConfig",
    "CollectConfigError",
    "CollectObserver",
    "Collector",
    "CollectorOptions",
    "ColumnSpec",
    "Destination",
    "EventBus",
    "EventsConfig",
    "EventsConfigError",
    "Monitoring",
    "OnlineDrift",
    "VersionDescription",
    "add_drift_parser",
    "check_destination",
    "describe_model_version",
    "open_destination",
    "roll_segment",
    "run_drift",
    "sampled",
]
