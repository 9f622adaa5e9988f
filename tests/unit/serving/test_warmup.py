import struct

import numpy as np
import pytest
from google.protobuf import text_format

from serving.config import model_config_pb2
from serving.datatypes import BF16_DTYPE
from serving.errors import InvalidArgument
from serving.warmup import warmup_samples

INPUTS = """
input [
  { name: "IMAGE", data_type: TYPE_FP32, dims: [ 3, -1, -1 ] },
  { name: "TEXT", data_type: TYPE_STRING, dims: [ -1 ] },
  { name: "FLAGS", data_type: TYPE_BOOL, dims: [ 4 ] }
]
"""


def config(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig(name="m"))


def shapes(inputs):
    return {name: array.shape for name, array in inputs.items()}


def test_derived_sample_for_a_batching_model():
    ((name, count, inputs),) = warmup_samples(config("max_batch_size: 8\n" + INPUTS))
    assert count == 1 and name
    assert shapes(inputs) == {"IMAGE": (1, 3, 1, 1), "TEXT": (1, 1), "FLAGS": (1, 4)}
    assert inputs["IMAGE"].dtype == np.float32 and not inputs["IMAGE"].any()
    assert inputs["TEXT"].dtype == object and inputs["TEXT"].tolist() == [[b"0"]]
    assert inputs["FLAGS"].dtype == bool


def test_derived_sample_without_batching_keeps_the_config_rank():
    ((_, _, inputs),) = warmup_samples(config("max_batch_size: 0\n" + INPUTS))
    assert shapes(inputs) == {"IMAGE": (3, 1, 1), "TEXT": (1,), "FLAGS": (4,)}


def test_configured_samples_prepend_the_batch_size():
    cfg = config(
        "max_batch_size: 8\n"
        + INPUTS
        + """
        model_warmup [
          { name: "zeros" batch_size: 4 count: 3
            inputs { key: "IMAGE" value: { data_type: TYPE_FP32 dims: [3, 8, 8] zero_data: true } }
            inputs { key: "TEXT" value: { data_type: TYPE_STRING dims: [2] random_data: true } }
            inputs { key: "FLAGS" value: { data_type: TYPE_BOOL dims: [4] random_data: true } } },
          { name: "once"
            inputs { key: "IMAGE"
                     value: { data_type: TYPE_FP32 dims: [3, 2, 2] random_data: true } }
            inputs { key: "TEXT" value: { data_type: TYPE_STRING dims: [1] zero_data: true } }
            inputs { key: "FLAGS" value: { data_type: TYPE_BOOL dims: [4] zero_data: true } } }
        ]
        """
    )
    (zeros, once) = warmup_samples(cfg)
    assert zeros[:2] == ("zeros", 3)
    assert shapes(zeros[2]) == {"IMAGE": (4, 3, 8, 8), "TEXT": (4, 2), "FLAGS": (4, 4)}
    assert zeros[2]["TEXT"].tolist() == [[b"", b""]] * 4  # BYTES random data is zero data
    assert once[:2] == ("once", 1)
    assert shapes(once[2]) == {"IMAGE": (1, 3, 2, 2), "TEXT": (1, 1), "FLAGS": (1, 4)}
    assert once[2]["IMAGE"].dtype == np.float32 and once[2]["IMAGE"].any()


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [("TYPE_FP16", np.float16), ("TYPE_BF16", BF16_DTYPE), ("TYPE_INT8", np.int8)],
)
def test_random_data_dtypes(datatype, dtype):
    cfg = config(
        f"""
        input [{{ name: "X", data_type: {datatype}, dims: [5] }}]
        model_warmup [{{ name: "r"
          inputs {{ key: "X" value: {{ data_type: {datatype} dims: [5] random_data: true }} }} }}]
        """
    )
    ((_, _, inputs),) = warmup_samples(cfg)
    assert inputs["X"].dtype == dtype and inputs["X"].shape == (5,)


def test_input_data_file_from_the_warmup_dir(tmp_path):
    (tmp_path / "warmup").mkdir()
    (tmp_path / "warmup" / "ints").write_bytes(np.arange(6, dtype="<i4").tobytes())
    words = [b"ab", b"", "é".encode()]
    (tmp_path / "warmup" / "words").write_bytes(
        b"".join(struct.pack("<I", len(w)) + w for w in words)
    )
    cfg = config(
        """
        max_batch_size: 2
        input [{ name: "N", data_type: TYPE_INT32, dims: [2, 3] },
               { name: "S", data_type: TYPE_STRING, dims: [3] }]
        model_warmup [{ name: "file" batch_size: 2
          inputs { key: "N" value: { data_type: TYPE_INT32 dims: [2, 3] input_data_file: "ints" } }
          inputs { key: "S" value: { data_type: TYPE_STRING dims: [3] input_data_file: "words" } }
        }]
        """
    )
    ((_, _, inputs),) = warmup_samples(cfg, tmp_path)
    np.testing.assert_array_equal(inputs["N"], np.stack([np.arange(6).reshape(2, 3)] * 2))
    assert inputs["S"].tolist() == [words, words]


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("short", b"\x00" * 5, "expected 24"),
        ("../escape", b"\x00" * 24, "outside warmup"),
        ("absent", None, "cannot read"),
    ],
)
def test_bad_input_data_file(tmp_path, file, content, message):
    (tmp_path / "warmup").mkdir()
    if content is not None:
        (tmp_path / "warmup" / file).write_bytes(content)
    cfg = config(
        f"""
        input [{{ name: "N", data_type: TYPE_INT32, dims: [2, 3] }}]
        model_warmup [{{ name: "f"
          inputs {{ key: "N"
                   value: {{ data_type: TYPE_INT32 dims: [2, 3] input_data_file: "{file}" }} }}
        }}]
        """
    )
    with pytest.raises(InvalidArgument, match=message):
        warmup_samples(cfg, tmp_path)


@pytest.mark.parametrize(
    "entry",
    [
        'inputs { key: "Y" value: { data_type: TYPE_FP32 dims: [2] zero_data: true } }',
        'inputs { key: "X" value: { data_type: TYPE_INT32 dims: [2] zero_data: true } }',
        'inputs { key: "X" value: { data_type: TYPE_FP32 dims: [-1] zero_data: true } }',
        'inputs { key: "X" value: { data_type: TYPE_FP32 dims: [2] } }',
    ],
    ids=["unknown-input", "wrong-type", "variable-dims", "no-data"],
)
def test_invalid_warmup_entries(entry):
    cfg = config(
        'input [{ name: "X", data_type: TYPE_FP32, dims: [2] }]\n'
        f'model_warmup [{{ name: "bad" {entry} }}]'
    )
    with pytest.raises(InvalidArgument):
        warmup_samples(cfg)
