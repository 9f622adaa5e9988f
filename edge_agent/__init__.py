"""Sluice's edge agent: keeps the right model versions serving on a device.

The agent runs Sluice's serving core in its own process and converges it to a desired
state sent from the fleet side over MQTT (or HTTP polling), through a persisted
per-model state machine (downloading -> verified -> loading -> canary -> committed, or
rolled_back / failed) with a health gate and automatic rollback. Reports and events go
out through a durable SQLite outbox; collected inputs and outputs (Parquet) through a
second, byte-capped one, and ``receive_collected`` reassembles them on the fleet side.

Importing it loads neither ``serving``, ONNX Runtime, gRPC nor starlette: those load
when the agent starts serving, and the MQTT client loads when a link opens.
"""

from edge_agent._cli import main
from edge_agent._config import AgentConfig, ConfigError, config_keys, load_config
from edge_agent._document import DesiredDocument, DocumentError, ModelSpec, parse_document
from edge_agent._outbox import Outbox, OutboxMessage
from edge_agent._receiver import CollectReceiver, Incomplete, Received, receive_collected
from edge_agent._state import ModelRow, State, StateStore
from edge_agent._topics import Topics

__all__ = [
    "AgentConfig",
    "CollectReceiver",
    "ConfigError",
    "DesiredDocument",
    "DocumentError",
    "Incomplete",
    "ModelRow",
    "ModelSpec",
    "Outbox",
    "OutboxMessage",
    "Received",
    "State",
    "StateStore",
    "Topics",
    "config_keys",
    "load_config",
    "main",
    "parse_document",
    "receive_collected",
]
