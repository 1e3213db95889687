"""Shared fixtures: a fresh Tusk home and an SDK client on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tusk import Client


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def client(home: Path) -> Iterator[Client]:
    c = Client(home)
    yield c
    c.close()
