"""Tags (issue 18): a name for a commit, read as ``repo@v1`` wherever a commit is taken, through
the SDK in-process and over HTTP, and the CLI; a tagged commit cannot be deleted or squashed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from apihelpers import client_over

import tusk
from schemahelpers import undo_migrations
from tusk import Client
from tusk.errors import AlreadyExists, Conflict, InUse, NotFound


@pytest.fixture(params=["in-process", "http"])
def client(request: pytest.FixtureRequest, home: Path) -> Iterator[Client]:
    with client_over(str(request.param), home) as c:
        yield c


def test_a_tag_names_a_commit_everywhere_a_commit_is_taken(client: Client) -> None:
    client.create_repo("data")
    first = client.put_file("data@master:/x", b"one").commit.id
    second = client.put_file("data@master:/x", b"two").commit.id
    tag = client.create_tag("data@master^1", "v1")
    assert (tag.repo, tag.name, tag.commit) == ("data", "v1", first)
    assert client.get_file("data@v1:/x") == b"one"  # a file of the tagged commit
    assert client.inspect_commit("data@v1").id == first
    assert [c.id for c in client.list_commits("data@v1")] == [first]  # its history
    assert [d.path for d in client.diff_file("data@master", "data@v1")] == ["/x"]
    client.create_tag(f"data@{second}", "latest")
    assert [t.name for t in client.list_tags("data")] == ["latest", "v1"]
    assert client.inspect_tag("data@v1").commit == first

    # Bad input changes nothing: one clear error each.
    with pytest.raises(AlreadyExists, match="tag data@v1 already exists"):
        client.create_tag("data@master", "v1")
    with pytest.raises(AlreadyExists, match="a tag may not share a branch's name"):
        client.create_tag("data@master", "master")
    with pytest.raises(AlreadyExists, match="a branch may not share a tag's name"):
        client.create_branch("data@v1", head="master")
    with pytest.raises(NotFound, match="tag nope not found in repo data"):
        client.delete_tag("data@nope")
    with pytest.raises(NotFound):
        client.create_tag("data@nosuchbranch", "v2")
    with pytest.raises(tusk.errors.InvalidArgument):
        client.create_tag("data@master", "bad name")
    client.start_commit("data@master")
    with pytest.raises(Conflict, match="finish it before tagging"):
        client.create_tag(f"data@{client.inspect_commit('data@master').id}", "open")
    client.finish_commit("data@master")

    # A tagged commit stays: not deleted, not squashed, until its tag goes.
    with pytest.raises(InUse, match="is tagged v1"):
        client.squash_commit(f"data@{first}")
    client.delete_tag("data@latest")
    assert [t.name for t in client.list_tags("data")] == ["v1"]
    assert client.inspect_commit(f"data@{second}").id == second  # the commit stays
    client.create_branch("data@side", head="master")
    side = client.put_file("data@side:/y", b"y").commit.id
    client.create_tag("data@side", "s1")
    with pytest.raises(InUse, match=f"commit data@{side} is tagged s1"):
        client.delete_commit("data@side")
    client.delete_tag("data@s1")
    client.delete_commit("data@side")
    assert [t.name for t in client.list_tags("data")] == ["v1"]
    assert client.fsck().ok


def test_the_cli_and_an_older_home(tmp_path: Path) -> None:
    """``tusk create/list/inspect/delete tag``, on a home made before tags (migrated on open)."""

    from tusk.storage.meta.store import MetaStore, sqlite_url

    home = tmp_path / "home"
    with Client(home) as c:
        c.create_repo("r")
        c.put_file("r@master:/a", b"a")
    store = MetaStore(sqlite_url(home / "tusk.db"))
    with store.write() as tx:  # back to 0011: no tags table
        undo_migrations(tx.conn, "0011")
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}

    def tusk_cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [sys.executable, "-m", "tusk.cli.main", "--home", str(home), *args],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert r.returncode == code, r.stderr
        return r

    assert "tagged r@" in tusk_cli("create", "tag", "r@master", "v1").stdout
    listed = json.loads(tusk_cli("list", "tag", "r", "-o", "json").stdout)
    assert [t["name"] for t in listed] == ["v1"]
    assert tusk_cli("get", "file", "r@v1:/a").stdout == "a"
    assert "Commit:" in tusk_cli("inspect", "tag", "r@v1").stdout
    err = tusk_cli("create", "tag", "r@master", "v1", code=4).stderr
    assert err.strip().splitlines() == ["error: tag r@v1 already exists (delete it first)"]
    tusk_cli("delete", "tag", "r@v1")
    assert "not found" in tusk_cli("delete", "tag", "r@v1", code=3).stderr
