"""PostgreSQL going away and coming back: a clear error, nothing half-written, recovery."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

import tusk
from pgserver import PgServer
from tusk.errors import Unavailable


@pytest.fixture
def server() -> Iterator[PgServer]:
    s = PgServer()  # its own server: these tests stop it
    yield s
    s.stop()


@pytest.fixture
def client(
    server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tusk.Client]:
    monkeypatch.setenv("TUSK_METADATA_URL", server.new_database())
    c = tusk.Client(tmp_path / "home")
    yield c
    c.close()


class _StopsServer(io.RawIOBase):
    """A stream that stops PostgreSQL once half of it has been read: mid-upload."""

    def __init__(self, server: PgServer, data: bytes) -> None:
        self.server, self.data, self.pos, self.stopped = server, data, 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        if not self.stopped and self.pos >= len(self.data) // 2:
            self.server.halt()
            self.stopped = True
        n = min(len(b), len(self.data) - self.pos, 1 << 16)
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def test_stop_and_restart_postgres(server: PgServer, client: tusk.Client) -> None:
    client.create_repo("r")
    client.put_file("r@master:/a", b"first")
    server.halt()
    with pytest.raises(Unavailable, match="unreachable") as err:
        client.put_file("r@master:/b", b"second")
    assert "\n" not in str(err.value) and "127.0.0.1" in str(err.value)
    with pytest.raises(Unavailable):
        client.get_file("r@master:/a")
    server.start()
    client.put_file("r@master:/b", b"second")  # the pool reconnects by itself
    assert [f.path for f in client.list_files("r@master:/")] == ["/a", "/b"]
    assert len(client.list_commits("r@master")) == 2
    assert client.fsck().ok


def test_postgres_dies_mid_upload(server: PgServer, client: tusk.Client) -> None:
    client.create_repo("r")
    client.put_file("r@master:/a", b"first")
    data = bytes(range(256)) * 16384  # 4 MiB, several chunks
    with pytest.raises(Unavailable):
        client.put_file("r@master:/big", _StopsServer(server, data))
    server.start()
    # No partial commit: the branch is where it was; the data written so far is garbage.
    assert [c.files for c in client.list_commits("r@master")] == [1]
    assert client.fsck().ok
    client.put_file("r@master:/big", data)
    assert client.get_file("r@master:/big") == data


def test_cli_says_unavailable_in_one_line(
    server: PgServer, client: tusk.Client, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from tusk.cli.main import cli

    client.create_repo("r")
    server.halt()
    r = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "list", "repo"])
    assert r.exit_code == 7
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unreachable" in lines[0]
    server.start()
