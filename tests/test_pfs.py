"""PFS semantics through the SDK: repos, branches, commits, files, errors."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from tusk import Client
from tusk.errors import (
    AlreadyExists,
    BranchNotFound,
    CommitFinished,
    CommitNotFound,
    Conflict,
    FileNotFound,
    InUse,
    InvalidArgument,
    InvalidName,
    InvalidPath,
    PathConflict,
    ProjectNotFound,
    RepoNotFound,
    Timeout,
)

ENGINES = ("sqlite", "postgresql")

MISSING_ID = "0123456789abcdef0123456789abcdef"


def state(c: Client, repo: str = "r") -> tuple[object, ...]:
    """Everything a failed operation must leave unchanged in ``repo``."""
    return (
        sorted((b.name, b.head) for b in c.list_branches(repo)),
        sorted(
            (ci.id, ci.parent, ci.state, ci.size, ci.files, ci.description)
            for ci in c.list_commits(repo)
        ),
        [r.name for r in c.list_repos()],
    )


def files_of(c: Client, address: str) -> dict[str, bytes]:
    """Every file at or below ``address`` with its bytes, through glob + get."""
    repo_ref = address.split(":", 1)[0]
    out: dict[str, bytes] = {}
    for info in c.glob_files(f"{repo_ref}:/**"):
        if info.type == "file":
            out[info.path] = c.get_file(f"{repo_ref}:{info.path}")
    return out


@pytest.fixture
def repo(client: Client) -> Client:
    client.create_repo("r", description="test repo")
    return client


# Repos


def test_repo_create_list_inspect_delete(client: Client) -> None:
    assert client.list_repos() == []
    info = client.create_repo("images", description="pictures")
    assert (info.name, info.description, info.size, info.branches) == ("images", "pictures", 0, [])
    client.create_repo("labels")
    assert [r.name for r in client.list_repos()] == ["images", "labels"]

    with pytest.raises(AlreadyExists):
        client.create_repo("images", description="other")
    assert client.inspect_repo("images").description == "pictures"
    assert client.create_repo("images", "new words", update=True).description == "new words"

    client.put_file("images@master:/a.png", b"12345")
    client.put_file("images@dev:/b.png", b"1234567890")
    info = client.inspect_repo("images")
    assert info.size == 5  # the size of master's head
    assert sorted(info.branches) == ["dev", "master"]

    client.delete_repo("images")
    assert [r.name for r in client.list_repos()] == ["labels"]
    with pytest.raises(RepoNotFound):
        client.inspect_repo("images")
    with pytest.raises(RepoNotFound):
        client.get_file("images@master:/a.png")
    with pytest.raises(RepoNotFound):
        client.delete_repo("images")
    # The name can be reused and starts empty.
    client.create_repo("images")
    assert client.list_branches("images") == []
    assert client.list_commits("images") == []


def test_repo_names_are_checked(client: Client) -> None:
    for bad in ("", "has space", "a/b/c", "/x", "x/", "x" * 64, "dots.dots", "ümlaut"):
        with pytest.raises(InvalidName):
            client.create_repo(bad)
    with pytest.raises(ProjectNotFound, match="tusk create project nope"):
        client.create_repo("nope/x")  # project/repo names a project, which must exist
    assert client.list_repos() == []


def test_delete_repo_refused_while_in_provenance(client: Client) -> None:
    client.create_repo("raw")
    client.create_repo("clean")
    client.put_file("raw@master:/x", b"data")
    client.create_branch("clean@master", provenance=["raw@master"])
    assert client.inspect_branch("raw@master").subvenance == ["clean@master"]
    assert client.inspect_branch("clean@master").provenance == ["raw@master"]

    before = state(client, "raw")
    with pytest.raises(InUse):
        client.delete_repo("raw")
    assert state(client, "raw") == before
    assert client.get_file("raw@master:/x") == b"data"

    client.delete_repo("raw", force=True)
    assert [r.name for r in client.list_repos()] == ["clean"]
    assert client.inspect_branch("clean@master").provenance == []
    assert client.fsck().ok


def test_delete_branch_refused_while_in_provenance(client: Client) -> None:
    client.create_repo("raw")
    client.create_repo("clean")
    client.put_file("raw@master:/x", b"data")
    client.create_branch("clean@master", provenance=["raw@master"])
    with pytest.raises(InUse):
        client.delete_branch("raw@master")
    assert client.inspect_branch("raw@master").head is not None
    client.delete_branch("raw@master", force=True)
    with pytest.raises(BranchNotFound):
        client.inspect_branch("raw@master")


def test_provenance_cycles_and_self_are_refused(client: Client) -> None:
    client.create_repo("a")
    client.create_repo("b")
    client.create_branch("a@master")
    client.create_branch("b@master", provenance=["a@master"])
    with pytest.raises(InvalidArgument):
        client.create_branch("a@master", provenance=["b@master"])
    assert client.inspect_branch("a@master").provenance == []
    with pytest.raises(InvalidArgument):
        client.create_branch("a@master", provenance=["a@master"])
    with pytest.raises(RepoNotFound):
        client.create_branch("a@x", provenance=["nope@master"])
    assert [b.name for b in client.list_branches("a")] == ["master"]
    # As in Pachyderm, a provenance branch that does not exist yet is created, empty.
    client.create_branch("a@x", provenance=["b@later"])
    assert client.inspect_branch("b@later").head is None
    assert client.inspect_branch("b@later").subvenance == ["a@x"]


# Branches


def test_branch_from_branch_commit_and_ancestor_is_o1(repo: Client) -> None:
    c1 = repo.put_file("r@master:/f", b"one").commit
    c2 = repo.put_file("r@master:/f", b"two").commit
    c3 = repo.put_file("r@master:/f", b"three").commit
    stats = repo.stats()

    assert repo.create_branch("r@dev", head="master").head == c3.id
    assert repo.create_branch("r@old", head=c1.id).head == c1.id
    assert repo.create_branch("r@mid", head="master^1").head == c2.id
    assert repo.create_branch("r@first", head="master~2").head == c1.id
    assert repo.create_branch("r@prefix", head=c2.id[:10]).head == c2.id
    assert repo.create_branch("r@empty").head is None
    # O(1): no commits, nodes or chunks are copied.
    assert repo.stats() == stats

    assert repo.get_file("r@dev:/f") == b"three"
    assert repo.get_file("r@old:/f") == b"one"
    assert repo.get_file("r@mid:/f") == b"two"
    assert repo.inspect_branch("r@dev").head == c3.id
    assert sorted(b.name for b in repo.list_branches("r")) == [
        "dev",
        "empty",
        "first",
        "master",
        "mid",
        "old",
        "prefix",
    ]
    assert sorted(repo.inspect_commit(f"r@{c3.id}").branches) == ["r@dev", "r@master"]


def test_branch_move_and_existing(repo: Client) -> None:
    c1 = repo.put_file("r@master:/f", b"one").commit
    c2 = repo.put_file("r@master:/f", b"two").commit
    repo.create_branch("r@dev", head="master")
    with pytest.raises(AlreadyExists):
        repo.create_branch("r@dev")
    assert repo.create_branch("r@dev", head=c1.id).head == c1.id
    assert repo.get_file("r@dev:/f") == b"one"
    # Writes to the moved branch build on its new head; master is untouched.
    c3 = repo.put_file("r@dev:/g", b"g").commit
    assert c3.parent == c1.id
    assert repo.inspect_branch("r@master").head == c2.id
    assert repo.get_file("r@master:/f") == b"two"
    with pytest.raises(FileNotFound):
        repo.get_file("r@master:/g")


def test_branch_delete_keeps_commits(repo: Client) -> None:
    repo.put_file("r@master:/f", b"one")
    c = repo.put_file("r@dev:/f", b"dev").commit
    repo.delete_branch("r@dev")
    with pytest.raises(BranchNotFound):
        repo.inspect_branch("r@dev")
    with pytest.raises(BranchNotFound):
        repo.get_file("r@dev:/f")
    with pytest.raises(BranchNotFound):
        repo.delete_branch("r@dev")
    assert repo.get_file(f"r@{c.id}:/f") == b"dev"
    assert [b.name for b in repo.list_branches("r")] == ["master"]


def test_branch_errors_change_nothing(repo: Client) -> None:
    repo.put_file("r@master:/f", b"one")
    before = state(repo)
    with pytest.raises(BranchNotFound):
        repo.create_branch("r@dev", head="nope")
    with pytest.raises(CommitNotFound):
        repo.create_branch("r@dev", head="master^5")
    with pytest.raises(CommitNotFound):
        repo.create_branch("r@dev", head=MISSING_ID)
    with pytest.raises(InvalidName):
        repo.create_branch("r@" + "b" * 64, head="master")
    with pytest.raises(InvalidName):
        repo.create_branch("r@" + "a" * 32, head="master")  # looks like a commit id
    with pytest.raises(InvalidArgument):
        repo.create_branch("r@bad name", head="master")
    with pytest.raises(RepoNotFound):
        repo.create_branch("nope@dev")
    assert state(repo) == before


# Commits


def test_open_commit_staging_and_finish(repo: Client) -> None:
    base = repo.put_file("r@master:/old", b"old").commit
    open_c = repo.start_commit("r@master", description="batch")
    assert open_c.state == "open"
    assert open_c.parent == base.id
    assert repo.inspect_branch("r@master").head == open_c.id

    # Writes to the branch go into the open commit, no new commits appear.
    r1 = repo.put_file("r@master:/new1", b"n1")
    r2 = repo.put_file("r@master:/new2", b"n2")
    assert r1.commit.id == r2.commit.id == open_c.id
    repo.delete_file("r@master:/old")
    assert len(repo.list_commits("r@master")) == 2

    # Reading the branch shows the last finished commit.
    assert repo.get_file("r@master:/old") == b"old"
    with pytest.raises(FileNotFound):
        repo.get_file("r@master:/new1")
    assert [f.path for f in repo.list_files("r@master:/")] == ["/old"]
    # The open commit's id shows what is staged.
    assert repo.get_file(f"r@{open_c.id}:/new1") == b"n1"
    assert [f.path for f in repo.list_files(f"r@{open_c.id}:/")] == ["/new1", "/new2"]
    staged = repo.inspect_commit(f"r@{open_c.id}")
    assert (staged.state, staged.size, staged.files) == ("open", 4, 2)

    # Writing by commit id goes into it too.
    repo.put_file(f"r@{open_c.id}:/new3", b"n3")

    with pytest.raises(Conflict):
        repo.start_commit("r@master")

    done = repo.finish_commit("r@master")
    assert done.id == open_c.id
    assert done.state == "finished"
    assert done.description == "batch"
    assert done.finished_at is not None
    assert files_of(repo, "r@master") == {"/new1": b"n1", "/new2": b"n2", "/new3": b"n3"}
    assert [e.path for e in repo.diff_file("r@master")] == ["/new1", "/new2", "/new3", "/old"]

    with pytest.raises(CommitFinished):
        repo.finish_commit(f"r@{open_c.id}")
    before = state(repo)
    with pytest.raises(CommitFinished):
        repo.put_file(f"r@{open_c.id}:/late", b"late")
    with pytest.raises(CommitFinished):
        repo.delete_file(f"r@{open_c.id}:/new1")
    assert state(repo) == before


def test_open_first_commit_and_reads(repo: Client) -> None:
    c = repo.start_commit("r@master")
    assert c.parent is None
    repo.put_file("r@master:/a", b"a")
    with pytest.raises(CommitNotFound):
        repo.get_file("r@master:/a")
    assert repo.get_file(f"r@{c.id}:/a") == b"a"
    repo.finish_commit(f"r@{c.id}", description="first")
    assert repo.get_file("r@master:/a") == b"a"
    assert repo.inspect_commit("r@master").description == "first"


def test_commit_context_manager(repo: Client) -> None:
    repo.put_file("r@master:/base", b"base")
    with repo.commit("r@master", description="ctx") as h:
        h.put_file("/a", b"a")
        h.put_file("/d/b", b"b")
        h.copy_file("r@master:/base", "/copy")
        h.delete_file("/base")
    assert h.info.finished
    assert files_of(repo, "r@master") == {"/a": b"a", "/d/b": b"b", "/copy": b"base"}

    before = state(repo)
    with pytest.raises(RuntimeError), repo.commit("r@master") as h2:
        h2.put_file("/oops", b"x")
        raise RuntimeError("boom")
    assert state(repo) == before
    with pytest.raises(CommitNotFound):
        repo.inspect_commit(f"r@{h2.id}")


def test_ancestry_and_list_commits(repo: Client) -> None:
    ids = [repo.put_file("r@master:/f", b"x" * (i + 1)).commit.id for i in range(5)]
    assert repo.inspect_commit("r@master").id == ids[4]
    assert repo.inspect_commit("r@master^").id == ids[3]
    assert repo.inspect_commit("r@master^1").id == ids[3]
    assert repo.inspect_commit("r@master^2").id == ids[2]
    assert repo.inspect_commit("r@master~3").id == ids[1]
    assert repo.inspect_commit("r@master^^").id == ids[2]
    assert repo.inspect_commit("r@master~2^1").id == ids[1]
    assert repo.inspect_commit(f"r@{ids[3]}~3").id == ids[0]
    assert repo.get_file("r@master~4:/f") == b"x"
    with pytest.raises(CommitNotFound):
        repo.inspect_commit("r@master~5")
    with pytest.raises(CommitNotFound):
        repo.get_file("r@master^9:/f")

    listed = repo.list_commits("r@master")
    assert [c.id for c in listed] == ids[::-1]
    assert [c.size for c in listed] == [5, 4, 3, 2, 1]
    assert [c.files for c in listed] == [1] * 5
    assert [c.parent for c in listed] == [*ids[::-1][1:], None]
    assert [c.id for c in repo.list_commits("r@master", number=2)] == ids[:2:-1]
    assert [c.id for c in repo.list_commits("r")] == ids[::-1]
    assert [c.id for c in repo.list_commits("r@master~2")] == ids[2::-1]
    assert repo.inspect_commit(f"r@{ids[1]}").children == [ids[2]]
    # Commit ids of another repo are not found here.
    repo.create_repo("other")
    with pytest.raises(CommitNotFound):
        repo.inspect_commit(f"other@{ids[0]}")


def test_ancestry_is_the_same_for_reads_and_inspection_with_an_open_head(repo: Client) -> None:
    """``r@master^1`` names one commit, whether it is read, inspected, listed or branched."""
    f1 = repo.put_file("r@master:/f", b"one").commit
    f2 = repo.put_file("r@master:/f", b"two").commit
    assert repo.get_file("r@master^1:/f") == b"one"
    repo.start_commit("r@master")
    repo.put_file("r@master:/f", b"staged")
    named = repo.inspect_commit("r@master^1").id
    assert named in (f1.id, f2.id)
    assert repo.list_commits("r@master^1")[0].id == named
    assert repo.create_branch("r@pinned", head="master^1").head == named
    expected = repo.get_file(f"r@{named}:/f")
    assert repo.get_file("r@master^1:/f") == expected
    assert repo.get_file("r@pinned:/f") == expected
    assert repo.get_file("r@master:/f") == b"two"


def test_squash_merges_into_parent(repo: Client) -> None:
    c1 = repo.put_file("r@master:/a", b"a").commit
    c2 = repo.put_file("r@master:/b", b"b").commit
    c3 = repo.put_file("r@master:/c", b"c").commit
    merged = repo.squash_commit(f"r@{c2.id}")
    assert merged.id == c1.id
    assert merged.children == [c3.id]
    assert (merged.size, merged.files) == (2, 2)
    assert files_of(repo, f"r@{c1.id}") == {"/a": b"a", "/b": b"b"}
    assert [c.id for c in repo.list_commits("r@master")] == [c3.id, c1.id]
    assert repo.inspect_commit(f"r@{c3.id}").parent == c1.id
    with pytest.raises(CommitNotFound):
        repo.inspect_commit(f"r@{c2.id}")
    assert files_of(repo, "r@master") == {"/a": b"a", "/b": b"b", "/c": b"c"}
    # The head's own parent now: squashing the head moves the branch back onto its parent.
    head = repo.squash_commit("r@master")
    assert head.id == c1.id
    assert repo.inspect_branch("r@master").head == c1.id
    assert files_of(repo, "r@master") == {"/a": b"a", "/b": b"b", "/c": b"c"}
    with pytest.raises(Conflict):
        repo.squash_commit("r@master")  # the root has no parent
    assert repo.fsck().ok


def test_squash_refused_when_parent_is_shared(repo: Client) -> None:
    repo.put_file("r@master:/a", b"a")
    repo.create_branch("r@keep", head="master")
    repo.put_file("r@master:/b", b"b")
    before = state(repo)
    with pytest.raises(InUse):
        repo.squash_commit("r@master")
    open_c = repo.start_commit("r@master")
    with pytest.raises(Conflict):
        repo.squash_commit(f"r@{open_c.id}")
    repo.delete_commit(f"r@{open_c.id}")
    assert state(repo) == before


def test_delete_head_commit_moves_branch_back(repo: Client) -> None:
    c1 = repo.put_file("r@master:/a", b"a").commit
    c2 = repo.put_file("r@master:/b", b"b").commit
    before_c2 = state(repo)
    with pytest.raises(InUse):
        repo.delete_commit(f"r@{c1.id}")  # has a child
    assert state(repo) == before_c2
    repo.delete_commit("r@master")
    assert repo.inspect_branch("r@master").head == c1.id
    assert files_of(repo, "r@master") == {"/a": b"a"}
    with pytest.raises(CommitNotFound):
        repo.inspect_commit(f"r@{c2.id}")
    # An open head commit can be deleted too.
    o = repo.start_commit("r@master")
    repo.put_file("r@master:/x", b"x")
    repo.delete_commit(f"r@{o.id}")
    assert repo.inspect_branch("r@master").head == c1.id
    repo.delete_commit("r@master")
    assert repo.inspect_branch("r@master").head is None
    with pytest.raises(CommitNotFound):
        repo.get_file("r@master:/a")
    # A commit no branch points at (the branch moved away) cannot be deleted.
    d1 = repo.put_file("r@master:/d", b"d").commit
    e1 = repo.put_file("r@master:/e", b"e").commit
    repo.create_branch("r@master", head=d1.id)
    before = state(repo)
    with pytest.raises(InUse):
        repo.delete_commit(f"r@{e1.id}")
    assert state(repo) == before
    assert repo.fsck().ok


def test_wait_commit(repo: Client) -> None:
    done = repo.put_file("r@master:/a", b"a").commit
    assert repo.wait_commit(f"r@{done.id}", timeout=0.1).id == done.id
    o = repo.start_commit("r@master")
    with pytest.raises(Timeout):
        repo.wait_commit(f"r@{o.id}", timeout=0.2)
    with pytest.raises(Timeout):
        repo.wait_commit("r@master", timeout=0.1)

    home = repo.home

    def finisher() -> None:
        with Client(home) as other:
            other.finish_commit(f"r@{o.id}")

    t = threading.Thread(target=finisher)
    t.start()
    info = repo.wait_commit(f"r@{o.id}", timeout=60)
    t.join()
    assert info.finished


# Files


def test_put_get_list_inspect(repo: Client, tmp_path: Path) -> None:
    local = tmp_path / "local.csv"
    local.write_bytes(b"a,b\n1,2\n")
    repo.put_file("r@master:/data/local.csv", local)
    repo.put_file("r@master:/", str(local))  # the root address takes the file's name
    repo.put_file("r@master:/data/stream.bin", io.BytesIO(b"from a stream" * 1000))
    repo.put_file("r@master:/empty", b"")
    repo.put_files("r@master:/many", [("x/1.txt", b"1"), ("x/2.txt", b"22"), ("3.txt", b"333")])

    assert repo.get_file("r@master:/data/local.csv") == b"a,b\n1,2\n"
    assert repo.get_file("r@master:/data/stream.bin") == b"from a stream" * 1000
    assert repo.get_file("r@master:/empty") == b""
    assert repo.get_file("r@master:/many/x/2.txt") == b"22"
    buf = io.BytesIO()
    assert repo.get_file_to("r@master:/data/stream.bin", buf) == 13000
    assert buf.getvalue() == b"from a stream" * 1000

    assert repo.get_file("r@master:/local.csv") == b"a,b\n1,2\n"
    top = repo.list_files("r@master:/")
    assert [(f.path, f.type) for f in top] == [
        ("/data", "dir"),
        ("/empty", "file"),
        ("/local.csv", "file"),
        ("/many", "dir"),
    ]
    data = {f.path: f for f in top}["/data"]
    assert (data.size, data.files) == (8 + 13000, 2)
    assert [f.path for f in repo.list_files("r@master:/many")] == ["/many/3.txt", "/many/x"]
    assert [f.path for f in repo.list_files("r@master:/many/3.txt")] == ["/many/3.txt"]

    fi = repo.inspect_file("r@master:/data/stream.bin")
    assert (fi.type, fi.size, fi.files, fi.chunks) == ("file", 13000, 1, 1)
    assert len(fi.hash) == 64
    assert repo.inspect_file("r@master:/empty").chunks == 0
    root = repo.inspect_file("r@master:/")
    assert (root.type, root.size, root.files) == ("dir", 8 + 13000 + 8 + 6, 7)
    # The same bytes have the same hash wherever they are.
    assert (
        repo.inspect_file("r@master:/data/local.csv").hash
        == repo.inspect_file("r@master:/local.csv").hash
    )
    with pytest.raises(PathConflict):
        repo.get_file("r@master:/data")
    with pytest.raises(FileNotFound):
        repo.get_file("r@master:/data/none")
    with pytest.raises(FileNotFound):
        repo.list_files("r@master:/nowhere")
    with pytest.raises(FileNotFound):
        repo.get_file("r@master:/empty/below")


def test_get_dir_and_tar(repo: Client, tmp_path: Path) -> None:
    import tarfile

    repo.put_files("r@master:/", [("/a/b/c.txt", b"c"), ("/a/d.txt", b"dd"), ("/e", b"eee")])
    out = tmp_path / "out"
    assert repo.get_dir("r@master:/a", out) == 2
    assert (out / "b" / "c.txt").read_bytes() == b"c"
    assert (out / "d.txt").read_bytes() == b"dd"
    buf = io.BytesIO()
    assert repo.get_tar("r@master:/", buf) == 3
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert got == {"a/b/c.txt": b"c", "a/d.txt": b"dd", "e": b"eee"}


def test_get_tar_of_multi_chunk_files(repo: Client) -> None:
    """tarfile reads its source in full blocks; a file of several chunks must stream whole."""
    import tarfile

    import blake3

    big = blake3.blake3(b"tar").digest(length=2 * 1024 * 1024 + 3)  # chunks of odd sizes
    repo.put_files("r@master:/", [("/big.bin", big), ("/small.txt", b"small")])
    assert repo.inspect_file("r@master:/big.bin").chunks > 1
    buf = io.BytesIO()
    assert repo.get_tar("r@master:/", buf) == 2
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert got == {"big.bin": big, "small.txt": b"small"}


def test_every_source_kind_gives_the_same_file(repo: Client, tmp_path: Path) -> None:
    for n in (0, 1, 32 * 1024, 32 * 1024 + 1, 200_000, 3 * 1024 * 1024 + 7):
        data = bytes(range(256)) * (n // 256) + bytes(n % 256)
        local = tmp_path / f"f{n}"
        local.write_bytes(data)
        repo.put_files(
            "r@master:/",
            [(f"/{n}/bytes", data), (f"/{n}/path", local), (f"/{n}/stream", io.BytesIO(data))],
        )
        infos = [repo.inspect_file(f"r@master:/{n}/{k}") for k in ("bytes", "path", "stream")]
        assert len({(i.hash, i.size, i.chunks) for i in infos}) == 1, n
        for k in ("bytes", "path", "stream"):
            assert repo.get_file(f"r@master:/{n}/{k}") == data


def test_glob(repo: Client) -> None:
    repo.put_files(
        "r@master:/",
        [
            ("/a.csv", b"1"),
            ("/b.txt", b"2"),
            ("/dir/c.csv", b"3"),
            ("/dir/sub/d.csv", b"4"),
            ("/dir/sub/e.json", b"5"),
        ],
    )
    assert [f.path for f in repo.glob_files("r@master:/*.csv")] == ["/a.csv"]
    assert [f.path for f in repo.glob_files("r@master:/**/*.csv")] == [
        "/a.csv",
        "/dir/c.csv",
        "/dir/sub/d.csv",
    ]
    assert [f.path for f in repo.glob_files("r@master:/dir/*")] == ["/dir/c.csv", "/dir/sub"]
    assert [f.path for f in repo.glob_files("r@master:/?.txt")] == ["/b.txt"]
    assert [f.path for f in repo.glob_files("r@master:/dir/sub/[de].*")] == [
        "/dir/sub/d.csv",
        "/dir/sub/e.json",
    ]
    assert repo.glob_files("r@master:/nothing*") == []
    with pytest.raises(InvalidArgument):
        repo.glob_files("r@master")


def test_diff(repo: Client) -> None:
    c1 = repo.put_files("r@master:/", [("/keep", b"k"), ("/chg", b"old"), ("/d/x", b"x")]).commit
    with repo.commit("r@master") as h:
        h.put_file("/chg", b"new!")
        h.put_file("/add", b"add")
        h.delete_file("/d")
    got = [(e.path, e.change, e.old_size, e.new_size) for e in repo.diff_file("r@master")]
    assert got == [
        ("/add", "added", None, 3),
        ("/chg", "changed", 3, 4),
        ("/d/x", "removed", 1, None),
    ]
    # Against an explicit old commit, and the other way round.
    back = [(e.path, e.change) for e in repo.diff_file(f"r@{c1.id}", "r@master")]
    assert back == [("/add", "removed"), ("/chg", "changed"), ("/d/x", "added")]
    # Restricted to a path.
    assert [e.path for e in repo.diff_file("r@master:/chg")] == ["/chg"]
    assert [e.change for e in repo.diff_file("r@master:/d")] == ["removed"]
    assert repo.diff_file("r@master:/keep") == []
    with pytest.raises(FileNotFound):
        repo.diff_file("r@master:/never")
    # The first commit diffs against the empty tree.
    assert [e.change for e in repo.diff_file(f"r@{c1.id}")] == ["added"] * 3
    e = next(e for e in repo.diff_file("r@master") if e.path == "/chg")
    assert e.old_hash == repo.inspect_file(f"r@{c1.id}:/chg").hash
    assert e.new_hash == repo.inspect_file("r@master:/chg").hash


def test_diff_ignores_a_rewrite_with_identical_bytes(repo: Client) -> None:
    """Putting back byte-identical content is not a change, however the file was built."""
    repo.put_file("r@master:/f", b"hello ")
    repo.put_file("r@master:/f", b"world", append=True)
    assert repo.get_file("r@master:/f") == b"hello world"
    appended = repo.inspect_file("r@master:/f")
    repo.put_file("r@master:/f", b"hello world")
    assert repo.get_file("r@master:/f") == b"hello world"
    assert repo.diff_file("r@master") == []
    assert repo.inspect_file("r@master:/f").hash == appended.hash


def test_copy_file_and_directory(repo: Client) -> None:
    repo.put_files(
        "r@master:/", [("/src/a", b"a"), ("/src/sub/b", b"bb"), ("/dst/keep", b"k"), ("/f", b"f")]
    )
    stats = repo.stats()
    repo.copy_file("r@master:/f", "r@master:/g")
    assert repo.get_file("r@master:/g") == b"f"
    assert repo.inspect_file("r@master:/g").hash == repo.inspect_file("r@master:/f").hash
    # A copy stores no data.
    after = repo.stats()
    assert (after["chunks"], after["packs"], after["pack_bytes"]) == (
        stats["chunks"],
        stats["packs"],
        stats["pack_bytes"],
    )

    repo.copy_file("r@master:/src", "r@master:/copy")
    repo.copy_file("r@master:/src", "r@master:/dst")  # merges into an existing directory
    assert files_of(repo, "r@master") == {
        "/src/a": b"a",
        "/src/sub/b": b"bb",
        "/copy/a": b"a",
        "/copy/sub/b": b"bb",
        "/dst/keep": b"k",
        "/dst/a": b"a",
        "/dst/sub/b": b"bb",
        "/f": b"f",
        "/g": b"f",
    }
    # Copy from an older commit, and into a directory below the source itself.
    old = repo.inspect_commit("r@master~2").id
    repo.copy_file(f"r@{old}:/src", "r@master:/src/again")
    assert repo.get_file("r@master:/src/again/sub/b") == b"bb"

    before = state(repo)
    with pytest.raises(FileNotFound):
        repo.copy_file("r@master:/nope", "r@master:/x")
    with pytest.raises(PathConflict):
        repo.copy_file("r@master:/src", "r@master:/f")  # a directory onto a file
    with pytest.raises(PathConflict):
        repo.copy_file("r@master:/f", "r@master:/src")  # a file onto a directory
    with pytest.raises(PathConflict):
        repo.copy_file("r@master:/f", "r@master:/g/under")  # below a file
    with pytest.raises(InvalidArgument):
        repo.copy_file("r@master", "r@master:/x")
    assert state(repo) == before
    assert repo.fsck().ok


def test_modify_files_deletes_and_copies_in_one_commit_or_not_at_all(repo: Client) -> None:
    repo.put_files("r@master:/", [("/a", b"a"), ("/d/b", b"b"), ("/d/c", b"c")])
    repo.create_repo("other")
    repo.put_file("other@master:/x", b"x")
    head = repo.inspect_commit("r@master").id
    done = repo.modify_files(
        "r@master",
        [("delete", "/d"), ("delete", "/not-there"), ("copy", "r@master:/d/b", "/d2/b"),
         ("copy", "other@master:/x", "/from-other"), ("delete", "/a"),
         ("copy", f"r@{head}:/a", "/a2")],
        description="reshuffle",
    )  # fmt: skip
    assert done.parent == head and done.description == "reshuffle" and done.finished
    assert files_of(repo, "r@master") == {"/d2/b": b"b", "/from-other": b"x", "/a2": b"a"}
    assert [c.id for c in repo.list_commits("r")][:2] == [done.id, head]  # one commit
    # All or nothing: a source that is not there fails the whole change.
    with pytest.raises(FileNotFound):
        repo.modify_files("r@master", [("delete", "/a2"), ("copy", "r@master:/nope", "/n")])
    with pytest.raises(InvalidArgument, match="a change is"):
        repo.modify_files("r@master", [("move", "/a2", "/a3")])
    with pytest.raises(InvalidArgument, match="no changes"):
        repo.modify_files("r@master", [])
    assert repo.inspect_commit("r@master").id == done.id
    assert files_of(repo, "r@master") == {"/d2/b": b"b", "/from-other": b"x", "/a2": b"a"}


def test_copy_across_repos(repo: Client) -> None:
    repo.put_files("r@master:/", [("/d/a", b"a" * 100_000), ("/d/b", b"b")])
    repo.create_repo("other")
    repo.copy_file("r@master:/d", "other@master:/imported")
    repo.copy_file("r@master:/d/b", "other@dev:/single")
    assert files_of(repo, "other@master") == {"/imported/a": b"a" * 100_000, "/imported/b": b"b"}
    assert repo.get_file("other@dev:/single") == b"b"
    # The source repo's data stays alive when the source repo goes away.
    repo.delete_repo("r")
    repo.gc(grace=0)
    assert repo.get_file("other@master:/imported/a") == b"a" * 100_000
    assert repo.fsck().ok


def test_delete_file_and_directory(repo: Client) -> None:
    repo.put_files("r@master:/", [("/a/b/c", b"c"), ("/a/b/d", b"d"), ("/a/e", b"e"), ("/f", b"f")])
    repo.delete_file("r@master:/a/b/c")
    assert files_of(repo, "r@master") == {"/a/b/d": b"d", "/a/e": b"e", "/f": b"f"}
    repo.delete_file("r@master:/a/b/d")  # the now-empty directory disappears
    assert [f.path for f in repo.list_files("r@master:/a")] == ["/a/e"]
    repo.delete_file("r@master:/a")
    assert files_of(repo, "r@master") == {"/f": b"f"}
    assert [e.path for e in repo.diff_file("r@master")] == ["/a/e"]

    before = state(repo)
    with pytest.raises(FileNotFound):
        repo.delete_file("r@master:/a")
    with pytest.raises(FileNotFound):
        repo.delete_file("r@master:/f/below")
    with pytest.raises(InvalidArgument):
        repo.delete_file("r@master")
    assert state(repo) == before
    # Deleting / empties the commit.
    repo.delete_file("r@master:/")
    assert repo.list_files("r@master:/") == []
    assert repo.inspect_commit("r@master").files == 0


def test_append(repo: Client) -> None:
    repo.put_file("r@master:/log", b"one\n")
    repo.put_file("r@master:/log", b"two\n", append=True)
    repo.put_file("r@master:/fresh", b"start", append=True)  # append to nothing creates
    big = bytes(range(256)) * 4000
    repo.put_file("r@master:/log", big, append=True)
    assert repo.get_file("r@master:/log") == b"one\ntwo\n" + big
    assert repo.get_file("r@master:/fresh") == b"start"
    assert repo.get_file("r@master~1:/log") == b"one\ntwo\n"
    # Appends inside an open commit stack up.
    with repo.commit("r@master") as h:
        h.put_file("/fresh", b"+1", append=True)
        h.put_file("/fresh", b"+2", append=True)
    assert repo.get_file("r@master:/fresh") == b"start+1+2"
    repo.put_file("r@master:/d/x", b"x")
    before = state(repo)
    with pytest.raises(PathConflict):
        repo.put_file("r@master:/d", b"x", append=True)
    with pytest.raises(InvalidArgument):
        repo.put_file("r@master:/", b"x", append=True)
    assert state(repo) == before


def test_append_to_one_file_twice_in_one_batch(repo: Client) -> None:
    """Several appends to one path in one put (e.g. ``put file -a -f x -f y``) all land."""
    repo.put_file("r@master:/log", b"start;")
    repo.put_files("r@master:/", [("/log", b"a;"), ("/log", b"b;")], append=True)
    assert repo.get_file("r@master:/log") == b"start;a;b;"
    repo.put_files("r@master:/", [("/new", b"a;"), ("/new", b"b;")], append=True)
    assert repo.get_file("r@master:/new") == b"a;b;"
    with repo.commit("r@master") as h:
        h.put_file("/log", b"c;", append=True)
        repo.put_files(f"r@{h.id}:/", [("/log", b"d;"), ("/log", b"e;")], append=True)
    assert repo.get_file("r@master:/log") == b"start;a;b;c;d;e;"
    # However it was built, the file is chunked (and hashed) as a fresh put of its bytes.
    fresh = repo.put_file("r@master:/copy", b"start;a;b;c;d;e;").commit
    assert repo.inspect_file(f"r@{fresh.id}:/copy").hash == repo.inspect_file("r@master:/log").hash


def test_put_path_conflicts_change_nothing(repo: Client) -> None:
    repo.put_files("r@master:/", [("/file", b"f"), ("/dir/x", b"x")])
    before = state(repo)
    with pytest.raises(PathConflict):
        repo.put_file("r@master:/file/under", b"u")
    with pytest.raises(PathConflict):
        repo.put_file("r@master:/dir", b"d")
    with pytest.raises(PathConflict):
        # One bad item fails the whole batch.
        repo.put_files("r@master:/", [("/ok", b"ok"), ("/file/under", b"u")])
    with pytest.raises(InvalidArgument):
        repo.put_file("r@master:/", b"x")
    assert state(repo) == before
    assert files_of(repo, "r@master") == {"/file": b"f", "/dir/x": b"x"}


@pytest.mark.parametrize(
    "path",
    ["/a/../b", "/../etc/passwd", "/a/./b", "/a\0b", "//a", "/a//b", "/a/b//", "/a\nb"],
)
def test_bad_paths_are_refused(repo: Client, path: str) -> None:
    repo.put_file("r@master:/ok", b"ok")
    before = state(repo)
    with pytest.raises(InvalidPath):
        repo.put_file(f"r@master:{path}", b"x")
    if not path.startswith("//") and not path.endswith("//"):
        # (put_files joins item paths onto the base, which trims their outer slashes)
        with pytest.raises(InvalidPath):
            repo.put_files("r@master:/", [(path, b"x")])
    with pytest.raises(InvalidPath):
        repo.get_file(f"r@master:{path}")
    with pytest.raises(InvalidPath):
        repo.delete_file(f"r@master:{path}")
    with pytest.raises(InvalidPath):
        repo.copy_file("r@master:/ok", f"r@master:{path}")
    assert state(repo) == before


def test_put_dir(repo: Client, tmp_path: Path) -> None:
    src = tmp_path / "photos"
    (src / "2024" / "jan").mkdir(parents=True)
    (src / "a.jpg").write_bytes(b"a")
    (src / "2024" / "b.jpg").write_bytes(b"bb")
    (src / "2024" / "jan" / "c.jpg").write_bytes(b"ccc")
    repo.put_dir("r@master", src)  # default: /<dir name>
    repo.put_dir("r@master:/elsewhere", src)
    got = files_of(repo, "r@master")
    assert got == {
        "/photos/a.jpg": b"a",
        "/photos/2024/b.jpg": b"bb",
        "/photos/2024/jan/c.jpg": b"ccc",
        "/elsewhere/a.jpg": b"a",
        "/elsewhere/2024/b.jpg": b"bb",
        "/elsewhere/2024/jan/c.jpg": b"ccc",
    }
    assert len(repo.list_commits("r@master")) == 2


# Errors


def test_not_found_errors(repo: Client) -> None:
    repo.put_file("r@master:/a", b"a")
    with pytest.raises(RepoNotFound):
        repo.get_file("nope@master:/a")
    with pytest.raises(RepoNotFound):
        repo.put_file("nope@master:/a", b"a")
    with pytest.raises(RepoNotFound):
        repo.list_commits("nope")
    with pytest.raises(BranchNotFound):
        repo.get_file("r@nobranch:/a")
    with pytest.raises(BranchNotFound):
        repo.inspect_branch("r@nobranch")
    with pytest.raises(BranchNotFound):
        repo.list_commits("r@nobr")
    with pytest.raises(CommitNotFound):
        repo.get_file(f"r@{MISSING_ID}:/a")
    with pytest.raises(CommitNotFound):
        repo.inspect_commit("r@abcdef12")
    with pytest.raises(CommitNotFound):
        repo.finish_commit(f"r@{MISSING_ID}")
    with pytest.raises(FileNotFound):
        repo.get_file("r@master:/b")
    with pytest.raises(FileNotFound):
        repo.inspect_file("r@master:/b")
    with pytest.raises(InvalidName):
        repo.get_file("bad name@master:/a")
    with pytest.raises(InvalidName):
        repo.start_commit("r@" + "c" * 64)
    with pytest.raises(InvalidArgument):
        repo.get_file("r@:/a")
    with pytest.raises(InvalidArgument):
        repo.get_file("r@master^x:/a")
    with pytest.raises(InvalidArgument):
        repo.put_file("r@master~1:/x", b"x")  # ancestors are read-only


def test_errors_carry_codes(repo: Client) -> None:
    with pytest.raises(RepoNotFound) as exc:
        repo.get_file("nope@master:/a")
    assert exc.value.code == "repo_not_found"
    assert exc.value.to_dict()["code"] == "repo_not_found"
    assert exc.value.exit_code == 3
    with pytest.raises(InvalidPath) as exc2:
        repo.get_file("r@master:/a/../b")
    assert exc2.value.exit_code == 2


# Scale: a commit touching one file writes O(changed) nodes.


def test_one_change_in_a_big_tree_writes_few_nodes(repo: Client) -> None:
    n = 20_000
    items = [(f"/flat/f{i:05d}", b"%d" % i) for i in range(n // 2)]
    items += [(f"/deep/d{i % 50:02d}/f{i:05d}", b"%d" % i) for i in range(n // 2)]
    repo.put_files("r@master:/", items)
    assert repo.inspect_commit("r@master").files == n

    for path in ("/flat/f04321", "/deep/d07/f00007"):
        before = repo.stats()["nodes"]
        repo.put_file(f"r@master:{path}", b"changed")
        grown = repo.stats()["nodes"] - before
        assert 0 < grown <= 10, grown
        diff = repo.diff_file("r@master")
        assert [(d.path, d.change) for d in diff] == [(path, "changed")]
        assert repo.get_file(f"r@master:{path}") == b"changed"

    before = repo.stats()["nodes"]
    repo.put_file("r@master:/flat/f99999", b"new")
    assert repo.stats()["nodes"] - before <= 10
    assert [(d.path, d.change) for d in repo.diff_file("r@master")] == [("/flat/f99999", "added")]
    before = repo.stats()["nodes"]
    repo.delete_file("r@master:/flat/f00000")
    assert repo.stats()["nodes"] - before <= 10
    assert [(d.path, d.change) for d in repo.diff_file("r@master")] == [("/flat/f00000", "removed")]
    assert len(repo.list_files("r@master:/flat")) == n // 2
    assert repo.inspect_commit("r@master").files == n


def test_client_on_a_relative_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Client("relhome") as c:
        c.create_repo("r")
        c.put_file("r@master:/x", b"x")
        assert c.get_file("r@master:/x") == b"x"
    monkeypatch.chdir(tmp_path / "relhome")
    with Client(".") as c:
        assert c.get_file("r@master:/x") == b"x"


def test_edit_in_a_file_of_thousands_of_chunks_stores_o_changed(tmp_path: Path) -> None:
    """A long chunk list is paged: an edit stores a chunk or two, a page and the page list."""
    import blake3

    from tusk.config import StoreConfig

    config = StoreConfig(chunk_min=256, chunk_avg=1024, chunk_max=4096)
    with Client(tmp_path / "home", config=config) as c:
        c.create_repo("r")
        data = blake3.blake3(b"pages").digest(length=4 * 1024 * 1024)
        c.put_file("r@master:/big", data)
        assert c.inspect_file("r@master:/big").chunks > 2000
        before = c.stats()
        edited = data[:2_000_000] + b"edit" + data[2_000_004:]
        c.put_file("r@master:/big", edited)
        after = c.stats()
        # Chunk page, page list, root directory: O(changed), not O(chunks).
        assert after["nodes"] - before["nodes"] <= 4
        assert after["chunks"] - before["chunks"] <= 3
        assert c.get_file("r@master:/big") == edited
        assert c.get_file("r@master^1:/big") == data
        c.put_file("r@master:/big", b"tail", append=True)
        assert c.get_file("r@master:/big") == edited + b"tail"
        fresh = c.put_file("r@master:/copy", edited + b"tail").commit
        assert c.inspect_file(f"r@{fresh.id}:/copy").hash == c.inspect_file("r@master:/big").hash
        assert c.fsck().ok


def test_put_files_refuses_bad_item_paths(repo: Client) -> None:
    """Item paths get the same checks as addresses: '//', '..' and NUL are refused."""
    for bad in ("//a", "/a//b", "/a/../b", "/a\0b"):
        with pytest.raises(InvalidPath):
            repo.put_files("r@master:/", [(bad, b"x")])
    repo.put_files("r@master:/dir", [("a", b"1"), ("/b/c", b"2")])
    assert sorted(f.path for f in repo.glob_files("r@master:/dir/**")) == [
        "/dir/a",
        "/dir/b",
        "/dir/b/c",
    ]


def test_projects_hold_repos_of_the_same_name(client: Client) -> None:
    """Everything before projects is in ``default``; another project's repos are
    ``project/repo`` and may share names with default's (issue 20)."""
    pfs = client  # both transports have the project methods
    assert [p.name for p in pfs.list_projects()] == ["default"]
    pfs.create_project("research", "the lab")
    client.create_repo("images")
    client.create_repo("research/images")
    client.put_file("images@master:/a", b"default")
    client.put_file("research/images@master:/a", b"research")
    assert client.get_file("research/images@master:/a") == b"research"
    assert client.get_file("default/images@master:/a") == b"default"  # default/ is optional
    assert pfs.inspect_project("research").repos == ["research/images"]
    assert pfs.inspect_project("default").repos == ["images"]
    with pytest.raises(InUse, match="still has 1 repo"):
        pfs.delete_project("research")
    with pytest.raises(InvalidArgument, match="cannot be deleted"):
        pfs.delete_project("default")
    with pytest.raises(InvalidName):
        pfs.create_project("bad name")
    with pytest.raises(AlreadyExists):
        pfs.create_project("research")
    client.delete_repo("research/images")
    pfs.delete_project("research")
    assert [p.name for p in pfs.list_projects()] == ["default"]
