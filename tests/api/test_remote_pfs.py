"""The PFS suite (tests/test_pfs.py) again, through HTTP: a RemoteClient on a live server.

Every test of that module that takes the ``client`` or ``repo`` fixture runs here with a
``client`` that is a ``RemoteClient``; both transports must pass the same assertions.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
from apihelpers import Live

import test_pfs as shared
from test_pfs import repo  # noqa: F401 - the shared fixture, bound to the client below
from tusk.sdk.remote import RemoteClient

# Through HTTP on SQLite: the engines are covered by the in-process runs of the same tests,
# and the API layer is the same on either (tests/api/test_api.py checks PostgreSQL 503s).
ENGINES = ("sqlite",)


def _uses_client(fn: object) -> bool:
    params = inspect.signature(fn).parameters  # type: ignore[arg-type]
    return "client" in params or "repo" in params


globals().update(
    {
        name: fn
        for name, fn in vars(shared).items()
        if name.startswith("test_") and callable(fn) and _uses_client(fn)
    }
)


@pytest.fixture
def client(live: Live) -> Iterator[RemoteClient]:
    yield live.client()
