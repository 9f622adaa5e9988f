"""``sluice infer`` reads inputs from .npy files, .json files or inline JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serving.cli._client import _read_input
from serving.cli._errors import CommandError

META: dict[str, dict[str, Any]] = {
    "X": {"name": "X", "datatype": "FP32", "shape": [-1, 2]},
    "S": {"name": "S", "datatype": "BYTES", "shape": [-1]},
}


def test_an_npy_file(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.array([[1, 2]], dtype=np.int64))
    name, array = _read_input(f"X={tmp_path / 'x.npy'}", META)
    assert name == "X" and array.dtype == np.float32 and array.tolist() == [[1.0, 2.0]]


def test_a_json_file_with_data_and_shape(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"data": [1, 2, 3, 4], "shape": [2, 2]}))
    _, array = _read_input(f"X={tmp_path / 'x.json'}", META)
    assert array.shape == (2, 2) and array.dtype == np.float32


def test_inline_strings_become_bytes() -> None:
    _, array = _read_input('S=["a", "bc"]', META)
    assert array.tolist() == [b"a", b"bc"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("X", "--input 'X' must look like NAME=FILE"),
        ("Y=[1]", "model has no input 'Y'; inputs: X, S"),
        ("X=missing.npy", "no such file: missing.npy"),
        ("X=[1,", "cannot read input 'X' from '[1,'"),
    ],
)
def test_bad_inputs_say_why(spec: str, message: str) -> None:
    with pytest.raises(CommandError, match="^" + re.escape(message)):
        _read_input(spec, META)
