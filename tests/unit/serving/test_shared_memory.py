from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from serving.datatypes import by_name
from serving.errors import InvalidArgument, NotFound
from serving.shared_memory import (
    SHM_ROOT,
    SharedMemoryRef,
    SharedMemoryRegistry,
    output_references,
    reference,
)
from serving.types import InferOutput, InferRequest, InferResponse, RequestedOutput

FP32 = by_name("FP32")


def test_register_status_unregister(shm_key: str) -> None:
    registry = SharedMemoryRegistry()
    registry.register("a", shm_key, 8, 16)
    registry.register("b", shm_key, 0, 64)
    assert registry.status("a") == [{"name": "a", "key": shm_key, "offset": 8, "byte_size": 16}]
    assert [r["name"] for r in registry.status()] == ["a", "b"]
    registry.unregister("a")
    assert [r["name"] for r in registry.status()] == ["b"]
    registry.unregister()
    assert registry.status() == []
    with pytest.raises(NotFound, match="'a' is not registered"):
        registry.status("a")


@pytest.mark.parametrize(
    ("name", "key", "offset", "size", "message"),
    [
        ("a", None, 0, 65, "exceeds the 64 bytes"),
        ("a", None, 60, 8, "offset 60 + byte_size 8 exceeds"),
        ("a", None, 0, 0, "byte_size must be positive"),
        ("a", None, -1, 4, "offset must be a non-negative integer"),
        ("a", "/no-such-sluice-key", 0, 4, "cannot open shared memory key"),
        ("a", "/../etc/passwd", 0, 4, "is not a POSIX shared memory name"),
        ("", None, 0, 4, "non-empty name"),
    ],
)
def test_register_rejects(shm_key, name, key, offset, size, message) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("+", r"\+")):
        SharedMemoryRegistry().register(name, key or shm_key, offset, size)


def test_register_twice(shm_key: str) -> None:
    registry = SharedMemoryRegistry()
    registry.register("a", shm_key, 0, 4)
    with pytest.raises(InvalidArgument, match="already registered"):
        registry.register("a", shm_key, 0, 4)


def test_registrations_are_capped(shm_key: str) -> None:
    """Each region holds a descriptor; past the cap a registration is refused and the
    registered ones stay usable; unregistering makes room again."""
    registry = SharedMemoryRegistry(max_regions=3)
    for name in "abc":
        registry.register(name, shm_key, 0, 4)
    with pytest.raises(InvalidArgument, match="3 regions are registered"):
        registry.register("d", shm_key, 0, 4)
    assert [r["name"] for r in registry.status()] == ["a", "b", "c"]
    registry.unregister("a")
    registry.register("d", shm_key, 0, 4)
    registry.unregister()


def test_read_is_a_read_only_copy(shm_registry) -> None:
    registry, write = shm_registry
    write(np.arange(4, dtype=np.float32).tobytes(), at=16)
    arr = registry.read(SharedMemoryRef("r", 16, 16), FP32, (2, 2), "x")
    np.testing.assert_array_equal(arr, [[0, 1], [2, 3]])
    assert not arr.flags.writeable
    write(np.full(4, 7, dtype=np.float32).tobytes(), at=16)
    assert arr[0, 0] == 0  # a copy: the owner may rewrite or shrink the region meanwhile


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (SharedMemoryRef("r", 60, 8), "exceeds the 64 bytes of shared memory region 'r'"),
        (SharedMemoryRef("r", 0, 12), "expected 16 bytes of FP32 data"),
        (SharedMemoryRef("nope", 0, 16), "region 'nope' is not registered"),
    ],
)
def test_read_checks_every_bound(shm_registry, ref, message) -> None:
    registry, _ = shm_registry
    with pytest.raises(InvalidArgument, match=message):
        registry.read(ref, FP32, (2, 2), "x")


def test_unregister_while_an_array_views_the_region(shm_registry) -> None:
    registry, write = shm_registry
    write(np.ones(4, dtype=np.float32).tobytes())
    arr = registry.read(SharedMemoryRef("r", 0, 16), FP32, (4,), "x")
    registry.unregister("r")  # must not crash while the array is alive
    assert arr.sum() == 4
    del arr
    gc.collect()


def _request(params: dict) -> InferRequest:
    return InferRequest("m", (), outputs=(RequestedOutput("y", params),))


