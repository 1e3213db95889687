"""Datums from globs, cross, union, join and group, with Pachyderm's semantics."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tusk.errors import InvalidPath, InvalidSpec
from tusk.pps.datums import (
    Datum,
    DatumFile,
    FileInfo,
    compute_datums,
    cron_as_pfs,
    datum_id,
    iter_datums,
)
from tusk.pps.globs import expand_key, glob_to_regex, template_groups
from tusk.pps.spec import CronInput, Input, PfsInput, load_spec


def tree(*paths: str, content: str = "") -> list[FileInfo]:
    """Files with a content hash derived from the path (and ``content``)."""
    return [FileInfo(p, f"h({p}{content})", len(p)) for p in sorted(paths)]


class Repos:
    """A files_for callback over fixed file lists, recording what it was asked for."""

    def __init__(self, **repos: list[FileInfo]) -> None:
        self.repos = repos
        self.asked: list[PfsInput] = []

    def __call__(self, pfs: PfsInput) -> Sequence[FileInfo]:
        self.asked.append(pfs)
        return self.repos.get(pfs.repo, [])


def pfs(repo: str, glob: str, **extra: Any) -> dict[str, Any]:
    return {"pfs": {"repo": repo, "glob": glob, **extra}}


def datums(input: dict[str, Any], repos: Repos) -> list[Datum]:
    return compute_datums(Input.model_validate(input), repos)


def shape(ds: list[Datum]) -> list[list[str]]:
    """Each datum as its files' mount paths."""
    return [[f.mount_path for f in d.files] for d in ds]


# --- glob_to_regex -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        ("/*", ["/a", "/a.txt", "/.hidden"], ["/a/b", "//"]),
        ("/*.txt", ["/a.txt", "/.txt"], ["/a/b.txt", "/a.txtx"]),
        ("/?", ["/a"], ["/ab", "/", "//"]),
        ("/*/*", ["/a/b"], ["/a", "/a/b/c"]),
        ("/**", ["/a", "/a/b", "/a/b/c"], []),
        ("/**.csv", ["/a.csv", "/x/y/z.csv"], ["/a.tsv"]),
        ("/a/**/b", ["/a/b", "/a/x/b", "/a/x/y/b"], ["/a/xb", "/b"]),
        ("/**/b", ["/b", "/a/b", "/a/x/b"], ["/ab"]),
        ("/[abc]", ["/a", "/c"], ["/d", "/ab"]),
        ("/[a-c]x", ["/bx"], ["/dx"]),
        ("/[!a-c]", ["/d", "/-"], ["/a", "//"]),
        ("/[^a]", ["/b"], ["/a"]),
        ("/[/]", [], ["//"]),
        ("/{a,b*}.txt", ["/a.txt", "/bcd.txt"], ["/c.txt", "/ab.txt"]),
        ("/{x,{y,z}}", ["/x", "/y", "/z"], ["/w"]),
        ("/a.b+c|d$", ["/a.b+c|d$"], ["/aXb+c|d$"]),
        ("/\\*", ["/*"], ["/a"]),
        ("/x/", ["/x"], ["/x/y"]),
        ("/", ["/"], ["/a"]),
    ],
)
def test_glob_syntax(glob: str, matches: list[str], misses: list[str]) -> None:
    pattern = glob_to_regex(glob)
    for path in matches:
        assert pattern.match(path), (glob, path)
    for path in misses:
        assert not pattern.match(path), (glob, path)


def test_capture_groups_are_numbered_by_opening_parenthesis() -> None:
    m = glob_to_regex("/(*)/*/(??)*.txt").match("/foo/bar-123/ABC.txt")
    assert m is not None and m.groups() == ("foo", "AB")
    m = glob_to_regex("/*/(bar-(123))/*").match("/foo/bar-123/ABC.txt")
    assert m is not None and m.groups() == ("bar-123", "123")
    m = glob_to_regex("/*/bar-(*)").match("/foo/bar-123")
    assert m is not None and m.groups() == ("123",)
    assert glob_to_regex("/{a,(b)}(c)").groups == 2  # braces do not count as groups


