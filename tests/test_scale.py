"""Big repos stay cheap: fsck streams, a one-file commit and a literal glob read O(depth)
nodes, and a job after a one-file commit lists only the directory that changed.

Behaviour, not timing: memory peaks (tracemalloc), node counts and which code paths run.
``bench/bench_scale.py`` times the same things on 100,000 and 1,000,000 files.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from wcmatch import glob as wglob

import tusk
from tusk.pfs import maintenance
from tusk.pfs.service import PfsService
from tusk.pfs.tree import DirEntry, NodeCodec, TreeParams
from tusk.pps.datums import compute_datums, glob_segments
from tusk.pps.globs import glob_to_regex
from tusk.pps.spec import load_spec

ENGINES = ("sqlite", "postgresql")

SMALL_PAGES = TreeParams(page_avg=8, page_max=16)  # many nodes from few files


def _nested(dirs: int, per_dir: int) -> Iterator[tuple[str, bytes]]:
    for d in range(dirs):
        for f in range(per_dir):
            # Names differ between directories (else equal directories share one node); the
            # contents repeat, so the chunk count stays the same whatever the size.
            yield f"/d{d:03d}/f{d * per_dir + f:06d}.txt", f"row {f % 7}\n".encode()


def _counting_loads(c: tusk.Client, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count tree nodes loaded from the store from now on (the node cache emptied first)."""
    pfs: PfsService = c._pfs
    pfs.node_cache.__init__()  # type: ignore[misc]
    loaded = [0]
    real = pfs.meta.get_nodes

    def counting(hashes: Sequence[bytes]) -> dict[bytes, bytes]:
        loaded[0] += len(hashes)
        return real(hashes)

    monkeypatch.setattr(pfs.meta, "get_nodes", counting)
    return loaded


# fsck


def _fsck_peak(home: Path, dirs: int) -> tuple[int, int]:
    """(tracemalloc peak of fsck in bytes, live tree nodes) on a fresh repo of ``dirs`` x 20."""
    with tusk.Client(home, tree_params=SMALL_PAGES) as c:
        c.create_repo("r")
        c.put_files("r@master", _nested(dirs, 20))
        c.put_file("r@master:/d000/f000000.txt", b"changed\n")
        c.fsck()  # warm: imports, zstd contexts, connections
        gc.collect()
        tracemalloc.start()
        try:
            report = c.fsck()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert report.ok, report.problems
        return peak, report.counts["nodes"]


def test_fsck_memory_does_not_grow_with_the_node_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages and batches small enough that both repos span many of them.
    monkeypatch.setattr(maintenance, "_PAGE", 50)
    monkeypatch.setattr(maintenance, "_NODE_PAGE", 16)
    monkeypatch.setattr(maintenance, "_WALK_BATCH", 16)
    small_peak, small_nodes = _fsck_peak(tmp_path / "small", 40)
    big_peak, big_nodes = _fsck_peak(tmp_path / "big", 320)
    assert big_nodes > 6 * small_nodes  # thousands of nodes against hundreds
    # Holding every node (as a dict of stored bytes or a set of digests) grows ~linearly;
    # streaming keeps the peak at a page of rows and a batch of decoded nodes.
    assert big_peak < small_peak * 1.5 + 256 * 1024, (small_peak, big_peak)


def test_fsck_marks_through_the_disk_sets_not_a_set_of_all_nodes(client: tusk.Client) -> None:
    client.create_repo("r")
    client.put_files("r@master", _nested(5, 5))
    sets = maintenance._DiskSets()
    try:
        problems: list[str] = []
        root = client._pfs._read_root("r", "master").tree
        maintenance._mark(client._pfs.meta.get_nodes, NodeCodec(), [root, root], sets, problems)
        assert problems == []
        nodes = sets.count("nodes")
        assert nodes == 6  # the root and five directories
        assert sets.count("chunks") == 5  # "row 0" .. "row 4"
        assert list(sets.sorted("chunks")) == sorted(sets.sorted("chunks"))
        # A root seen again is not walked again.
        assert sets.add_new("nodes", [root]) == []
    finally:
        sets.close()


def test_fsck_still_finds_a_missing_chunk_and_counts_dead_ones(client: tusk.Client) -> None:
    client.create_repo("r")
    client.put_files("r@master", [("/a.txt", b"alpha\n"), ("/b.txt", b"beta\n")])
    client.create_repo("tmp")
    client.put_file("tmp@master:/z.txt", b"only here\n")
    client.delete_repo("tmp")
    report = client.fsck()
    assert report.ok, report.problems
    assert report.counts["nodes"] >= 1
    assert any("1 chunk(s) are not referenced" in n for n in report.notes), report.notes


