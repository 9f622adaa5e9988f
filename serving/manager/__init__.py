"""Model lifecycle: the desired state, loading, reconciling, repository polling.

``ModelManager`` is the face; ``_loader`` builds versions, ``_reconciler`` moves a
model to its target (load, warm up, switch, retire), ``_poller`` watches the disk.
"""

from serving.manager._manager import ModelManager
from serving.manager._reconciler import LifecycleEvent, LifecycleListener
from serving.manager._records import VersionStatus

__all__ = ["LifecycleEvent", "LifecycleListener", "ModelManager", "VersionStatus"]
