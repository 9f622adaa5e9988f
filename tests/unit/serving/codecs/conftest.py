from __future__ import annotations

import os
from types import ModuleType

import pytest


def load_twin(which: str) -> ModuleType:
    """The codec twin itself (only tests import twins directly)."""
    if which == "py":
        from serving.codecs import _python

        return _python
    if os.environ.get("SLUICE_NO_EXTENSIONS") == "1":
        pytest.skip("SLUICE_NO_EXTENSIONS=1: the native twin is not built")
    from serving.codecs import _native

    # A broken build must not quietly test the Python twin twice.
    assert _native.__file__.endswith(".so"), _native.__file__
    return _native


@pytest.fixture(params=["py", "native"])
def twin(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin(request.param)


@pytest.fixture
def both() -> tuple[ModuleType, ModuleType]:
    return load_twin("py"), load_twin("native")
