"""Builds the Cython twins under ``native/``; metadata lives in pyproject.toml.

``SLUICE_NO_EXTENSIONS=1`` builds none (a pure-Python install). Otherwise a
Cython or compiler failure fails the build: there is no silent fallback here,
the runtime selectors fall back only when a module is genuinely absent.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).parent
NATIVE = "native"


def native_extensions() -> list[Extension]:
    if os.environ.get("SLUICE_NO_EXTENSIONS") == "1":
        return []
    from Cython.Build import cythonize

    sources = sorted((ROOT / NATIVE).rglob("*.pyx"))
    extensions = [
        Extension(
            ".".join(path.relative_to(ROOT / NATIVE).with_suffix("").parts),
            [path.relative_to(ROOT).as_posix()],
        )
        for path in sources
    ]
    return cythonize(
        extensions,
        include_path=[NATIVE],
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False},
    )


setup(ext_modules=native_extensions())
