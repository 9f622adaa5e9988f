from __future__ import annotations

from types import ModuleType

import pytest

from tests.unit.serving.twins import load_twin


@pytest.fixture(params=["py", "native"])
def twin(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin("serving.batching", request.param)
