"""Reassembly on the fleet side: whole files only, verified, duplicates dropped."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from edge_agent._chunk import ChunkError, decode_chunk, encode_chunk, split
from edge_agent._receiver import CollectReceiver
from edge_agent._shipper import CollectShipper
from edge_agent._topics import Topics
from tests.unit.edge_agent.test_shipper import parquet

PATH = "model=mlp/version=1/date=2026-12-01/part-0001-1.parquet"


def messages(tmp_path: Path, rows: int = 40) -> list[tuple[str, bytes]]:
    parquet(tmp_path / "collect", "0001-1", rows)
    s = CollectShipper(tmp_path / "o.db", tmp_path / "collect", Topics("dev-1"), max_bytes=1 << 20, chunk_bytes=1024)  # fmt: skip
    s.scan()
    return [(m.topic, m.payload) for m in s.pending(limit=1000)]


def test_chunks_in_any_order_and_twice_give_one_file_with_every_row(tmp_path: Path) -> None:
    sent = messages(tmp_path)
    assert len(sent) > 3
    shuffled = sent + sent[:2]
    random.Random(1).shuffle(shuffled)
    receiver = CollectReceiver(tmp_path / "fleet")
    got = [r for r in (receiver.handle(t, p) for t, p in shuffled) if r is not None]
    assert len(got) == 1
    assert got[0].file == tmp_path / "fleet/model=mlp/version=1/date=2026-12-01/dev-1--part-0001-1.parquet"  # fmt: skip
    table = pq.read_table(got[0].file)
    assert table.column("request_id").to_pylist() == [f"r{i}" for i in range(40)]
    assert receiver.handle(*sent[0]) is None  # a re-delivery after the file was written
    assert receiver.incomplete() == []
    assert not list((tmp_path / "fleet").rglob(".*.tmp"))


def test_per_device_layout(tmp_path: Path) -> None:
    receiver = CollectReceiver(tmp_path / "fleet", per_device=True)
    for topic, payload in messages(tmp_path):
        receiver.handle(topic, payload)
    assert (tmp_path / "fleet/device=dev-1" / PATH).is_file()


def test_an_altered_chunk_is_refused_and_the_file_never_appears(tmp_path: Path) -> None:
    sent = messages(tmp_path)
    topic, payload = sent[1]
    altered = payload[:-1] + bytes([payload[-1] ^ 1])
    receiver = CollectReceiver(tmp_path / "fleet")
    with pytest.raises(ChunkError, match=r"part-0001-1.parquet \(sha256 \w+\) chunk 2/\d+: its \d+ bytes hash to sha256 \w+\.\.\., the header says \w+\.\.\.: altered on the way"):  # fmt: skip
        receiver.handle(topic, altered)
    for t, p in sent[:1] + sent[2:]:
        assert receiver.handle(t, p) is None
    assert not list((tmp_path / "fleet").glob("model=*/**/*.parquet"))
    (item,) = receiver.incomplete()
    assert item.missing == (1,) and item.path == PATH
    assert f"chunk(s) 2 of {len(sent)} missing" in str(item)


def test_chunks_whose_header_and_bytes_agree_but_not_the_file_digest_are_refused(tmp_path: Path) -> None:  # fmt: skip
    sent = messages(tmp_path)
    first = decode_chunk(sent[0][1])
    other = split("dev-1", PATH, b"x" * first.size, first.rows, len(first.data))
    forged = [
        encode_chunk(replace(c, digest=first.digest, id=f"{first.file_id}-{c.index}"))
        for c in other
    ]
    receiver = CollectReceiver(tmp_path / "fleet")
    with pytest.raises(ChunkError, match=r"reassemble to \d+ bytes with sha256 \w+\.\.\., the device sent \d+ bytes with sha256 \w+\.\.\.; file refused"):  # fmt: skip
        for payload in forged:
            receiver.handle(sent[0][0], payload)
    assert not list((tmp_path / "fleet").glob("model=*/**/*.parquet"))


@pytest.mark.parametrize(
    ("topic", "edit", "message"),
    [
        ("sluice/devices/dev-2/collect/mlp/1", {}, "the header names device 'dev-1', the topic 'dev-2'"),
        ("sluice/devices/dev-1/collect/other/1", {}, "the path names mlp/1, the topic other/1"),
        ("sluice/devices/dev-1/events", {}, "is not sluice/devices/<device>/collect/<model>/<version>"),
        ("sluice/devices/dev-1/collect/mlp/1", {"path": "model=mlp/version=1/date=2026-12-01/../../x.parquet"}, "is not a collection file path"),
        ("sluice/devices/dev-1/collect/mlp/1", {"format": "v0"}, "format 'v0', expected 'sluice.collect/1'"),
        ("sluice/devices/dev-1/collect/mlp/1", {"chunk": "0"}, "header field 'chunk' must be a int"),
    ],
)  # fmt: skip
def test_bad_messages_are_refused_with_the_reason(tmp_path: Path, topic: str, edit: dict[str, object], message: str) -> None:  # fmt: skip
    _, payload = messages(tmp_path)[0]
    head, _, data = payload.partition(b"\n")
    payload = json.dumps(json.loads(head) | edit).encode() + b"\n" + data
    with pytest.raises(ChunkError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):  # fmt: skip
        CollectReceiver(tmp_path / "fleet").handle(topic, payload)


def test_two_files_with_the_same_bytes_under_different_paths_are_two_files(tmp_path: Path) -> None:
    content = b"PAR1 same bytes PAR1"
    receiver = CollectReceiver(tmp_path / "fleet")
    got = []
    for segment in ("0001-1", "0002-1"):
        path = f"model=mlp/version=1/date=2026-12-01/part-{segment}.parquet"
        (chunk,) = split("dev-1", path, content, 0, 1024)
        got.append(receiver.handle("sluice/devices/dev-1/collect/mlp/1", encode_chunk(chunk)))
    assert [g.file.name for g in got if g is not None] == ["dev-1--part-0001-1.parquet", "dev-1--part-0002-1.parquet"]  # fmt: skip
