"""Picks the native or the pure-Python twin of an accelerated package.

The Cython ``<package>._native`` module unless ``SLUICE_NO_EXTENSIONS=1`` is set
or it was not built, else ``<package>._python``. Only the packages' selectors
call this; nothing else imports a twin directly.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["select_twin"]


def select_twin(package: str) -> tuple[ModuleType, str]:
    """Return the twin module of ``package`` and ``"native"`` or ``"python"``."""
    if os.environ.get("SLUICE_NO_EXTENSIONS") != "1":
        try:
            return importlib.import_module(f"{package}._native"), "native"
        except ImportError:
            pass
    return importlib.import_module(f"{package}._python"), "python"
