"""Stateful property test: random PFS operations against a plain dict model per branch.

Each branch has a model ``path -> bytes`` of its last finished commit, plus the staged model of
its open commit, if any. After every new commit the commit must read back exactly as the model
says (contents, ``list_files``, walk, glob) and ``diff_file`` against its parent must match the
model's difference. Every commit's model is kept; at the end all of them must still read back,
before and after ``gc(grace=0)``, and ``fsck`` must be clean. Operations that must fail raise
the right error class and change nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tusk import Client
from tusk.config import StoreConfig
from tusk.errors import (
    CommitFinished,
    Conflict,
    FileNotFound,
    PathConflict,
    TuskError,
)
from tusk.pfs.tree import TreeParams

Model = dict[str, bytes]

SMALL_CHUNKS = StoreConfig(chunk_min=1024, chunk_avg=4096, chunk_max=16384)
REPO = "r"
BRANCH_NAMES = ["master", "dev", "feat", "tmp"]


def blob(seed: int, n: int) -> bytes:
    return blake3.blake3(seed.to_bytes(2, "little")).digest(length=n)


names = st.sampled_from(["a", "b", "c", "d"])
paths = st.lists(names, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
contents = st.one_of(
    st.just(b""),
    st.binary(max_size=24),
    # > 40 KiB: several chunks; > ~130 KiB: more than 32 chunks, so a chunk-list node.
    st.builds(blob, st.integers(0, 3), st.integers(40 * 1024 + 1, 160 * 1024)),
    # compressible, and identical prefixes between sizes
    st.builds(lambda n: b"z" * n, st.integers(1, 60_000)),
)
branch_index = st.integers(0, len(BRANCH_NAMES) - 1)
many_names = st.lists(st.integers(0, 59), min_size=1, max_size=40, unique=True)


def is_dir(model: Model, path: str) -> bool:
    prefix = path.rstrip("/") + "/"
    return any(p.startswith(prefix) for p in model)


def exists(model: Model, path: str) -> bool:
    return path in model or is_dir(model, path)


def put_conflict(model: Model, path: str) -> bool:
    """A file cannot go below a file, nor where a directory is."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        if "/" + "/".join(parts[:i]) in model:
            return True
    return is_dir(model, path)


def below(model: Model, path: str) -> Model:
    """Files at or below ``path``, keyed by their path relative to it ('' for the file itself)."""
    if path in model:
        return {"": model[path]}
    prefix = path.rstrip("/") + "/"
    return {p[len(prefix) :]: v for p, v in model.items() if p.startswith(prefix)}


def dirs_of(model: Model) -> set[str]:
    out = set()
    for p in model:
        parts = p.strip("/").split("/")
        for i in range(1, len(parts)):
            out.add("/" + "/".join(parts[:i]))
    return out


def tree_order(p: str) -> list[str]:
    return p.split("/")


