"""Shared fixtures: a fresh Tusk home and an SDK client on it, on each metadata engine.

Test modules that set ``ENGINES = ("sqlite", "postgresql")`` run every test once per engine:
for PostgreSQL, ``TUSK_METADATA_URL`` points at a fresh database of a server the session
starts itself (tests/pgserver.py), so the SDK, the CLI and subprocesses all use it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tusk import Client

sys.path.insert(0, str(Path(__file__).parent))

from pgserver import PgServer


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # On a crash (SIGSEGV, SIGABRT) print only the crashing thread: with the many server and
    # pool threads a session holds, a dump of all of them pushes the one that matters out of
    # the part of a CI log that is kept.
    import faulthandler

    from _pytest.faulthandler import fault_handler_stderr_fd_key

    fd = config.stash.get(fault_handler_stderr_fd_key, None)
    if fd is not None:
        faulthandler.enable(file=fd, all_threads=False)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    engines = getattr(metafunc.module, "ENGINES", None)
    if engines and "engine" not in metafunc.fixturenames:
        metafunc.fixturenames.append("engine")
    if engines:
        metafunc.parametrize("engine", engines, indirect=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer()
    yield server
    server.stop()


@pytest.fixture
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name = getattr(request, "param", "sqlite")
    if name == "postgresql":
        server: PgServer = request.getfixturevalue("pg_server")
        monkeypatch.setenv("TUSK_METADATA_URL", server.new_database())
    else:
        monkeypatch.delenv("TUSK_METADATA_URL", raising=False)
    return str(name)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def client(home: Path, engine: str) -> Iterator[Client]:
    c = Client(home)
    yield c
    c.close()
