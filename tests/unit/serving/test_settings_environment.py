"""The model repository and the followed references come from SLUICE_ variables too, so a
container image runs ``sluice serve`` with no argument."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from serving.cli import main
from serving.settings import add_arguments, settings_from


def _parse(*argv: str) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return vars(parser.parse_args(argv))


def test_the_repository_from_its_variable_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    settings = settings_from(_parse(), {"SLUICE_MODEL_REPOSITORY": "models"})
    assert settings.model_repository == tmp_path.resolve() / "models"


def test_the_repository_flag_wins_over_its_variable(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    values = _parse("--model-repository", str(tmp_path / "a"))
    settings = settings_from(values, {"SLUICE_MODEL_REPOSITORY": str(tmp_path / "missing")})
    assert settings.model_repository == tmp_path / "a"


def test_without_a_repository_the_error_names_the_flag_and_the_variable() -> None:
    with pytest.raises(ValueError) as raised:
        settings_from(_parse(), {})
    assert str(raised.value) == ("--model-repository DIR is required (or $SLUICE_MODEL_REPOSITORY)")


def test_sluice_serve_without_a_repository_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SLUICE_MODEL_REPOSITORY", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["serve"])
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        "sluice: error: --model-repository DIR is required (or $SLUICE_MODEL_REPOSITORY)\n"
    )


def test_a_missing_repository_from_the_variable_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a directory"):
        settings_from(_parse(), {"SLUICE_MODEL_REPOSITORY": str(tmp_path / "nowhere")})


def test_the_model_variable_holds_references_separated_by_spaces(tmp_path: Path) -> None:
    values = {**_parse(), "model_repository": tmp_path, "registry": str(tmp_path)}
    environ = {"SLUICE_MODEL": " models:/a@champion\tmodels:/b/3 \n"}
    settings = settings_from(values, environ)
    assert settings.registry_models == ("models:/a@champion", "models:/b/3")


def test_model_flags_win_over_the_variable(tmp_path: Path) -> None:
    values = {
        **_parse("--model", "models:/c@live"),
        "model_repository": tmp_path,
        "registry": str(tmp_path),
    }
    settings = settings_from(values, {"SLUICE_MODEL": "models:/a@champion models:/b/3"})
    assert settings.registry_models == ("models:/c@live",)


def test_a_bad_reference_in_the_variable_is_refused(tmp_path: Path) -> None:
    values = {**_parse(), "model_repository": tmp_path, "registry": str(tmp_path)}
    with pytest.raises(ValueError, match=r"--model .models:/."):
        settings_from(values, {"SLUICE_MODEL": "models:/a@champion models:/"})


def test_the_model_variable_takes_the_default_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """$SLUICE_MODEL without --registry falls back to $SLUICE_REGISTRY, as --model does:
    here a registry directory that does not exist, so the server stops at the pull."""
    monkeypatch.setenv("SLUICE_MODEL_REPOSITORY", str(tmp_path))
    monkeypatch.setenv("SLUICE_MODEL", "models:/a@champion")
    monkeypatch.delenv("SLUICE_REGISTRY", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["serve"])
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        "sluice: error: --model needs --registry URI (or $SLUICE_REGISTRY)\n"
    )
