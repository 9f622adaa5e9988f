"""Sluice's registry client: model references in, verified files in a model repository out.

Importing it loads neither ``serving``, ONNX Runtime, gRPC, numpy nor starlette; httpx
loads when a remote registry is opened.

```python
async with open_registry("mlflow+http://127.0.0.1:5000") as registry:
    result = await Puller(registry, "model_repository").pull("models:/resnet@champion")
```
"""

from registry_client._audit import (
    AUDIT_FILE,
    AuditError,
    AuditLog,
    append_record,
    current_user,
    read_history,
    verify_log,
)
from registry_client._errors import (
    AuthenticationError,
    ConflictError,
    InsufficientSpace,
    InvalidReference,
    NetworkError,
    NotFound,
    RegistryError,
    UnsupportedSource,
    VerificationError,
)
from registry_client._follow import Follower, LoadRefused, ServingTarget
from registry_client._local import LocalRegistry, Pin
from registry_client._manifest import MANIFEST_NAME, build_manifest
from registry_client._mlflow import MlflowRegistry
from registry_client._mlflow_audit import AUDIT_EXPERIMENT, MlflowAuditLog
from registry_client._open import default_registry_uri, open_registry
from registry_client._options import HttpOptions, RetryPolicy
from registry_client._pull import (
    LINEAGE_FILE,
    Puller,
    PullEvent,
    PullResult,
    read_lineage,
    remove_version,
)
from registry_client._push import push_to_mlflow
from registry_client._reference import LATEST, ModelReference, parse_reference
from registry_client._schedule import POLL_JITTER, PollSchedule
from registry_client._version import FileEntry, Lineage, ModelVersion

__all__ = [
    "AUDIT_EXPERIMENT",
    "AUDIT_FILE",
    "LATEST",
    "LINEAGE_FILE",
    "MANIFEST_NAME",
    "POLL_JITTER",
    "AuditError",
    "AuditLog",
    "AuthenticationError",
    "ConflictError",
    "FileEntry",
    "Follower",
    "HttpOptions",
    "InsufficientSpace",
    "InvalidReference",
    "Lineage",
    "LoadRefused",
    "LocalRegistry",
    "MlflowAuditLog",
    "MlflowRegistry",
    "ModelReference",
    "ModelVersion",
    "NetworkError",
    "NotFound",
    "Pin",
    "PollSchedule",
    "PullEvent",
    "PullResult",
    "Puller",
    "RegistryError",
    "RetryPolicy",
    "ServingTarget",
    "UnsupportedSource",
    "VerificationError",
    "append_record",
    "build_manifest",
    "current_user",
    "default_registry_uri",
    "open_registry",
    "parse_reference",
    "push_to_mlflow",
    "read_history",
    "read_lineage",
    "remove_version",
    "verify_log",
]