def test_outputs_are_written_and_checked(shm_registry, shm_key: str) -> None:
    registry, _ = shm_registry
    params = {"shared_memory_region": "r", "shared_memory_offset": 4, "shared_memory_byte_size": 8}
    refs = output_references(_request(params))
    registry.check_outputs(refs)
    out = InferOutput("y", "FP32", (2,), np.array([3.0, 4.0], dtype=np.float32))
    assert registry.write_outputs(refs, InferResponse("m", "1", (out,))) == {"y": 8}
    raw = (Path(SHM_ROOT) / shm_key[1:]).read_bytes()
    np.testing.assert_array_equal(np.frombuffer(raw[4:12], np.float32), [3.0, 4.0])
    big = InferOutput("y", "FP32", (3,), np.zeros(3, dtype=np.float32))
    with pytest.raises(InvalidArgument, match="needs 12 bytes but shared_memory_byte_size is 8"):
        registry.write_outputs(refs, InferResponse("m", "1", (big,)))
    registry.unregister("r")
    with pytest.raises(InvalidArgument, match="not registered"):
        registry.write_outputs(refs, InferResponse("m", "1", (out,)))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"shared_memory_byte_size": 4}, "has shared_memory_byte_size but no shared_memory_region"),
        ({"shared_memory_region": ""}, "must be a non-empty string"),
        ({"shared_memory_region": "r"}, "no shared_memory_byte_size"),
        (
            {"shared_memory_region": "r", "shared_memory_byte_size": -1},
            "shared_memory_byte_size must be a non-negative integer",
        ),
        (
            {
                "shared_memory_region": "r",
                "shared_memory_byte_size": 4,
                "shared_memory_offset": "a",
            },
            "shared_memory_offset must be a non-negative integer",
        ),
    ],
)
def test_reference_validates_parameters(params, message) -> None:
    with pytest.raises(InvalidArgument, match=message):
        reference(params, "input 'x'")


def test_reference_absent() -> None:
    assert reference({"binary_data_size": 4}, "input 'x'") is None


# -- a region shrunk by its owner after registration ----------------------------


def _shrink(key: str, size: int) -> None:
    os.truncate(Path(SHM_ROOT) / key[1:], size)


def test_read_from_a_truncated_region(shm_registry, shm_key: str) -> None:
    registry, write = shm_registry
    write(np.ones(16, dtype=np.float32).tobytes())
    _shrink(shm_key, 20)
    np.testing.assert_array_equal(
        registry.read(SharedMemoryRef("r", 0, 16), FP32, (4,), "x"), np.ones(4)
    )
    with pytest.raises(InvalidArgument, match="was truncated after registration: its key") as info:
        registry.read(SharedMemoryRef("r", 16, 16), FP32, (4,), "x")
    assert "now holds 20 bytes, and the tensor lies at bytes 16 to 32" in str(info.value)


def test_write_to_a_truncated_region(shm_registry, shm_key: str) -> None:
    registry, _ = shm_registry
    params = {"shared_memory_region": "r", "shared_memory_offset": 8, "shared_memory_byte_size": 8}
    refs = output_references(_request(params))
    out = InferOutput("y", "FP32", (2,), np.array([3.0, 4.0], dtype=np.float32))
    _shrink(shm_key, 12)
    with pytest.raises(InvalidArgument, match="now holds 12 bytes"):
        registry.check_outputs(refs)
    with pytest.raises(InvalidArgument, match="now holds 12 bytes"):
        registry.write_outputs(refs, InferResponse("m", "1", (out,)))
    assert (Path(SHM_ROOT) / shm_key[1:]).stat().st_size == 12  # not grown back


# -- keys: one regular file in /dev/shm, never followed elsewhere ---------------


@pytest.fixture
def planted(shm_key: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Keys in /dev/shm that are not regular files: a symlink out, a directory, a FIFO."""
    secret = tmp_path / "secret"
    secret.write_bytes(bytes(64))
    base = Path(SHM_ROOT) / shm_key[1:]
    link, folder, fifo = (base.with_name(base.name + suffix) for suffix in ("-l", "-d", "-p"))
    link.symlink_to(secret)
    folder.mkdir()
    os.mkfifo(fifo)
    yield {"link": "/" + link.name, "dir": "/" + folder.name, "fifo": "/" + fifo.name}
    link.unlink()
    folder.rmdir()
    fifo.unlink()


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("link", "is a symbolic link; a key must name a regular file in /dev/shm"),
        ("dir", "is not a regular file in /dev/shm"),
        ("fifo", "is not a regular file in /dev/shm"),
    ],
)
def test_keys_that_are_not_regular_files(planted: dict[str, str], which: str, message: str) -> None:
    registry = SharedMemoryRegistry()
    with pytest.raises(InvalidArgument, match=message):
        registry.register("a", planted[which], 0, 8)
    assert registry.status() == []


@pytest.mark.parametrize("key", ["/", "/..", "/a/b", "a/../b", "/a\0b", "/a\ud800"])
def test_keys_that_are_not_one_name(key: str) -> None:
    with pytest.raises(InvalidArgument, match="is not a POSIX shared memory name"):
        SharedMemoryRegistry().register("a", key, 0, 8)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_registrations_leave_no_descriptor_open(shm_key: str, planted: dict[str, str]) -> None:
    before = _open_fds()
    registry = SharedMemoryRegistry()
    for key, size in ((shm_key, 65), (planted["fifo"], 8), (planted["dir"], 8)):
        with pytest.raises(InvalidArgument):
            registry.register("a", key, 0, size)
    registry.register("a", shm_key, 0, 8)
    registry.register("b", shm_key, 8, 8)
    registry.unregister("a")
    registry.close()
    assert _open_fds() == before
