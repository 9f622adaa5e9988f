from __future__ import annotations

import pytest

from edge_agent import DocumentError, parse_document


def test_a_document_with_a_version_and_an_alias() -> None:
    doc = parse_document(b'{"version": 3, "models": {"mlp": {"ref": "models:/mlp@champion", "golden": "g.json"}}}')  # fmt: skip
    spec = doc.models["mlp"]
    assert doc.version == 3 and spec.pinned_version is None and spec.golden == "g.json"
    assert parse_document(doc.to_json()) == doc


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"version": -1, "models": {}}', "version"),
        (b'{"version": true, "models": {}}', "version"),
        (b'{"version": 1}', "models"),
        (b'{"version": 1, "models": {"m": {"ref": "m"}}}', "models.m.ref"),
        (b'{"version": 1, "models": {"m": {"ref": "models:/m/1", "golden": "../x"}}}', "golden"),
        (b'{"version": 1, "models": {"m": {"ref": "models:/m/1", "extra": 1}}}', "unknown field"),
        (
            b'{"version": 1, "models": {"m": {"ref": "models:/m/1", "traffic": {"1": 0, "2": 10}}}}',
            "ref names",
        ),
        (
            b'{"version": 1, "models": {"m": {"ref": "models:/m/1", "traffic": {"1": 0}}}}',
            "all be 0",
        ),
        (
            b'{"version": 1, "models": {"m": {"ref": "models:/m/1", "traffic": {"1": 0.5}}}}',
            "integer",
        ),
        (
            b'{"version": 1, "models": {"m": {"ref": "models:/m/1", "traffic": {"x": 1}}}}',
            "traffic",
        ),
    ],
)
def test_a_bad_document_is_refused_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason):
        parse_document(payload)


def test_traffic_giving_all_weight_to_the_pinned_version_is_accepted() -> None:
    doc = parse_document({"version": 1, "models": {"m": {"ref": "models:/m/2", "traffic": {"2": 100, "1": 0}}}})  # fmt: skip
    assert doc.models["m"].pinned_version == 2


def test_a_split_between_versions_is_kept_and_renders_back() -> None:
    doc = parse_document(b'{"version": 4, "models": {"m": {"ref": "models:/m/2", "traffic": {"2": 20, "1": 80}}}}')  # fmt: skip
    assert dict(doc.models["m"].traffic) == {1: 80, 2: 20}
    assert doc.to_json()["models"]["m"]["traffic"] == {"1": 80, "2": 20}
    assert parse_document(doc.to_json()) == doc
