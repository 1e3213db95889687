"""Fixtures for API tests: a live server (uvicorn on 127.0.0.1, a free port) on a fresh home.

``live`` serves the home of the test (``home``, on the test's metadata engine) from a thread
of this process; ``live.client()`` is a ``RemoteClient`` for it whose ``run_scheduler`` runs
the server's scheduler (here, on the server's own services), so tests written for the
in-process client run unchanged over HTTP.

``client`` runs a test twice: on an in-process client of a fresh home, and on a client of the
real ``tusk up`` that the test module's own ``gw`` fixture starts (tests/gateway.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apihelpers import Live, start_live, stop_live

from gateway import Gateway
from tusk import Client


@pytest.fixture
def live(home: Path, engine: str) -> Iterator[Live]:
    server = start_live(home)
    yield server
    stop_live(server)


@pytest.fixture(params=["in-process", "http"])
def client(request: pytest.FixtureRequest, gw: Gateway, tmp_path: Path) -> Iterator[Client]:
    c = Client(tmp_path / "home") if request.param == "in-process" else Client(address=gw.api)
    with c:
        yield c
