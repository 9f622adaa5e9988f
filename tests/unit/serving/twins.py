"""Loads a twin module itself: only tests import twins directly."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def load_twin(package: str, which: str) -> ModuleType:
    """``which`` is ``"py"`` or ``"native"``; the native leg proves the build really loaded."""
    if which == "py":
        return importlib.import_module(f"{package}._python")
    if os.environ.get("SLUICE_NO_EXTENSIONS") == "1":
        pytest.skip("SLUICE_NO_EXTENSIONS=1: the native twin is not built")
    native = importlib.import_module(f"{package}._native")
    # A broken build must not quietly test the Python twin twice.
    assert native.__file__ is not None and native.__file__.endswith(".so"), native.__file__
    return native