class PfsMachine(RuleBasedStateMachine):
    tree_params: TreeParams | None = None

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="tusk-prop-"))
        self.client = Client(self.tmp / "home", config=SMALL_CHUNKS, tree_params=self.tree_params)
        self.client.create_repo(REPO)
        # branch -> model of its last finished commit, and that commit's id (None: no commit)
        self.committed: dict[str, Model] = {}
        self.head: dict[str, str | None] = {}
        # branch -> staged model of its open commit, and the open commit's id
        self.staged: dict[str, Model] = {}
        self.open_id: dict[str, str] = {}
        self.snapshots: dict[str, Model] = {}
        self.parents: dict[str, str | None] = {}
        self.commits_checked = 0

    # Helpers

    def branch(self, i: int) -> str:
        return BRANCH_NAMES[i]

    def target(self, b: str) -> Model:
        """The model writes to ``b`` change: the open commit's, else the branch head's."""
        if b in self.staged:
            return self.staged[b]
        return self.committed.get(b, {})

    def branch_state(self) -> object:
        return sorted((x.name, x.head) for x in self.client.list_branches(REPO))

    def expect_failure(self, exc: type[TuskError], fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        before = (self.branch_state(), len(self.client.list_commits(REPO)))
        with pytest.raises(exc):
            fn(*args, **kwargs)
        assert (self.branch_state(), len(self.client.list_commits(REPO))) == before

    def applied(self, b: str, new_model: Model, commit_id: str) -> None:
        """Record a successful write to branch ``b`` that returned ``commit_id``."""
        if b in self.staged:
            assert commit_id == self.open_id[b]
            self.staged[b] = new_model
            return
        parent = self.head.get(b)
        info = self.client.inspect_commit(f"{REPO}@{commit_id}")
        assert info.finished
        assert info.parent == parent
        self.committed[b] = new_model
        self.head[b] = commit_id
        self.record(commit_id, parent, new_model)

    def record(self, cid: str, parent: str | None, model: Model) -> None:
        assert cid not in self.snapshots
        self.snapshots[cid] = dict(model)
        self.parents[cid] = parent
        self.check_commit(cid, model)
        self.check_diff(cid, parent, model)

    def read_all(self, cid: str) -> Model:
        """Every file of a commit, by walking its tree and reading each file."""
        c = self.client
        return {p: c.get_file(f"{REPO}@{cid}:{p}") for p, _ in c._pfs.walk_files(REPO, cid, "/")}

    def check_commit(self, cid: str, model: Model) -> None:
        self.commits_checked += 1
        c = self.client
        assert self.read_all(cid) == model
        walked = [p for p, _ in c._pfs.walk_files(REPO, cid, "/")]
        assert walked == sorted(model, key=tree_order)
        info = c.inspect_commit(f"{REPO}@{cid}")
        assert (info.size, info.files) == (sum(map(len, model.values())), len(model))

        # list_files, recursively: files with sizes, directories with totals.
        seen_files: dict[str, int] = {}
        seen_dirs: dict[str, tuple[int, int]] = {}
        stack = ["/"]
        while stack:
            d = stack.pop()
            for fi in c.list_files(f"{REPO}@{cid}:{d}"):
                if fi.type == "dir":
                    seen_dirs[fi.path] = (fi.size, fi.files)
                    stack.append(fi.path)
                else:
                    seen_files[fi.path] = fi.size
        assert seen_files == {p: len(v) for p, v in model.items()}
        expected_dirs = {}
        for d in dirs_of(model):
            sub = below(model, d)
            expected_dirs[d] = (sum(map(len, sub.values())), len(sub))
        assert seen_dirs == expected_dirs

        globbed = {fi.path: fi.type for fi in c.glob_files(f"{REPO}@{cid}:/**")}
        assert globbed == {**{p: "file" for p in model}, **{d: "dir" for d in expected_dirs}}

    def check_diff(self, cid: str, parent: str | None, model: Model) -> None:
        old = self.snapshots[parent] if parent is not None else {}
        expected = {}
        for p in model.keys() - old.keys():
            expected[p] = "added"
        for p in old.keys() - model.keys():
            expected[p] = "removed"
        for p in model.keys() & old.keys():
            if model[p] != old[p]:
                expected[p] = "changed"
        diff = self.client.diff_file(f"{REPO}@{cid}")
        got = {d.path: d.change for d in diff}
        assert len(got) == len(diff)
        assert got == expected
        for d in diff:
            assert d.old_size == (len(old[d.path]) if d.path in old else None)
            assert d.new_size == (len(model[d.path]) if d.path in model else None)

    # Rules

    @rule(i=branch_index, path=paths, data=contents)
    def put(self, i: int, path: str, data: bytes) -> None:
        b = self.branch(i)
        model = self.target(b)
        addr = f"{REPO}@{b}:{path}"
        if put_conflict(model, path):
            self.expect_failure(PathConflict, self.client.put_file, addr, data)
            return
        res = self.client.put_file(addr, data)
        assert res.bytes == len(data)
        self.applied(b, {**model, path: data}, res.commit.id)

    @rule(i=branch_index, path=paths, data=contents)
    def append(self, i: int, path: str, data: bytes) -> None:
        b = self.branch(i)
        model = self.target(b)
        addr = f"{REPO}@{b}:{path}"
        if put_conflict(model, path):
            self.expect_failure(PathConflict, self.client.put_file, addr, data, append=True)
            return
        res = self.client.put_file(addr, data, append=True)
        self.applied(b, {**model, path: model.get(path, b"") + data}, res.commit.id)

    @rule(
        i=branch_index,
        where=st.sampled_from(["/m", "/a/m", "/b"]),
        picks=many_names,
        seed=st.integers(0, 1000),
    )
    def put_many(self, i: int, where: str, picks: list[int], seed: int) -> None:
        """Many names in one directory, in one change: exercises directory pages."""
        b = self.branch(i)
        model = self.target(b)
        items = [(f"{where}/f{n:02d}", b"%d:%d" % (seed, n) * (n % 5)) for n in picks]
        new = dict(model)
        conflict = False
        for p, v in items:
            if put_conflict(new, p):
                conflict = True
                break
            new[p] = v
        addr = f"{REPO}@{b}:/"
        if conflict:
            self.expect_failure(PathConflict, self.client.put_files, addr, items)
            return
        res = self.client.put_files(addr, items)
        assert res.files == len(items)
        self.applied(b, new, res.commit.id)

    @rule(i=branch_index, data=st.data())
    def delete(self, i: int, data: st.DataObject) -> None:
        b = self.branch(i)
        model = self.target(b)
        candidates = sorted(set(model) | dirs_of(model))
        if candidates:
            path = data.draw(st.one_of(st.sampled_from(candidates), paths), label="path")
        else:
            path = data.draw(paths, label="path")
        addr = f"{REPO}@{b}:{path}"
        if b not in self.staged and b not in self.head:
            # No commit yet: there is nothing to delete, and the branch stays uncreated.
            with pytest.raises(FileNotFound):
                self.client.delete_file(addr)
            return
        if not exists(model, path):
            self.expect_failure(FileNotFound, self.client.delete_file, addr)
            return
        prefix = path + "/"
        new = {p: v for p, v in model.items() if p != path and not p.startswith(prefix)}
        info = self.client.delete_file(addr)
        self.applied(b, new, info.id)

    @rule(i=branch_index, src_i=branch_index, data=st.data())
    def copy(self, i: int, src_i: int, data: st.DataObject) -> None:
        b = self.branch(i)
        sb = self.branch(src_i)
        if self.head.get(sb) is None:
            return  # the source must have a finished commit
        source = self.committed[sb]  # a branch address reads its last finished commit
        candidates = sorted(set(source) | dirs_of(source))
        if candidates:
            src = data.draw(st.one_of(st.sampled_from(candidates), paths), label="src")
        else:
            src = data.draw(paths, label="src")
        dst = data.draw(paths, label="dst")
        model = self.target(b)
        src_addr = f"{REPO}@{sb}:{src}"
        dst_addr = f"{REPO}@{b}:{dst}"
        if not exists(source, src):
            self.expect_failure(FileNotFound, self.client.copy_file, src_addr, dst_addr)
            return
        new = dict(model)
        for rel, v in sorted(below(source, src).items()):
            p = dst + ("/" + rel if rel else "")
            if put_conflict(new, p):
                self.expect_failure(PathConflict, self.client.copy_file, src_addr, dst_addr)
                return
            new[p] = v
        info = self.client.copy_file(src_addr, dst_addr)
        self.applied(b, new, info.id)

    @rule(i=branch_index)
    def start_commit(self, i: int) -> None:
        b = self.branch(i)
        addr = f"{REPO}@{b}"
        if b in self.staged:
            self.expect_failure(Conflict, self.client.start_commit, addr)
            return
        info = self.client.start_commit(addr)
        assert info.state == "open"
        assert info.parent == self.head.get(b)
        self.staged[b] = dict(self.committed.get(b, {}))
        self.open_id[b] = info.id

    @rule(i=branch_index)
    def finish_commit(self, i: int) -> None:
        b = self.branch(i)
        addr = f"{REPO}@{b}"
        if b not in self.staged:
            if self.head.get(b) is not None:
                self.expect_failure(CommitFinished, self.client.finish_commit, addr)
            return
        cid = self.open_id.pop(b)
        model = self.staged.pop(b)
        info = self.client.finish_commit(addr)
        assert info.id == cid
        assert info.finished
        parent = self.head.get(b)
        assert info.parent == parent
        self.committed[b] = model
        self.head[b] = cid
        self.record(cid, parent, model)

    @rule(src_i=branch_index, new_i=branch_index)
    def create_branch(self, src_i: int, new_i: int) -> None:
        src, new = self.branch(src_i), self.branch(new_i)
        if src == new or self.head.get(src) is None or src in self.staged:
            return
        if new in self.staged or new in self.head:
            return  # moving existing branches is covered in test_pfs
        stats = self.client.stats()
        info = self.client.create_branch(f"{REPO}@{new}", head=src)
        assert info.head == self.head[src]
        assert self.client.stats() == stats  # O(1): nothing is copied
        self.committed[new] = dict(self.committed[src])
        self.head[new] = self.head[src]

    # Invariants

    @invariant()
    def branches_read_their_last_finished_commit(self) -> None:
        for b, cid in self.head.items():
            if cid is None:
                continue
            assert self.client.inspect_commit(f"{REPO}@{b}").id == self.open_id.get(b, cid)
            listed = {f.path for f in self.client.list_files(f"{REPO}@{b}:/")}
            top = {"/" + p.strip("/").split("/")[0] for p in self.committed[b]}
            assert listed == top

    def teardown(self) -> None:
        try:
            self.check_everything()
            report = self.client.gc(grace=0)
            assert not report.dry_run
            self.check_everything()
        finally:
            self.client.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def check_everything(self) -> None:
        for cid, model in self.snapshots.items():
            assert self.read_all(cid) == model, cid
            assert self.client.inspect_commit(f"{REPO}@{cid}").parent == self.parents[cid]
        for b, cid in self.open_id.items():
            assert self.read_all(cid) == self.staged[b]
        report = self.client.fsck()
        assert report.ok, report.problems


class PagedMachine(PfsMachine):
    tree_params = TreeParams(page_avg=4, page_max=8)


SETTINGS = settings(
    max_examples=10,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TestPfsDefaultTree = PfsMachine.TestCase
TestPfsDefaultTree.settings = SETTINGS
TestPfsPagedTree = PagedMachine.TestCase
TestPfsPagedTree.settings = SETTINGS
