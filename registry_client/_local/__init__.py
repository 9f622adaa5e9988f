"""The local registry, a directory format Sluice owns, split by job.

``_format`` (the directory layout, records and blobs), ``_pins`` (locks and deployment pins),
``_search`` (versions by number, alias, ``latest`` or tags), ``_gc`` (unreferenced blobs) and
``_registry`` (``LocalRegistry``, the face the rest of ``registry_client`` uses). Imports run
one way: ``_format`` <- ``_pins`` <- ``_gc``; ``_format`` <- ``_search``; all <- ``_registry``.
"""

from registry_client._local._pins import Pin
from registry_client._local._registry import LocalRegistry

__all__ = ["LocalRegistry", "Pin"]
