"""System shared memory through tritonclient's own helpers, over HTTP and gRPC."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from serving.examples import write_repository
from tests.integration.protocol_client import PROTOCOLS, ProtocolClient
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("shm-repo")
    write_repository(repo, ["simple", "identity_bytes"])
    proc = ServerProcess(repo, "--allow-shared-memory", log_dir=tmp_path_factory.mktemp("logs"))
    yield proc
    proc.stop()


@pytest.fixture(params=PROTOCOLS)
def client(shm_server: ServerProcess, request: pytest.FixtureRequest) -> Iterator[ProtocolClient]:
    c = ProtocolClient(request.param, shm_server.url, shm_server.grpc_url)
    yield c
    c.raw.unregister_system_shared_memory()
    c.close()


@pytest.fixture
def regions() -> Iterator[dict]:
    """An input region (two [1, 16] INT32 tensors) and an output region, as tritonclient makes them."""
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    made = {
        "in": shm.create_shared_memory_region(f"in-{tag}", f"/sluice-in-{tag}", 128),
        "out": shm.create_shared_memory_region(f"out-{tag}", f"/sluice-out-{tag}", 128),
        "tag": tag,
    }
    yield made
    shm.destroy_shared_memory_region(made["in"])
    shm.destroy_shared_memory_region(made["out"])


def _register(client: ProtocolClient, tag: str) -> None:
    client.raw.register_system_shared_memory("in", f"/sluice-in-{tag}", 128)
    client.raw.register_system_shared_memory("out", f"/sluice-out-{tag}", 128)


def test_extension_is_advertised(client: ProtocolClient) -> None:
    assert "system_shared_memory" in client.server_metadata()["extensions"]


def test_round_trip_through_regions(client: ProtocolClient, regions: dict) -> None:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    shm.set_shared_memory_region(regions["in"], [a, b])
    _register(client, regions["tag"])
    status = client.shm_status()
    assert [(r["name"], r["byte_size"]) for r in status] == [("in", 128), ("out", 128)]
    assert client.shm_status("in")[0]["key"] == f"/sluice-in-{regions['tag']}"

    inputs = [client.module.InferInput("INPUT0", [1, 16], "INT32"),
              client.module.InferInput("INPUT1", [1, 16], "INT32")]  # fmt: skip
    inputs[0].set_shared_memory("in", 64)
    inputs[1].set_shared_memory("in", 64, offset=64)
    outputs = [client.module.InferRequestedOutput("OUTPUT0"),
               client.module.InferRequestedOutput("OUTPUT1")]  # fmt: skip
    outputs[0].set_shared_memory("out", 64)
    outputs[1].set_shared_memory("out", 64, offset=64)
    result = client.infer("simple", inputs, outputs=outputs)
    out0 = result.get_output("OUTPUT0")
    params = (
        out0["parameters"]
        if isinstance(out0, dict)
        else {
            k: v.WhichOneof("parameter_choice") and getattr(v, v.WhichOneof("parameter_choice"))
            for k, v in out0.parameters.items()
        }
    )
    assert params["shared_memory_region"] == "out" and params["shared_memory_byte_size"] == 64
    got0 = shm.get_contents_as_numpy(regions["out"], np.int32, [1, 16])
    got1 = shm.get_contents_as_numpy(regions["out"], np.int32, [1, 16], offset=64)
    np.testing.assert_array_equal(got0, a + b)
    np.testing.assert_array_equal(got1, a - b)

    # Mixed: one output in shared memory, one sent back as data.
    result = client.infer("simple", inputs, outputs=[outputs[0], client.output("OUTPUT1")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)

    client.raw.unregister_system_shared_memory("in")
    assert [r["name"] for r in client.shm_status()] == ["out"]


def test_bad_offsets_sizes_and_regions(client: ProtocolClient, regions: dict) -> None:
    _register(client, regions["tag"])

    def infer(region: str, size: int, offset: int = 0) -> InferenceServerException:
        inputs = [client.module.InferInput("INPUT0", [1, 16], "INT32"),
                  client.module.InferInput("INPUT1", [1, 16], "INT32")]  # fmt: skip
        for inp in inputs:
            inp.set_shared_memory(region, size, offset=offset)
        with pytest.raises(InferenceServerException) as info:
            client.infer("simple", inputs)
        return info.value

    err = infer("in", 64, offset=100)
    client.expect_status(err, 400)
    assert "exceeds the 128 bytes of shared memory region 'in'" in err.message()
    err = infer("in", 32)
    client.expect_status(err, 400)
    assert "expected 64 bytes of INT32 data" in err.message()
    err = infer("nope", 64)
    client.expect_status(err, 400)
    assert "region 'nope' is not registered" in err.message()

    with pytest.raises(InferenceServerException) as info:
        client.raw.register_system_shared_memory("big", f"/sluice-in-{regions['tag']}", 4096)
    client.expect_status(info.value, 400)
    assert "exceeds the 128 bytes" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.raw.register_system_shared_memory("in", f"/sluice-in-{regions['tag']}", 8)
    client.expect_status(info.value, 400)
    assert "already registered" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.raw.register_system_shared_memory("x", "/sluice-no-such-key", 8)
    client.expect_status(info.value, 400)
    with pytest.raises(InferenceServerException) as info:
        client.shm_status("nope")
    client.expect_status(info.value, 404)

    # An output that does not fit its region slice is refused, and the server keeps serving.
    a = np.zeros((1, 16), dtype=np.int32)
    out = client.module.InferRequestedOutput("OUTPUT0")
    out.set_shared_memory("out", 16)
    inputs = [client.input("INPUT0", a, "INT32"), client.input("INPUT1", a, "INT32")]
    with pytest.raises(InferenceServerException) as info:
        client.infer("simple", inputs, outputs=[out])
    client.expect_status(info.value, 400)
    assert "needs 64 bytes" in info.value.message()
    assert not Path("/dev/shm/sluice-no-such-key").exists()


# -- a region whose owner shrinks it, and keys that are not shared memory ------


def _shrink(key: str, size: int) -> None:
    """What a region's owner may do at any time: ftruncate the shared-memory object."""
    fd = os.open(f"/dev/shm/{key.lstrip('/')}", os.O_RDWR)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _still_serving(client: ProtocolClient, server: ServerProcess) -> None:
    assert server.alive(), server.log()
    a = np.ones((1, 16), dtype=np.int32)
    result = client.infer("simple", [client.input("INPUT0", a, "INT32"),
                                     client.input("INPUT1", a, "INT32")])  # fmt: skip
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a)


