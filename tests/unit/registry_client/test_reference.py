from __future__ import annotations

import pytest

from registry_client import InvalidReference, ModelReference, parse_reference


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models:/resnet/3", ModelReference("resnet", version=3)),
        ("models:/resnet@champion", ModelReference("resnet", alias="champion")),
        ("models:/resnet@latest", ModelReference("resnet", alias="latest")),
        ("resnet", ModelReference("resnet", alias="latest")),
        ("models:/resnet?stage=prod&team=a",
         ModelReference("resnet", alias="latest", tags=(("stage", "prod"), ("team", "a")))),
    ],
)  # fmt: skip
def test_parse(text: str, expected: ModelReference) -> None:
    assert parse_reference(text) == expected
    assert parse_reference(str(expected)) == expected


@pytest.mark.parametrize(
    "text", ["models:/x/0", "models:/x/abc", "models:/../etc/1", "models:/.hidden", "models:/x@", "models:/x/2?a=b"]
)  # fmt: skip
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_reference(text)


def test_only_versions_are_fixed() -> None:
    assert not parse_reference("models:/m/2").follows
    assert parse_reference("models:/m@champion").follows
