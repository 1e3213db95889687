"""Fixtures shared by the pipeline tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import tusk


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tusk.Client]:
    """A client of an embedded store whose scheduler runs in a thread (spouts and services
    included), as under tusk up."""
    c = tusk.Client(tmp_path / "home")
    stop = threading.Event()
    loop = threading.Thread(target=c.run_scheduler, kwargs={"stop": stop}, daemon=True)
    loop.start()
    yield c
    stop.set()
    loop.join(30)
    c.close()
