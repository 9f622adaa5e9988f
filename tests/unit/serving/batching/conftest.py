from __future__ import annotations

import os
from types import ModuleType

import pytest


def load_twin(which: str) -> ModuleType:
    """The assembly twin itself (only tests import twins directly)."""
    if which == "py":
        from serving.batching import _python

        return _python
    if os.environ.get("SLUICE_NO_EXTENSIONS") == "1":
        pytest.skip("SLUICE_NO_EXTENSIONS=1: the native twin is not built")
    from serving.batching import _native  # type: ignore[attr-defined]

    # A broken build must not quietly test the Python twin twice.
    assert _native.__file__.endswith(".so"), _native.__file__
    return _native


@pytest.fixture(params=["py", "native"])
def twin(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin(request.param)