@pytest.mark.parametrize(
    ("glob", "problem"),
    [
        ("/[ab", "'[' at position 1 is never closed"),
        ("/(a", "'(' at position 1 is never closed"),
        ("/a)", "')' at position 2 closes nothing"),
        ("/{a,b", "'{' at position 1 is never closed"),
        ("/a}", "'}' at position 2 closes nothing"),
        ("/({a)}", "')' at position 4 closes nothing"),
        ("/a\\", "ends with a lone"),
    ],
)
def test_bad_globs(glob: str, problem: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        glob_to_regex(glob)
    assert problem in info.value.message
    assert info.value.message.startswith("invalid glob ")


def test_templates() -> None:
    m = glob_to_regex("/(*)-(*).csv").match("/2024-05.csv")
    assert m is not None
    assert expand_key("$1", m) == "2024"
    assert expand_key("${2}/$1", m) == "05/2024"
    assert expand_key("$0", m) == "/2024-05.csv"
    assert expand_key("$$1", m) == "$1"
    assert expand_key("const", m) == "const"
    assert template_groups("$1${12}$$x$0") == [1, 12, 0]
    with pytest.raises(InvalidSpec, match="must be followed by a capture group number"):
        template_groups("$a")
    with pytest.raises(InvalidSpec):
        template_groups("tail$")


# --- pfs inputs ----------------------------------------------------------------------------


def test_star_gives_top_level_files_and_directories() -> None:
    repos = Repos(images=tree("/a/x", "/a/y", "/b"))
    ds = datums(pfs("images", "/*"), repos)
    assert shape(ds) == [["/pfs/images/a/x", "/pfs/images/a/y"], ["/pfs/images/b"]]
    assert [d.matches for d in ds] == [(("images", "/a"),), (("images", "/b"),)]
    assert ds[0].inputs() == ["images"]
    assert repos.asked[0].repo == "images"


def test_root_gives_one_datum_with_everything() -> None:
    ds = datums(pfs("images", "/"), Repos(images=tree("/a/x", "/a/y", "/b")))
    assert shape(ds) == [["/pfs/images/a/x", "/pfs/images/a/y", "/pfs/images/b"]]
    assert ds[0].matches == (("images", "/"),)


def test_double_star_gives_every_file_and_directory() -> None:
    ds = datums(pfs("images", "/**"), Repos(images=tree("/a/x", "/a/y", "/b", "/c/d/e")))
    assert [d.matches[0][1] for d in ds] == ["/a", "/a/x", "/a/y", "/b", "/c", "/c/d", "/c/d/e"]
    by_match = {d.matches[0][1]: [f.path for f in d.files] for d in ds}
    assert by_match["/a"] == ["/a/x", "/a/y"]
    assert by_match["/c"] == by_match["/c/d"] == by_match["/c/d/e"] == ["/c/d/e"]
    assert len({d.id for d in ds}) == len(ds)


def test_nested_directories() -> None:
    repos = Repos(r=tree("/2024/01/a.csv", "/2024/01/b.csv", "/2024/02/c.csv", "/2025/01/d.csv"))
    assert shape(datums(pfs("r", "/*/*"), repos)) == [
        ["/pfs/r/2024/01/a.csv", "/pfs/r/2024/01/b.csv"],
        ["/pfs/r/2024/02/c.csv"],
        ["/pfs/r/2025/01/d.csv"],
    ]
    assert shape(datums(pfs("r", "/2024/*/*.csv"), repos)) == [
        ["/pfs/r/2024/01/a.csv"],
        ["/pfs/r/2024/01/b.csv"],
        ["/pfs/r/2024/02/c.csv"],
    ]
    assert shape(datums(pfs("r", "/*/01"), repos)) == [
        ["/pfs/r/2024/01/a.csv", "/pfs/r/2024/01/b.csv"],
        ["/pfs/r/2025/01/d.csv"],
    ]


def test_name_lazy_and_empty_files_reach_the_datum_files() -> None:
    ds = datums(pfs("r", "/*", name="in", lazy=True), Repos(r=tree("/a")))
    [f] = ds[0].files
    assert (f.input_name, f.repo, f.branch, f.path, f.lazy, f.empty) == (
        "in",
        "r",
        "master",
        "/a",
        True,
        False,
    )
    assert f.mount_path == "/pfs/in/a"
    ds = datums(pfs("r", "/*", branch="dev", empty_files=True), Repos(r=tree("/a")))
    assert ds[0].files[0].empty and ds[0].files[0].branch == "dev"


def test_empty_input_and_no_matches_give_no_datums() -> None:
    assert datums(pfs("r", "/"), Repos(r=[])) == []
    assert datums(pfs("r", "/*"), Repos(r=[])) == []
    assert datums(pfs("r", "/*.csv"), Repos(r=tree("/a.txt"))) == []


def test_unsorted_files_are_sorted() -> None:
    files = list(reversed(tree("/a", "/b", "/c")))
    assert shape(datums(pfs("r", "/*"), Repos(r=files))) == [
        ["/pfs/r/a"],
        ["/pfs/r/b"],
        ["/pfs/r/c"],
    ]


def test_relative_paths_from_files_for_are_refused() -> None:
    with pytest.raises(InvalidPath, match="not an absolute file path"):
        datums(pfs("r", "/*"), Repos(r=[FileInfo("a", "h", 1)]))


# --- cross and union -----------------------------------------------------------------------


def test_cross_is_the_cartesian_product() -> None:
    repos = Repos(a=tree("/1", "/2"), b=tree("/x", "/y", "/z"))
    ds = datums({"cross": [pfs("a", "/*"), pfs("b", "/*")]}, repos)
    assert shape(ds) == [
        ["/pfs/a/1", "/pfs/b/x"],
        ["/pfs/a/1", "/pfs/b/y"],
        ["/pfs/a/1", "/pfs/b/z"],
        ["/pfs/a/2", "/pfs/b/x"],
        ["/pfs/a/2", "/pfs/b/y"],
        ["/pfs/a/2", "/pfs/b/z"],
    ]
    assert ds[0].inputs() == ["a", "b"]
    assert len({d.id for d in ds}) == 6


def test_montage_cross_of_two_roots() -> None:
    repos = Repos(images=tree("/1.png", "/2.png"), edges=tree("/1.png"))
    ds = datums({"cross": [pfs("images", "/"), pfs("edges", "/")]}, repos)
    assert shape(ds) == [["/pfs/edges/1.png", "/pfs/images/1.png", "/pfs/images/2.png"]]


def test_cross_with_an_empty_child_is_empty() -> None:
    repos = Repos(a=tree("/1", "/2"), b=[])
    assert datums({"cross": [pfs("a", "/*"), pfs("b", "/*")]}, repos) == []


def test_union_concatenates_and_dedupes() -> None:
    repos = Repos(a=tree("/1", "/2"), b=tree("/x"))
    ds = datums({"union": [pfs("a", "/*"), pfs("b", "/*")]}, repos)
    assert shape(ds) == [["/pfs/a/1"], ["/pfs/a/2"], ["/pfs/b/x"]]
    # The same input twice (load_spec refuses the name clash; a hand-built Input may not).
    ds = datums({"union": [pfs("a", "/*"), pfs("a", "/*")]}, repos)
    assert shape(ds) == [["/pfs/a/1"], ["/pfs/a/2"]]
    assert datums({"union": [pfs("a", "/*"), pfs("b", "/*")]}, Repos()) == []


def test_nested_cross_of_union() -> None:
    repos = Repos(a=tree("/1"), b=tree("/x"), c=tree("/p", "/q"))
    ds = datums({"cross": [{"union": [pfs("a", "/*"), pfs("b", "/*")]}, pfs("c", "/*")]}, repos)
    assert shape(ds) == [
        ["/pfs/a/1", "/pfs/c/p"],
        ["/pfs/a/1", "/pfs/c/q"],
        ["/pfs/b/x", "/pfs/c/p"],
        ["/pfs/b/x", "/pfs/c/q"],
    ]


# --- join ----------------------------------------------------------------------------------


def join(a_extra: dict[str, Any] | None = None, b_extra: dict[str, Any] | None = None) -> Any:
    return {
        "join": [
            pfs("readings", "/(*).csv", join_on="$1", **(a_extra or {})),
            pfs("params", "/(*).json", join_on="$1", **(b_extra or {})),
        ]
    }


JOIN_REPOS = {
    "readings": tree("/a.csv", "/b.csv", "/c.csv"),
    "params": tree("/b.json", "/c.json", "/d.json"),
}


def test_inner_join_keeps_matching_keys_only() -> None:
    ds = datums(join(), Repos(**JOIN_REPOS))
    assert shape(ds) == [
        ["/pfs/params/b.json", "/pfs/readings/b.csv"],
        ["/pfs/params/c.json", "/pfs/readings/c.csv"],
    ]


def test_outer_join_keeps_unmatched_outer_files_alone() -> None:
    ds = datums(join({"outer_join": True}), Repos(**JOIN_REPOS))
    assert shape(ds) == [
        ["/pfs/readings/a.csv"],
        ["/pfs/params/b.json", "/pfs/readings/b.csv"],
        ["/pfs/params/c.json", "/pfs/readings/c.csv"],
    ]
    ds = datums(join({"outer_join": True}, {"outer_join": True}), Repos(**JOIN_REPOS))
    assert shape(ds) == [
        ["/pfs/readings/a.csv"],
        ["/pfs/params/b.json", "/pfs/readings/b.csv"],
        ["/pfs/params/c.json", "/pfs/readings/c.csv"],
        ["/pfs/params/d.json"],
    ]


def test_join_crosses_several_matches_of_one_key() -> None:
    repos = Repos(
        left=tree("/k1-a", "/k1-b", "/k2-a"),
        right=tree("/k1.x", "/k1.y", "/k3.x"),
    )
    input = {
        "join": [
            pfs("left", "/(*)-*", join_on="$1"),
            pfs("right", "/(*).*", join_on="$1"),
        ]
    }
    assert shape(datums(input, repos)) == [
        ["/pfs/left/k1-a", "/pfs/right/k1.x"],
        ["/pfs/left/k1-a", "/pfs/right/k1.y"],
        ["/pfs/left/k1-b", "/pfs/right/k1.x"],
        ["/pfs/left/k1-b", "/pfs/right/k1.y"],
    ]


def test_three_way_outer_join_keeps_outer_children_that_share_a_key() -> None:
    repos = Repos(a=tree("/k.a", "/m.a"), b=tree("/k.b"), c=tree("/m.c", "/z.c"))
    input = {
        "join": [
            pfs("a", "/(*).a", join_on="$1", outer_join=True),
            pfs("b", "/(*).b", join_on="$1"),
            pfs("c", "/(*).c", join_on="$1", outer_join=True),
        ]
    }
    # k: a and b, c missing -> only the outer a; m: a and c (both outer) -> together;
    # z: c alone -> c.
    assert shape(datums(input, repos)) == [
        ["/pfs/a/k.a"],
        ["/pfs/a/m.a", "/pfs/c/m.c"],
        ["/pfs/c/z.c"],
    ]


def test_join_on_directories_and_composite_keys() -> None:
    repos = Repos(
        left=tree("/2024/01/x", "/2024/02/y"),
        right=tree("/01-2024.txt", "/03-2024.txt"),
    )
    input = {
        "join": [
            pfs("left", "/(*)/(*)", join_on="$1-$2"),
            pfs("right", "/(*)-(*).txt", join_on="$2-$1"),
        ]
    }
    assert shape(datums(input, repos)) == [["/pfs/left/2024/01/x", "/pfs/right/01-2024.txt"]]


# --- group ---------------------------------------------------------------------------------


def test_group_puts_every_match_with_a_key_in_one_datum() -> None:
    repos = Repos(
        sales=tree("/us-1.csv", "/us-2.csv", "/eu-1.csv"),
        stores=tree("/eu.json", "/jp.json"),
    )
    input = {
        "group": [
            pfs("sales", "/(*)-*.csv", group_by="$1"),
            pfs("stores", "/(*).json", group_by="$1"),
        ]
    }
    ds = datums(input, repos)
    assert shape(ds) == [
        ["/pfs/sales/eu-1.csv", "/pfs/stores/eu.json"],
        ["/pfs/stores/jp.json"],
        ["/pfs/sales/us-1.csv", "/pfs/sales/us-2.csv"],
    ]
    assert ds[2].matches == (("sales", "/us-1.csv"), ("sales", "/us-2.csv"))


def test_group_of_overlapping_matches_lists_each_file_once() -> None:
    input = {"group": [pfs("r", "/**", group_by="const")]}
    ds = datums(input, Repos(r=tree("/a/x", "/b")))
    assert shape(ds) == [["/pfs/r/a/x", "/pfs/r/b"]]
    assert len(ds[0].matches) == 3


# --- cron ----------------------------------------------------------------------------------


def test_cron_inputs_read_their_tick_repo() -> None:
    spec = load_spec(
        {
            "pipeline": {"name": "p"},
            "transform": {"cmd": ["x"]},
            "input": {"cross": [pfs("data", "/"), {"cron": {"name": "tick", "spec": "@hourly"}}]},
        }
    )
    repos = Repos(data=tree("/d"), p_tick=tree("/2024-01-01T00:00:00Z", "/2024-01-01T01:00:00Z"))
    ds = compute_datums(spec.input, repos)
    assert shape(ds) == [
        ["/pfs/data/d", "/pfs/tick/2024-01-01T00:00:00Z"],
        ["/pfs/data/d", "/pfs/tick/2024-01-01T01:00:00Z"],
    ]
    asked = repos.asked[1]
    assert (asked.repo, asked.branch, asked.glob, asked.name) == ("p_tick", "master", "/*", "tick")


def test_cron_as_pfs_and_hook() -> None:
    cron = CronInput(name="tick", spec="@hourly", repo="p_tick")
    assert cron_as_pfs(cron) == PfsInput(repo="p_tick", glob="/*", name="tick")
    with pytest.raises(InvalidSpec, match="has no repo"):
        cron_as_pfs(CronInput(name="tick", spec="@hourly"))
    pinned = PfsInput(repo="p_tick", glob="/*", name="tick", commit="a" * 32)
    repos = Repos(p_tick=tree("/t"))
    ds = compute_datums(Input(cron=cron), repos, cron=lambda c: pinned)
    assert shape(ds) == [["/pfs/tick/t"]]
    assert repos.asked == [pinned]


# --- ids, hashes, JSON ---------------------------------------------------------------------


def test_ids_are_stable_and_content_independent() -> None:
    input = {"cross": [pfs("a", "/*"), pfs("b", "/")]}
    before = datums(input, Repos(a=tree("/1", "/2"), b=tree("/x")))
    after = datums(input, Repos(a=tree("/1", "/2", content="v2"), b=tree("/x", content="v2")))
    assert [d.id for d in before] == [d.id for d in after]
    assert [d.hash("s") for d in before] != [d.hash("s") for d in after]
    for d in before:
        assert re.fullmatch(r"[0-9a-f]{64}", d.id)
        assert re.fullmatch(r"[0-9a-f]{64}", d.hash("s"))
    assert before[0].id == datum_id([("b", "/"), ("a", "/1")])


def test_hash_depends_on_salt_content_and_directory_contents() -> None:
    repos = Repos(a=tree("/d/1"))
    [d] = datums(pfs("a", "/*"), repos)
    assert d.hash("salt") == d.hash("salt")
    assert d.hash("salt") != d.hash("pepper")
    [changed] = datums(pfs("a", "/*"), Repos(a=tree("/d/1", content="new")))
    assert changed.id == d.id and changed.hash("salt") != d.hash("salt")
    [grown] = datums(pfs("a", "/*"), Repos(a=tree("/d/1", "/d/2")))
    assert grown.id == d.id and grown.hash("salt") != d.hash("salt")


def test_ids_differ_between_inputs_with_the_same_paths() -> None:
    repos = Repos(a=tree("/1"), b=tree("/1"))
    ds = datums({"union": [pfs("a", "/*"), pfs("b", "/*")]}, repos)
    assert len(ds) == 2 and ds[0].id != ds[1].id


def test_json_round_trip() -> None:
    ds = datums(
        {"cross": [pfs("a", "/*", lazy=True), pfs("b", "/")]}, Repos(a=tree("/1"), b=tree("/x/y"))
    )
    for d in ds:
        data = d.to_json()
        assert Datum.from_json(data) == d
        assert data["files"][0] == {
            "input_name": "a",
            "repo": "a",
            "branch": "master",
            "path": "/1",
            "hash": "h(/1)",
            "size": 2,
            "lazy": True,
            "empty": False,
        }
    f = FileInfo("/p", "abc", 3)
    assert FileInfo.from_json(f.to_json()) == f
    df = ds[0].files[1]
    assert DatumFile.from_json(df.to_json()) == df


def test_datum_of_sorts_files_and_dedupes() -> None:
    f1 = DatumFile("b", "rb", "master", "/1", "h", 1)
    f2 = DatumFile("a", "ra", "master", "/2", "h", 1)
    d = Datum.of([("b", "/1"), ("a", "/2"), ("a", "/2")], [f1, f2, f1])
    assert d.files == (f2, f1)
    assert d.matches == (("a", "/2"), ("b", "/1"))
    assert d.inputs() == ["a", "b"]


def test_iter_datums_matches_compute_datums() -> None:
    input = Input.model_validate({"cross": [pfs("a", "/*"), pfs("b", "/*")]})
    repos = Repos(a=tree("/1", "/2"), b=tree("/x"))
    assert list(iter_datums(input, repos)) == compute_datums(input, repos)


# --- properties ----------------------------------------------------------------------------

segment = st.text(alphabet="abcxyz019._-", min_size=1, max_size=4).filter(
    lambda s: s not in (".", "..")
)
paths = st.lists(st.lists(segment, min_size=1, max_size=4), min_size=0, max_size=25).map(
    lambda parts: sorted({"/" + "/".join(p) for p in parts})
)


def _valid_tree(all_paths: list[str]) -> list[str]:
    """Drop paths that are also a directory of another path (a file cannot be a directory)."""
    as_set = set(all_paths)
    return [p for p in all_paths if not any(q.startswith(p + "/") for q in as_set)]


@settings(max_examples=200, deadline=None)
@given(paths)
def test_every_file_is_in_exactly_one_datum_for_root_and_star(raw: list[str]) -> None:
    files = [FileInfo(p, "h" + p, 1) for p in _valid_tree(raw)]
    repos = Repos(r=files)
    for glob in ("/", "/*"):
        counts = Counter(f.path for d in datums(pfs("r", glob), repos) for f in d.files)
        assert counts == Counter(f.path for f in files), glob
    root = datums(pfs("r", "/"), repos)
    assert len(root) == (1 if files else 0)
    star = datums(pfs("r", "/*"), repos)
    assert len(star) == len({p.split("/")[1] for p in (f.path for f in files)})


@settings(max_examples=100, deadline=None)
@given(paths, paths)
def test_cross_size_is_the_product_and_ids_are_unique(a: list[str], b: list[str]) -> None:
    repos = Repos(
        a=[FileInfo(p, "h", 1) for p in _valid_tree(a)],
        b=[FileInfo(p, "h", 1) for p in _valid_tree(b)],
    )
    na = len(datums(pfs("a", "/*"), repos))
    nb = len(datums(pfs("b", "/*"), repos))
    ds = datums({"cross": [pfs("a", "/*"), pfs("b", "/*")]}, repos)
    assert len(ds) == na * nb
    assert len({d.id for d in ds}) == len(ds)


@settings(max_examples=100, deadline=None)
@given(paths)
def test_double_star_matches_every_file_and_directory(raw: list[str]) -> None:
    files = _valid_tree(raw)
    dirs = {p[:i] for p in files for i in range(1, len(p)) if p[i] == "/"}
    ds = datums(pfs("r", "/**"), Repos(r=[FileInfo(p, "h", 1) for p in files]))
    assert [d.matches[0][1] for d in ds] == sorted(set(files) | dirs)
