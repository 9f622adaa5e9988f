from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, text_format

from serving.config import model_config_pb2 as pb

ROOT = Path(__file__).resolve().parents[4]


def test_generated_module_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_check_fails_when_generated_module_is_stale(tmp_path: Path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_protos
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    stale_root = tmp_path / "tree"
    (stale_root / "serving" / "config").mkdir(parents=True)
    for name in ("model_config.proto", "model_config_pb2.py", "model_config_pb2.pyi"):
        source = ROOT / "serving" / "config" / name
        (stale_root / "serving" / "config" / name).write_text(source.read_text())
    proto = stale_root / "serving" / "config" / "model_config.proto"
    proto.write_text(proto.read_text().replace("bool enable = 1;", "bool enable = 2;"))
    monkeypatch.setattr(gen_protos, "ROOT", stale_root)

    assert gen_protos.check() == 1


def test_descriptor_matches_tritons_byte_for_byte():
    """Same bytes means same names and numbers, and one process can hold both modules."""
    triton = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    ours, theirs = descriptor_pb2.FileDescriptorProto(), descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(ours)
    triton.DESCRIPTOR.CopyToProto(theirs)

    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
        deterministic=True
    )


def test_triton_binary_config_reads_back():
    cfg = text_format.Parse(
        'name: "m" max_batch_size: 4 input [{ name: "x" data_type: TYPE_FP32 dims: [3] }]'
        " dynamic_batching { preferred_batch_size: 4 }",
        pb.ModelConfig(),
    )

    assert pb.ModelConfig.FromString(cfg.SerializeToString()) == cfg
    assert cfg.SerializeToString().startswith(b"\n\x01m \x04")  # name=1, max_batch_size=4