def test_input_region_truncated_after_registration(
    client: ProtocolClient, regions: dict, shm_server: ServerProcess
) -> None:
    shm.set_shared_memory_region(regions["in"], [np.ones((1, 32), dtype=np.int32)])
    _register(client, regions["tag"])
    _shrink(f"/sluice-in-{regions['tag']}", 0)
    inputs = [client.module.InferInput("INPUT0", [1, 16], "INT32"),
              client.module.InferInput("INPUT1", [1, 16], "INT32")]  # fmt: skip
    inputs[0].set_shared_memory("in", 64)
    inputs[1].set_shared_memory("in", 64, offset=64)
    with pytest.raises(InferenceServerException) as info:
        client.infer("simple", inputs)
    client.expect_status(info.value, 400)
    assert "was truncated" in info.value.message(), info.value.message()
    assert "now holds 0 bytes" in info.value.message(), info.value.message()
    _still_serving(client, shm_server)


def test_output_region_truncated_after_registration(
    client: ProtocolClient, regions: dict, shm_server: ServerProcess
) -> None:
    _register(client, regions["tag"])
    _shrink(f"/sluice-out-{regions['tag']}", 0)
    a = np.ones((1, 16), dtype=np.int32)
    out = client.module.InferRequestedOutput("OUTPUT0")
    out.set_shared_memory("out", 64)
    inputs = [client.input("INPUT0", a, "INT32"), client.input("INPUT1", a, "INT32")]
    with pytest.raises(InferenceServerException) as info:
        client.infer("simple", inputs, outputs=[out])
    client.expect_status(info.value, 400)
    assert "was truncated" in info.value.message(), info.value.message()
    assert "now holds 0 bytes" in info.value.message(), info.value.message()
    _still_serving(client, shm_server)


@pytest.fixture
def planted(tmp_path: Path) -> Iterator[dict]:
    """A file outside /dev/shm, a symlink to it planted in /dev/shm, and a directory there."""
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    secret = tmp_path / "secret"
    secret.write_bytes(b"s3cret-data-" * 16)
    link = Path(f"/dev/shm/sluice-link-{tag}")
    link.symlink_to(secret)
    folder = Path(f"/dev/shm/sluice-dir-{tag}")
    folder.mkdir()
    yield {"secret": secret, "link": "/" + link.name, "dir": "/" + folder.name}
    link.unlink()
    folder.rmdir()


def test_a_symlink_in_dev_shm_is_refused(
    client: ProtocolClient, planted: dict, shm_server: ServerProcess
) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.raw.register_system_shared_memory("leak", planted["link"], 64)
    client.expect_status(info.value, 400)
    assert "is a symbolic link" in info.value.message(), info.value.message()
    assert client.shm_status() == []
    assert planted["secret"].read_bytes() == b"s3cret-data-" * 16
    assert shm_server.alive()


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("dir", "is not a regular file"),
        ("/../etc/passwd", "is not a POSIX shared memory name"),
        ("/sluice/x", "is not a POSIX shared memory name"),
        ("/..", "is not a POSIX shared memory name"),
        ("/", "is not a POSIX shared memory name"),
        ("/sluice\x00x", "is not a POSIX shared memory name"),
    ],
)
def test_keys_that_are_not_shared_memory_objects(
    client: ProtocolClient, planted: dict, shm_server: ServerProcess, key: str, fragment: str
) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.raw.register_system_shared_memory("x", planted.get(key, key), 8)
    client.expect_status(info.value, 400)
    assert fragment in info.value.message(), info.value.message()
    assert client.shm_status() == []
    assert shm_server.alive()
