"""Leniency where Pachyderm is lenient: globs without '/', union branches sharing a name, joins
without join_on, YAML with tabs, JSON streams split by '---', and only root causes reported."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))

from clihelpers import Tusk
from test_spec import base, error_of

from tusk.errors import InvalidSpec
from tusk.pps.datums import FileInfo, compute_datums
from tusk.pps.spec import PfsInput, load_spec, parse_specs


def files(**repos: list[str]) -> Any:
    def files_for(pfs: PfsInput) -> list[FileInfo]:
        return [FileInfo(p, f"{pfs.repo}:{p}", 1) for p in repos.get(pfs.repo, [])]

    return files_for


# --- globs -------------------------------------------------------------------------------


def test_glob_without_leading_slash_gives_the_same_datums() -> None:
    plain = load_spec(base(input={"pfs": {"repo": "a", "glob": "*"}}))
    slash = load_spec(base(input={"pfs": {"repo": "a", "glob": "/*"}}))
    assert plain == slash
    fs = files(a=["/x/1", "/y"])
    assert compute_datums(plain.input, fs) == compute_datums(slash.input, fs)


# --- union names -------------------------------------------------------------------------


def test_union_branches_may_share_a_name() -> None:
    spec = load_spec(
        base(
            input={
                "union": [
                    {"pfs": {"repo": "a", "glob": "/*", "name": "in"}},
                    {"pfs": {"repo": "b", "glob": "/*", "name": "in"}},
                ]
            }
        )
    )
    datums = compute_datums(spec.input, files(a=["/f", "/g"], b=["/f"]))
    # /f of a and /f of b are two datums, with two ids; both mount at /pfs/in/f.
    assert len(datums) == 3
    assert len({d.id for d in datums}) == 3
    assert sorted((d.files[0].repo, d.files[0].mount_path) for d in datums) == [
        ("a", "/pfs/in/f"),
        ("a", "/pfs/in/g"),
        ("b", "/pfs/in/f"),
    ]


def test_same_repo_twice_in_a_union_is_one_datum_per_path() -> None:
    spec = load_spec(
        base(
            input={
                "union": [{"pfs": {"repo": "a", "glob": "/*"}}, {"pfs": {"repo": "a", "glob": "*"}}]
            }
        )
    )
    assert len(compute_datums(spec.input, files(a=["/f", "/g"]))) == 2


def test_duplicate_names_elsewhere_stay_errors() -> None:
    crossed = base(
        input={"cross": [{"pfs": {"repo": "a", "glob": "/*"}}, {"pfs": {"repo": "a", "glob": "/"}}]}
    )
    assert "input.cross[1].pfs.name: input name 'a' is already used" in error_of(crossed)
    # A name a union presents may not be used by an input crossed with it (as Pachyderm).
    after = base(
        input={
            "cross": [
                {
                    "union": [
                        {"pfs": {"repo": "a", "glob": "/*"}},
                        {"pfs": {"repo": "b", "glob": "/*"}},
                    ]
                },
                {"pfs": {"repo": "c", "glob": "/", "name": "b"}},
            ]
        }
    )
    assert "input.cross[1].pfs.name: input name 'b' is already used by input.cross[0].union[1]" in (
        error_of(after)
    )
    # Inside one branch of a union, names are still unique.
    inner = base(
        input={
            "union": [
                {
                    "cross": [
                        {"pfs": {"repo": "a", "glob": "/*"}},
                        {"pfs": {"repo": "a", "glob": "/"}},
                    ]
                },
                {"pfs": {"repo": "a", "glob": "/*"}},
            ]
        }
    )
    assert "input.union[0].cross[1].pfs.name: input name 'a'" in error_of(inner)


# --- join without join_on --------------------------------------------------------------------


def test_join_without_join_on_is_a_cross() -> None:
    spec = load_spec(
        base(
            input={
                "join": [{"pfs": {"repo": "a", "glob": "/*"}}, {"pfs": {"repo": "b", "glob": "/*"}}]
            }
        )
    )
    fs = files(a=["/1", "/2"], b=["/x", "/y", "/z"])
    crossed = load_spec(
        base(
            input={
                "cross": [
                    {"pfs": {"repo": "a", "glob": "/*"}},
                    {"pfs": {"repo": "b", "glob": "/*"}},
                ]
            }
        )
    )
    assert {d.id for d in compute_datums(spec.input, fs)} == {
        d.id for d in compute_datums(crossed.input, fs)
    }
    assert len(compute_datums(spec.input, fs)) == 6


def test_join_with_join_on_on_one_side_only() -> None:
    # The side without join_on has the key "": it meets no "$1" key (inner join: no datums);
    # with outer_join its matches still come alone, as in Pachyderm.
    inputs = [
        {"pfs": {"repo": "a", "glob": "/(*)", "join_on": "$1"}},
        {"pfs": {"repo": "b", "glob": "/*"}},
    ]
    fs = files(a=["/1"], b=["/x"])
    assert compute_datums(load_spec(base(input={"join": inputs})).input, fs) == []
    inputs[1]["pfs"]["outer_join"] = True
    datums = compute_datums(load_spec(base(input={"join": inputs})).input, fs)
    assert [[f.repo for f in d.files] for d in datums] == [["b"]]


def test_group_still_needs_group_by() -> None:
    message = error_of(base(input={"group": [{"pfs": {"repo": "a", "glob": "/(*)"}}]}))
    assert "input.group[0].pfs.group_by: required in a group" in message


# --- reading files ---------------------------------------------------------------------------


def test_tabs_in_flow_collections_and_as_separators() -> None:
    text = (
        "pipeline:\t{name: p}\n"
        "transform: {cmd: [sh,\t-c,\t'echo\ta']}\t# a comment\n"
        "input: {\n\tpfs: {repo: a,\tglob: '/*'}\n}\n"
    )
    [spec] = parse_specs(text, "tabs.yaml")
    assert spec["transform"]["cmd"] == ["sh", "-c", "echo\ta"]  # a tab in quotes is kept
    assert load_spec(spec).input.pfs is not None


def test_tab_indented_json_documents_separated_by_dashes() -> None:
    one = (
        '{\n\t"pipeline": {"name": "a"},\n\t"transform": {"cmd": ["true"]},\n'
        '\t"input": {"pfs": {"repo": "x", "glob": "/*"}}\n}'
    )
    two = one.replace('"a"', '"b"')
    for text in (f"{one}\n---\n{two}\n", f"---\n{one}\n---\n{two}\n...\n"):
        specs = parse_specs(text, "stream.json")
        assert [s["pipeline"]["name"] for s in specs] == ["a", "b"]
    # Trailing commas, as Go's YAML reader takes them.
    assert parse_specs('{"pipeline": {"name": "a",},}', "comma.json") == [
        {"pipeline": {"name": "a"}}
    ]


def test_unreadable_files_name_the_real_line_and_cause() -> None:
    # A YAML flow file starting with '{': the YAML error (line 3), not JSON's at 1:2.
    with pytest.raises(InvalidSpec) as info:
        parse_specs(
            "{pipeline: {name: a},\n transform: {cmd: [a]},\n input: {pfs: {repo: a\n", "f.yaml"
        )
    assert info.value.message.startswith("f.yaml:4:") and "invalid YAML" in info.value.message
    # A key given twice in JSON: its line.
    with pytest.raises(InvalidSpec) as info:
        parse_specs('{\n"pipeline": {"name": "a"},\n"pipeline": {"name": "b"}\n}', "dup.json")
    assert info.value.message.startswith("dup.json:3:") and "'pipeline' is given twice" in (
        info.value.message
    )
    # A tab where no YAML reader takes one (block indentation): PyYAML's own error and line.
    with pytest.raises(InvalidSpec) as info:
        parse_specs("pipeline:\n\tname: a\n", "indent.yaml")
    assert info.value.message.startswith("indent.yaml:2:1: invalid YAML")


# --- root causes only --------------------------------------------------------------------------


def test_refused_field_is_one_line_without_its_consequences() -> None:
    tf_job = {"pipeline": {"name": "p"}, "tf_job": {}, "input": {"pfs": {"repo": "a", "glob": "/"}}}
    message = error_of(tf_job)
    assert "tf_job: not supported by Tusk" in message
    assert "transform: required" not in message
    assert "required field missing" not in message


def test_misspelt_field_is_named_once() -> None:
    message = error_of(base(input={"pfs": {"repo": "a", "glb": "/*"}}))
    assert "input.pfs.glb: unknown field (did you mean 'glob'?)" in message
    assert "required field missing" not in message
    # An unknown field unlike any missing one: both are reported.
    message = error_of(base(input={"pfs": {"repo": "a", "zzz": "/*"}}))
    assert "input.pfs.zzz: unknown field;" in message
    assert "input.pfs.glob: required field missing" in message


# --- through the CLI -----------------------------------------------------------------------------


def test_cli_takes_a_lenient_spec(home: Path, tmp_path: Path) -> None:
    tusk = Tusk(home)
    for repo in ("a", "b"):
        tusk("create", "repo", repo)
    spec = tmp_path / "lenient.yaml"
    spec.write_text(
        "pipeline: {name: p}\n"
        "transform: {cmd: [sh, -c,\t'ls /pfs/in']}\n"
        "input:\n"
        "  union:\n"
        "  - pfs: {repo: a,\tglob: '*', name: in}\n"
        "  - pfs: {repo: b, glob: '*', name: in}\n"
    )
    [info] = tusk.json("create", "pipeline", "-f", str(spec))
    assert [u["pfs"]["glob"] for u in info["spec"]["input"]["union"]] == ["/*", "/*"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline: {name: q}\ntf_job: {}\ninput: {pfs: {repo: a, glob: /}}\n")
    message = tusk.fails("create", "pipeline", "-f", str(bad), code=2)
    assert "tf_job: not supported by Tusk" in message and "required field" not in message
    assert [p["name"] for p in tusk.json("list", "pipeline")] == ["p"]
