"""The pipeline suite (tests/pps/test_engine.py) again, through HTTP.

Its tests run with a ``client`` that is a ``RemoteClient`` on a live server; where they run
the scheduler, it runs on the server's services (see ``ServerSideClient``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from apihelpers import Live

from tusk.sdk.remote import RemoteClient

sys.path.insert(0, str(Path(__file__).parents[1] / "pps"))
import test_engine as shared

# Through HTTP on SQLite: the engines are covered by the in-process runs of the same tests,
# and the API layer is the same on either (tests/api/test_api.py checks PostgreSQL 503s).
ENGINES = ("sqlite",)

globals().update({k: v for k, v in vars(shared).items() if k.startswith("test_") and callable(v)})


@pytest.fixture
def client(live: Live, monkeypatch: pytest.MonkeyPatch) -> Iterator[RemoteClient]:
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    c = live.client()
    c.create_repo("in")
    yield c
