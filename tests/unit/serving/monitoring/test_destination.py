"""--collect to a file:// URL or any fsspec URL: the spool stays local, rolled Parquet
goes to the destination (fsspec's memory:// filesystem stands in for an object store)."""

from __future__ import annotations

import io
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest

from serving.monitoring import Collector, CollectorOptions, check_destination
from serving.settings import Settings

INPUTS = [("x", np.dtype(np.float32), (2,))]
OUTPUTS = [("y", np.dtype(np.float32), (2,))]


def _collect(options: CollectorOptions) -> Collector:
    collector = Collector(options)
    collector.attach("m", "1", {}, INPUTS, OUTPUTS)
    collector.start()
    for i in range(3):
        x = np.full((2, 2), i, np.float32)
        assert collector.observe("m", "1", f"r{i}", {"x": x}, {"y": 2 * x}, 1000)
    collector.close()
    return collector


def test_memory_url_gets_the_parquet_and_the_spool_stays_local(tmp_path: Path) -> None:
    url = f"memory://sluice-{tmp_path.name}/collected"
    spool = tmp_path / "spool"
    collector = _collect(CollectorOptions(destination=url, spool_dir=spool))
    assert collector.rows_written == 6
    fs = fsspec.filesystem("memory")
    files = fs.glob(f"/sluice-{tmp_path.name}/collected/model=m/version=1/date=*/part-*.parquet")
    assert len(files) == 1
    with fs.open(files[0], "rb") as f:
        table = pq.read_table(io.BytesIO(f.read()))
    rows = sorted(table.to_pylist(), key=lambda r: (r["request_id"], r["batch_index"]))
    assert [r["request_id"] for r in rows] == ["r0", "r0", "r1", "r1", "r2", "r2"]
    assert rows[2]["x"] == [1.0, 1.0] and rows[2]["y"] == [2.0, 2.0]
    assert spool.is_dir() and not list(spool.glob("*.seg*"))  # rolled, then removed
    assert not list(tmp_path.glob("model=*"))


def test_file_url_is_a_local_directory(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    collector = _collect(CollectorOptions(destination=f"file://{dest}"))
    assert collector.rows_written == 6
    (path,) = dest.glob("model=m/version=1/date=*/part-*.parquet")
    assert pq.read_table(path).num_rows == 6
    assert (dest / "_spool").is_dir()


def test_a_url_needs_a_local_spool(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a local spool directory"):
        Collector(CollectorOptions(destination=f"memory://sluice-{tmp_path.name}"))


def test_bad_destinations_are_refused_before_serving(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsspec cannot open it"):
        check_destination("nosuchprotocol://bucket/x")
    with pytest.raises(ValueError, match="--collect-max-bytes applies to local destinations"):
        Settings(model_repository=tmp_path, collect="memory://x", collect_max_bytes=1000)
    settings = Settings(model_repository=tmp_path, collect=f"file://{tmp_path}/c")
    assert settings.collect == f"file://{tmp_path}/c"
