"""Settings from flags, environment variables and the config file, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

import tusk
from tusk.config import setting
from tusk.errors import InvalidArgument


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.yaml"
    monkeypatch.setenv("TUSK_CONFIG", str(path))
    for name in ("ADDRESS", "METADATA_URL", "STORAGE_URL", "TOKEN"):
        monkeypatch.delenv(f"TUSK_{name}", raising=False)
    return path


def test_flag_env_context_file_order(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config.write_text(
        "active_context: prod\n"
        "contexts:\n  prod: {address: 'http://prod:7800'}\n  dev: {address: 'http://dev:7800'}\n"
        "address: http://top:7800\ntoken: t0\n"
    )
    assert setting("address") == "http://prod:7800"  # the active context first
    assert setting("token") == "t0"  # then the top level
    monkeypatch.setenv("TUSK_ADDRESS", "http://env:7800")
    assert setting("address") == "http://env:7800"
    assert setting("address", "http://flag:7800") == "http://flag:7800"
    assert setting("storage_url") is None


def test_broken_and_unknown_config(config: Path) -> None:
    config.write_text("address: [unclosed\n")
    with pytest.raises(InvalidArgument, match="cannot read config file"):
        setting("address")
    config.write_text("adress: http://typo\n")
    with pytest.raises(InvalidArgument, match="unknown setting 'adress'"):
        setting("address")


def test_storage_urls_from_the_config_file(config: Path, tmp_path: Path) -> None:
    db, objects = tmp_path / "elsewhere.db", tmp_path / "objects-elsewhere"
    config.write_text(f"metadata_url: sqlite:///{db}\nstorage_url: {objects}\n")
    with tusk.Client(tmp_path / "home") as c:
        c.create_repo("r")
        c.put_file("r@master:/a", b"a" * 100_000)
    assert db.exists() and any(objects.rglob("*"))
    assert not (tmp_path / "home" / "tusk.db").exists()
