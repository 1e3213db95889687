"""Pipeline creation never half-happens; a repo read under two names works (issue 20)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tusk
from tusk.errors import StorageError

ENGINES = ("sqlite", "postgresql")


def two_names(kind: str = "cross", **pfs: Any) -> dict[str, Any]:
    return {
        "pipeline": {"name": "p"},
        "input": {
            kind: [
                {"pfs": {"repo": "r", "glob": "/(*)", "name": "left", **pfs}},
                {"pfs": {"repo": "r", "glob": "/(*)", "name": "right", **pfs}},
            ]
        },
        "transform": {"cmd": ["sh", "-c", 'ls "$TUSK_PFS" > "$TUSK_PFS/out/$TUSK_DATUM_ID"']},
    }


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str) -> Iterator[tusk.Client]:
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    with tusk.Client(tmp_path / "home") as c:
        c.create_repo("r")
        c.put_files("r@master", [("/a", b"a"), ("/b", b"b")])
        yield c


@pytest.mark.parametrize(
    ("kind", "extra", "datums"),
    [("cross", {}, 4), ("join", {"join_on": "$1"}, 2), ("group", {"group_by": "$1"}, 2)],
)
def test_one_repo_under_two_names(
    client: tusk.Client, kind: str, extra: dict[str, Any], datums: int
) -> None:
    info = client.create_pipeline(two_names(kind, **extra))
    assert info.name == "p"
    assert client.inspect_branch("p@master").provenance == ["r@master"]
    client.run_scheduler(once=True)
    job = client.list_jobs("p")[0]
    assert job.state == "success" and job.datums_total == datums, job
    # The repo is read under both names: each datum sees /pfs/left and /pfs/right.
    outputs = [f.path for f in client.list_files("p@master:/")]
    assert len(outputs) == datums
    assert client.get_file(f"p@master:{outputs[0]}").split() == [b"left", b"out", b"right"]


def test_a_failure_midway_leaves_nothing_behind(
    client: tusk.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    pfs = client._pfs

    def broken(*_args: Any, **_kw: Any) -> None:
        raise StorageError("disk gone while creating the output branch")

    monkeypatch.setattr(pfs, "create_branch", broken)
    cron = {"pipeline": {"name": "ticker"}, "transform": {"cmd": ["true"]},
            "input": {"cross": [{"pfs": {"repo": "r", "glob": "/"}},
                                {"cron": {"name": "tick", "spec": "@every 1h"}}]}}  # fmt: skip
    for spec in (two_names(), cron):
        with pytest.raises(StorageError, match="disk gone"):
            client.create_pipeline(spec)
    assert client.list_pipelines() == []
    assert [r.name for r in client.list_repos()] == ["r"]  # no output or cron repo left
    monkeypatch.undo()
    assert client.create_pipeline(two_names()).version == 1  # a retry works: nothing to clash
    assert client.create_pipeline(cron).version == 1
