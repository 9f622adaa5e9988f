from __future__ import annotations

from types import ModuleType

import pytest

from tests.unit.serving.twins import load_twin


@pytest.fixture(params=["py", "native"])
def twin(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin("serving.codecs", request.param)


@pytest.fixture
def both() -> tuple[ModuleType, ModuleType]:
    return load_twin("serving.codecs", "py"), load_twin("serving.codecs", "native")
