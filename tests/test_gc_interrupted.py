"""An interrupted gc leaves only garbage: fsck stays clean and the next gc finishes the job."""

from __future__ import annotations

from pathlib import Path

import pytest

import tusk
from tusk.storage.backends.local import LocalBackend


def _pack_files(home: Path) -> list[Path]:
    return [p for p in (home / "objects" / "packs").rglob("*") if p.is_file()]


def test_gc_killed_between_rows_and_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    with tusk.Client(home) as c:
        c.create_repo("keep")
        c.create_repo("drop")
        c.put_file("keep@master:/a.bin", bytes(range(256)) * 400)
        c.put_file("drop@master:/b.bin", b"\x01\x02" * 70000)
        c.delete_repo("drop")

        def boom(self: LocalBackend, key: str) -> None:
            raise KeyboardInterrupt("gc interrupted")

        # The object deletions fail after the metadata sweep committed.
        monkeypatch.setattr(LocalBackend, "delete", boom)
        with pytest.raises(KeyboardInterrupt):
            c.gc(grace=0)
        monkeypatch.undo()

        report = c.fsck()
        assert report.ok, report.problems
        assert any("not indexed" in n for n in report.notes)
        assert c.get_file("keep@master:/a.bin") == bytes(range(256)) * 400

        second = c.gc(grace=0)
        assert second.packs_deleted >= 1
        assert c.fsck().ok
        assert c.fsck().notes == []
        assert c.get_file("keep@master:/a.bin") == bytes(range(256)) * 400
    assert len(_pack_files(home)) == 1


def test_gc_keeps_everything_within_grace(tmp_path: Path) -> None:
    with tusk.Client(tmp_path / "home") as c:
        c.create_repo("r")
        c.put_file("r@master:/x", b"x" * 50000)
        c.delete_repo("r")
        recent = c.gc()  # default grace: the data was touched just now
        assert (recent.nodes_deleted, recent.chunks_deleted, recent.packs_deleted) == (0, 0, 0)
        assert c.stats()["chunks"] > 0
        swept = c.gc(grace=0)
        assert swept.chunks_deleted > 0 and swept.packs_deleted == 1
        assert c.stats()["chunks"] == 0
        assert c.fsck().ok