def test_merge_of_sorted_streams() -> None:
    a = iter([b"\x01", b"\x03", b"\x05"])
    b = iter([b"\x02", b"\x03", b"\x06", b"\x07"])
    out = list(maintenance._merge(a, b))
    assert out == [
        (b"\x01", None),
        (None, b"\x02"),
        (b"\x05", None),
        (None, b"\x06"),
        (None, b"\x07"),
    ]


# Commits, globs and listings on a big tree read the nodes on the path


@pytest.fixture
def big(client: tusk.Client) -> tusk.Client:
    client._pfs.tree_params = SMALL_PAGES
    client.create_repo("big")
    client.put_files("big@master", _nested(60, 30))  # 1,800 files, ~400 nodes
    return client


def test_one_file_commit_in_a_big_repo_touches_o_depth_nodes(
    big: tusk.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = big.stats()["nodes"]
    assert before > 300
    loaded = _counting_loads(big, monkeypatch)
    big.put_file("big@master:/d031/f000947.txt", b"changed\n")
    added = big.stats()["nodes"] - before
    # Two levels of directories, each a page list over small pages: a page and its list per
    # level, never a rewrite of the tree.
    assert 1 <= added <= 6, added
    assert loaded[0] <= 12, loaded[0]
    assert [d.path for d in big.diff_file("big@master")] == ["/d031/f000947.txt"]


def test_glob_of_one_file_walks_straight_down(
    big: tusk.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = _counting_loads(big, monkeypatch)
    [info] = big.glob_files("big@master:/d031/f000947.txt")
    assert info.path == "/d031/f000947.txt" and info.type == "file"
    assert loaded[0] <= 6, loaded[0]
    loaded[0] = 0
    assert [f.path for f in big.glob_files("big@master:/d03?/f*7.txt")][:2] == [
        "/d030/f000907.txt",
        "/d030/f000917.txt",
    ]
    # The top directory and the ten matching ones, not the 60 directories' pages.
    assert loaded[0] < 150 < big.stats()["nodes"] / 2, loaded[0]


GLOB_FILES = [
    "/a/b/c.txt",
    "/a/b/d.csv",
    "/a/x.txt",
    "/b/a/c.txt",
    "/.h/q",
    "/a.txt",
    "/a/b/e/f/g.txt",
    "/c[1]/z",
    "/x y/z",
]
GLOBS = [
    "/", "", "*", "/*", "/*/*", "/a", "/a/", "/a/*", "/a/b/c.txt", "a/b/c.txt", "/a/**",
    "/**", "/**/c.txt", "/a/**/g.txt", "/a/**/b", "/**.txt", "/*/b/*", "/a/b/*/*/*", "/?/b",
    "/[ab]/*", "/c\\[1\\]/z", "/c[[]1]/*", "/x y/*", "/.h/*", "/a/./b", "/a/../a/x.txt",
    "/a/b/c.txt/", "/a//b/c.txt", "/nope/x", "/a.txt/x", "**", "/a/b/**", "/a/**/",
]  # fmt: skip


def _scan_glob(c: tusk.Client, pattern: str) -> list[str]:
    """Every path of the tree matched against the pattern: what a pruned walk must equal."""
    flags = wglob.GLOBSTAR | wglob.DOTGLOB
    pat = "/" + pattern.lstrip("/")
    out = []
    reader = c._pfs.reader()

    def walk(node: bytes, prefix: str) -> None:
        for name, entry in reader.iter_dir(node):
            path = f"{prefix}/{name}"
            if wglob.globmatch(path, pat, flags=flags):
                out.append(path)
            if isinstance(entry, DirEntry):
                walk(entry.node, path)

    walk(c._pfs._read_root("g", "master").tree, "")
    return out


def test_pruned_glob_matches_what_a_full_scan_matches(client: tusk.Client) -> None:
    client.create_repo("g")
    client.put_files("g@master", ((p, b"x") for p in GLOB_FILES))
    for pattern in GLOBS:
        got = [f.path for f in client._pfs.glob_files("g", "master", pattern)]
        assert got == _scan_glob(client, pattern), pattern


def test_glob_segments_agree_with_the_glob_regex() -> None:
    paths = ["/a", "/a/b", "/a/b/c", "/ab/c.csv", "/x/y.csv", "/x/.y.csv", "/[x]/q"]
    for glob in ["/*", "/*/*", "/a/*", "/*/*.csv", "/?b/*", "/[ax]/*", "/a/b/c"]:
        tests = glob_segments(glob)
        assert tests is not None, glob
        regex = glob_to_regex(glob)
        for path in paths:
            parts = path[1:].split("/")
            by_segments = len(parts) == len(tests) and all(
                t(p) for t, p in zip(tests, parts, strict=True)
            )
            assert by_segments == (regex.match(path) is not None), (glob, path)
    for glob in ["/", "/**", "/a/**/b", "/{a,b}/*", "/(*)/x", "/a\\*b", "/[a/b]"]:
        assert glob_segments(glob) is None, glob


# Pipelines: the job after a one-file commit lists the directory that changed, not the repo


def _spec(glob: str) -> dict[str, Any]:
    return {
        "pipeline": {"name": "scan"},
        "input": {"pfs": {"repo": "big", "glob": glob, "empty_files": True}},
        "transform": {"cmd": ["true"]},
    }


@pytest.mark.parametrize("glob", ["/*", "/d00?/*"])
def test_incremental_job_reuses_unchanged_datums_without_listing_the_repo(
    client: tusk.Client, monkeypatch: pytest.MonkeyPatch, glob: str
) -> None:
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    client.create_repo("big")
    client.put_files("big@master", _nested(12, 6))
    client.create_pipeline(_spec(glob))
    client.run_scheduler(once=True)
    [first] = client.list_jobs("scan")
    assert first.state == "success", first.reason
    first_head = client.inspect_commit("big@master").id

    # From now on, listing every file of the input (the full datum computation) fails.
    def no_full_listing(*_args: object, **_kwargs: object) -> Iterator[Any]:
        raise AssertionError("the job listed every file of its input")

    monkeypatch.setattr(PfsService, "walk_files", no_full_listing)
    client.put_files(
        "big@master", [("/d003/f000020.txt", b"changed\n"), ("/d013/new.txt", b"new dir\n")]
    )
    client.run_scheduler(once=True)
    monkeypatch.undo()
    jobs = client.list_jobs("scan")
    latest = max(jobs, key=lambda j: j.created_at)
    assert latest.state == "success", latest.reason
    changed_dirs = 2 if glob == "/*" else 1  # /d00?/* does not see /d013
    total = first.datums_total + (1 if glob == "/*" else 0)
    assert (latest.datums_total, latest.processed, latest.skipped) == (
        total,
        changed_dirs,
        total - changed_dirs,
    )

    # The recorded datums are exactly those of the full computation, in the same order.
    spec = load_spec(_spec(glob))
    head = client.inspect_commit("big@master").id
    full = compute_datums(spec.input, client._pps.files_for({("big", "master"): head}))
    recorded = client.list_datums(f"scan@{latest.id}")
    assert [d.id for d in recorded] == [d.id for d in full]
    # Each file as the full computation lists it, plus the commit it was read from: this
    # job's, or for a carried-forward datum that of the job that listed it (same content).
    assert {f["commit"] for d in recorded for f in d.files} == {head, first_head}
    assert [_bare(d.files) for d in recorded] == [[f.to_json() for f in d.files] for d in full]
    # A carried-forward datum's record names the job that listed its files (no copy).
    with client._pfs.meta.read() as tx:
        rows = tx.list_datums("scan", latest.id, ["skipped"])
    assert rows and all(len(r.files) < 100 and "same_as" in r.files for r in rows)
    salt = client._pps.spec_of("scan", latest.version)[1]
    with client._pfs.meta.read() as tx:
        hashes = {r[0]: r[1] for r in tx.datum_results("scan", latest.id)}
    assert [hashes[d.id] for d in full] == [d.hash(salt) for d in full]

    # A third job: datums unchanged twice still name the first job, which listed them.
    client.put_file("big@master:/d000/f000001.txt", b"changed too\n")
    client.run_scheduler(once=True)
    third = max(client.list_jobs("scan"), key=lambda j: j.created_at)
    assert (third.state, third.processed) == ("success", 1)
    with client._pfs.meta.read() as tx:
        rows = tx.list_datums("scan", third.id, ["skipped"])
    refs = {r.files for r in rows}
    assert any(first.id in ref for ref in refs), refs
    head = client.inspect_commit("big@master").id
    full = compute_datums(spec.input, client._pps.files_for({("big", "master"): head}))
    recorded = client.list_datums(f"scan@{third.id}")
    assert [_bare(d.files) for d in recorded] == [[f.to_json() for f in d.files] for d in full]


def _bare(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A datum's files as recorded, without the commit each was read from."""
    return [{k: v for k, v in f.items() if k != "commit"} for f in files]
