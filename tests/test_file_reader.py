"""``Client.file_reader`` in this process reuses a commit it resolved by id for a moment
(``tusk.sdk.local.PINNED_SECONDS``: a mount opens a reader per file), and never past it: a
commit deleted meanwhile is gone for readers made after that."""

from __future__ import annotations

from pathlib import Path

import pytest

import tusk.sdk.local
from tusk import Client
from tusk.errors import CommitNotFound


def test_a_reader_by_commit_id_reads_and_a_deleted_commit_is_gone_after_the_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(tmp_path / "home") as c:
        c.create_repo("r")
        c.put_file("r@master:/a", b"first")
        first = c.inspect_commit("r@master").id
        c.put_file("r@master:/a", b"second")
        second = c.inspect_commit("r@master").id
        readers = [c.file_reader(f"r@{first}:/a") for _ in range(3)]
        assert [r.read(0, 5) for r in readers] == [b"first"] * 3
        assert c.file_reader(f"r@{second}:/a").read(0, 6) == b"second"
        monkeypatch.setattr(tusk.sdk.local, "PINNED_SECONDS", 0.0)
        c.delete_commit(f"r@{second}")
        with pytest.raises(CommitNotFound):
            c.file_reader(f"r@{second}:/a")
        assert c.file_reader(f"r@{first}:/a").read(0, 5) == b"first"
