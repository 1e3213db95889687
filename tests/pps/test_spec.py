"""Pipeline specs: Pachyderm's spec in JSON, YAML and camelCase; every rule has a failing case."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tusk.errors import InvalidArgument, InvalidSpec
from tusk.pps.spec import (
    UNSUPPORTED,
    CronInput,
    PfsInput,
    PipelineSpec,
    load_spec,
    parse_duration,
    parse_specs,
    spec_hash,
)

MONTAGE = (
    "montage -shadow -background SkyBlue -geometry 300x300+2+2 $(find /pfs -type f | sort) "
    "/pfs/out/montage.png"
)

EDGES_JSON = """
{
  "pipeline": {
    "name": "edges"
  },
  "description": "A pipeline that performs image edge detection by using the OpenCV library.",
  "transform": {
    "cmd": [ "python3", "/edges.py" ],
    "image": "pachyderm/opencv"
  },
  "input": {
    "pfs": {
      "repo": "images",
      "glob": "/*"
    }
  }
}
"""

MONTAGE_JSON = """
{
  "pipeline": {
    "name": "montage"
  },
  "description": "A pipeline that combines images from the `images` and `edges` repositories.",
  "input": {
    "cross": [
      {
        "pfs": {
          "glob": "/",
          "repo": "images"
        }
      },
      {
        "pfs": {
          "glob": "/",
          "repo": "edges"
        }
      }
    ]
  },
  "transform": {
    "cmd": [ "sh" ],
    "image": "v4tech/imagemagick",
    "stdin": [ "MONTAGE" ]
  }
}
""".replace("MONTAGE", MONTAGE)

EDGES_YAML = """
pipeline:
  name: edges
description: A pipeline that performs image edge detection by using the OpenCV library.
transform:
  cmd:
    - python3
    - /edges.py
  image: pachyderm/opencv
input:
  pfs:
    repo: images
    glob: "/*"
"""

MONTAGE_YAML = """
pipeline:
  name: montage
input:
  cross:
    - pfs:
        glob: /
        repo: images
    - pfs:
        glob: /
        repo: edges
transform:
  cmd: [sh]
  image: v4tech/imagemagick
  stdin:
    - MONTAGE
""".replace("MONTAGE", MONTAGE)


def base(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "pipeline": {"name": "p"},
        "transform": {"cmd": ["python3", "/app.py"]},
        "input": {"pfs": {"repo": "data", "glob": "/*"}},
    }
    spec.update(extra)
    return spec


def error_of(data: Any) -> str:
    with pytest.raises(InvalidSpec) as info:
        load_spec(data)
    message = info.value.message
    assert "\n" not in message
    assert message.startswith("invalid pipeline spec: ")
    return message


# --- the tutorial specs ------------------------------------------------------------------


def test_edges_json_loads_with_defaults() -> None:
    [data] = parse_specs(EDGES_JSON, "edges.json")
    spec = load_spec(data)
    assert spec.name == "edges"
    assert spec.transform.cmd == ["python3", "/edges.py"]
    assert spec.transform.image == "pachyderm/opencv"
    pfs = spec.input.pfs
    assert pfs is not None
    assert (pfs.repo, pfs.glob, pfs.name, pfs.branch) == ("images", "/*", "images", "master")
    assert spec.parallelism_spec.constant == 1
    assert spec.datum_tries == 3
    assert spec.output_branch == "master"
    assert spec.reprocess_spec == "until_success"
    assert spec.datum_timeout is None and spec.job_timeout is None and spec.egress is None
    assert spec.inputs() == [pfs]
    assert spec.input_branches() == [("images", "master")]


def test_montage_json_is_a_cross_of_two_inputs() -> None:
    [data] = parse_specs(MONTAGE_JSON)
    spec = load_spec(data)
    assert spec.input.kind == "cross"
    assert [leaf.name for leaf in spec.inputs()] == ["images", "edges"]
    assert spec.input_branches() == [("images", "master"), ("edges", "master")]
    assert spec.transform.cmd == ["sh"]
    assert spec.transform.stdin == [MONTAGE]


def test_yaml_and_json_give_the_same_spec() -> None:
    assert load_spec(parse_specs(EDGES_YAML, "edges.yaml")[0]) == load_spec(
        parse_specs(EDGES_JSON)[0]
    )
    montage_yaml = load_spec(parse_specs(MONTAGE_YAML)[0])
    montage_json = load_spec(parse_specs(MONTAGE_JSON)[0])
    assert montage_yaml.input == montage_json.input
    assert montage_yaml.transform == montage_json.transform


def test_camel_case_keys_equal_snake_case_keys() -> None:
    camel = {
        "pipeline": {"name": "p"},
        "transform": {
            "cmd": ["run"],
            "workingDir": "/w",
            "errCmd": ["true"],
            "errStdin": ["x"],
            "acceptReturnCode": [1, 2],
        },
        "input": {
            "join": [
                {"pfs": {"repo": "a", "glob": "/(*)", "joinOn": "$1", "outerJoin": True}},
                {"pfs": {"repo": "b", "glob": "/(*)", "joinOn": "$1", "emptyFiles": True}},
            ]
        },
        "parallelismSpec": {"constant": 4},
        "datumTries": 5,
        "datumTimeout": "1m",
        "jobTimeout": "2h",
        "outputBranch": "out",
        "reprocessSpec": "every_job",
        "egress": {"URL": "s3://bucket/dir"},
    }
    snake = {
        "pipeline": {"name": "p"},
        "transform": {
            "cmd": ["run"],
            "working_dir": "/w",
            "err_cmd": ["true"],
            "err_stdin": ["x"],
            "accept_return_code": [1, 2],
        },
        "input": {
            "join": [
                {"pfs": {"repo": "a", "glob": "/(*)", "join_on": "$1", "outer_join": True}},
                {"pfs": {"repo": "b", "glob": "/(*)", "join_on": "$1", "empty_files": True}},
            ]
        },
        "parallelism_spec": {"constant": 4},
        "datum_tries": 5,
        "datum_timeout": "1m",
        "job_timeout": "2h",
        "output_branch": "out",
        "reprocess_spec": "every_job",
        "egress": {"url": "s3://bucket/dir"},
    }
    a, b = load_spec(camel), load_spec(snake)
    assert a == b
    assert a.parallelism_spec.constant == 4
    assert a.datum_timeout == 60.0 and a.job_timeout == 7200.0
    assert a.transform.accept_return_code == [1, 2]
    assert a.egress is not None and a.egress.url == "s3://bucket/dir"
    join = a.input.join
    assert join is not None and join[0].pfs is not None and join[0].pfs.outer_join
    group = load_spec(
        base(input={"group": [{"pfs": {"repo": "a", "glob": "/(*)", "groupBy": "$1"}}]})
    )
    assert group.input.group is not None and group.input.group[0].pfs is not None
    assert group.input.group[0].pfs.group_by == "$1"


def test_optional_fields_are_recorded() -> None:
    spec = load_spec(
        base(
            transform={"cmd": ["x"], "env": {"A": "1"}, "user": "root", "image": "img"},
            metadata={"annotations": {"team": "ml"}, "labels": {"tier": "gold"}},
            description="d",
            salt="s",
            autoscaling=True,
            input={"pfs": {"repo": "data", "glob": "/*", "lazy": True, "commit": "a" * 32}},
        )
    )
    assert spec.transform.env == {"A": "1"} and spec.transform.user == "root"
    assert spec.metadata.annotations == {"team": "ml"}
    assert spec.metadata.labels == {"tier": "gold"}
    assert spec.salt == "s" and spec.autoscaling is True and spec.description == "d"
    assert spec.input.pfs is not None and spec.input.pfs.commit == "a" * 32
    assert spec.input.pfs.lazy is True


def test_models_are_frozen() -> None:
    spec = load_spec(base())
    with pytest.raises(Exception, match="frozen"):
        spec.datum_tries = 9


# --- parse_specs ---------------------------------------------------------------------------


def test_several_yaml_documents() -> None:
    text = EDGES_YAML + "\n---\n" + MONTAGE_YAML + "\n---\n"
    specs = parse_specs(text, "both.yaml")
    assert [s["pipeline"]["name"] for s in specs] == ["edges", "montage"]


def test_concatenated_json_objects() -> None:
    specs = parse_specs(EDGES_JSON + "\n" + MONTAGE_JSON, "both.json")
    assert [s["pipeline"]["name"] for s in specs] == ["edges", "montage"]


def test_json_and_yaml_lists_of_specs() -> None:
    edges, montage = json.loads(EDGES_JSON), json.loads(MONTAGE_JSON)
    assert parse_specs(json.dumps([edges, montage])) == [edges, montage]
    assert parse_specs(yaml.safe_dump([edges, montage]).encode()) == [edges, montage]


def test_bytes_with_bom_are_read() -> None:
    assert parse_specs(b"\xef\xbb\xbf" + EDGES_JSON.encode())[0]["pipeline"] == {"name": "edges"}


def test_malformed_json_names_source_and_line() -> None:
    text = '{\n  "pipeline": {"name": "x"}\n  "transform": {"cmd": ["a"]}\n}\n'
    with pytest.raises(InvalidSpec) as info:
        parse_specs(text, "bad.json")
    assert info.value.message.startswith("bad.json:3:3: invalid JSON: Expecting ',' delimiter")
    assert "invalid JSON" in info.value.message
    assert "\n" not in info.value.message


def test_malformed_yaml_names_source_and_line() -> None:
    text = "pipeline:\n  name: x\ntransform:\n  cmd: [a, b\ninput: {}\n"
    with pytest.raises(InvalidSpec) as info:
        parse_specs(text, "bad.yaml")
    message = info.value.message
    assert message.startswith("bad.yaml:")
    assert int(message.split(":")[1]) >= 4
    assert "invalid YAML" in message and "\n" not in message


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(InvalidSpec, match="'name' is given twice"):
        parse_specs("pipeline:\n  name: a\n  name: b\n", "dup.yaml")
    with pytest.raises(InvalidSpec, match="'name' is given twice"):
        parse_specs('{"pipeline": {"name": "a", "name": "b"}}', "dup.json")


def test_not_a_mapping_and_empty_files() -> None:
    with pytest.raises(InvalidSpec, match="spec 1 is a str, not a mapping"):
        parse_specs("just a string\n", "s.yaml")
    with pytest.raises(InvalidSpec, match="no pipeline spec found"):
        parse_specs("# only a comment\n", "empty.yaml")
    with pytest.raises(InvalidSpec, match="not UTF-8"):
        parse_specs(b"\xff\xfe\x00", "bin.json")


def test_yaml_flow_mapping_that_is_not_json() -> None:
    specs = parse_specs("{pipeline: {name: x}, transform: {cmd: [a]}}", "flow.yaml")
    assert specs == [{"pipeline": {"name": "x"}, "transform": {"cmd": ["a"]}}]


def test_load_spec_refuses_non_mappings_and_prefixes_source() -> None:
    with pytest.raises(InvalidSpec, match="expected a mapping"):
        load_spec(["x"])
    with pytest.raises(InvalidSpec) as info:
        load_spec(base(bogus=1), source="p.yaml")
    assert info.value.message.startswith("p.yaml: invalid pipeline spec: bogus: unknown field")


def test_invalid_spec_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as info:
        load_spec({})
    assert info.value.code == "invalid_spec"


# --- errors name the field -----------------------------------------------------------------


def test_unknown_field_is_named_with_its_path() -> None:
    data = base(input={"cross": [{"pfs": {"repo": "a", "glob": "/"}}, {"pfs": {"repo": "b"}}]})
    data["input"]["cross"][1]["pfs"]["glb"] = "/*"
    message = error_of(data)
    assert "input.cross[1].pfs.glb: unknown field (did you mean 'glob'?)" in message
    # The missing glob follows from the misspelt one: only the cause is printed.
    assert "input.cross[1].pfs.glob: required field missing" not in message
    assert message.endswith("see docs/pipeline-spec.md")


def test_brief_example_message() -> None:
    data = base(input={"pfs": {"repo": "a", "glob": "/*", "glb": "/"}})
    assert error_of(data) == (
        "invalid pipeline spec: input.pfs.glb: unknown field; see docs/pipeline-spec.md"
    )


def test_several_errors_on_one_line() -> None:
    message = error_of({"pipeline": {"name": "bad name"}, "transform": {"cmd": []}})
    assert "pipeline.name: invalid pipeline name 'bad name'" in message
    assert "transform.cmd: empty" in message
    assert "input: required field missing" in message
    assert message.count("; see docs/pipeline-spec.md") == 1


@pytest.mark.parametrize(
    ("section", "field", "where"),
    [
        ("spec", "tf_job", "tf_job"),
        ("spec", "spec_commit", "spec_commit"),
        ("spec", "datum_set_spec", "datum_set_spec"),
        ("trigger", "rate_limit_spec", "input.pfs.trigger.rate_limit_spec"),
        ("parallelism_spec", "coefficient", "parallelism_spec.coefficient"),
        ("input", "git", "input.git"),
        ("cron", "commit", "input.cron.commit"),
    ],
)
def test_unsupported_fields_are_refused_with_reason(section: str, field: str, where: str) -> None:
    data = base(egress={"URL": "s3://b/p"}, parallelism_spec={"constant": 1})
    if section == "cron":
        data["input"] = {"cron": {"name": "tick", "spec": "@hourly"}}
    if section == "trigger":
        data["input"]["pfs"]["trigger"] = {"branch": "master"}
    target = {
        "cron": data["input"].get("cron"),
        "trigger": data["input"].get("pfs", {}).get("trigger"),
        "spec": data,
        "transform": data["transform"],
        "pfs": data["input"].get("pfs"),
        "input": data["input"],
        "parallelism_spec": data["parallelism_spec"],
        "egress": data["egress"],
    }[section]
    target[field] = {"x": 1}
    message = error_of(data)
    assert f"{where}: {UNSUPPORTED[section][field]}" in message


def test_resource_and_kubernetes_fields_are_taken_as_written() -> None:
    spec = load_spec(
        base(
            resourceRequests={"cpu": "500m", "memory": "1Gi"},
            resourceLimits={"cpu": 2, "memory": "512Mi", "gpu": {"type": "nvidia.com/gpu"}},
            sidecarResourceLimits={"cpu": 1},
            schedulingSpec={"nodeSelector": {"disk": "ssd"}},
            podPatch="[]",
            tolerations=[{"key": "gpu", "operator": "Exists"}],
        )
    )
    assert spec.resource_requests is not None and spec.resource_requests.cpu == 0.5
    assert spec.resource_limits is not None and spec.resource_limits.memory_bytes == 512 << 20
    assert spec.canonical()["scheduling_spec"] == {"nodeSelector": {"disk": "ssd"}}
    for bad, word in (("abc", "is not a size"), ("1Gx", "is not a size"), ("0", "at least")):
        assert word in error_of(base(resource_limits={"memory": bad}))
    assert "CPU must be positive" in error_of(base(resource_requests={"cpu": "0"}))
    assert "is not a CPU quantity" in error_of(base(resource_requests={"cpu": "two"}))


def test_projects_name_the_pipeline_and_its_inputs() -> None:
    data = base()
    data["pipeline"]["project"] = {"name": "default"}
    data["input"]["pfs"]["project"] = {"name": "default"}
    spec = load_spec(data)
    assert "project" not in json.dumps(spec.canonical())  # the default is the same as none
    assert spec.name == "p" and spec.inputs()[0].repo == "data"
    data["pipeline"]["project"] = {"name": "research"}
    data["input"]["pfs"] = {"repo": "data", "glob": "/*"}  # read from the pipeline's project
    spec = load_spec(data)
    assert spec.name == "research/p" and spec.inputs()[0].repo == "research/data"
    assert spec.inputs()[0].name == "data"  # mounted at /pfs/data
    data["input"]["pfs"]["project"] = "default"  # a string is taken as the project's name
    spec = load_spec(data)
    assert spec.inputs()[0].repo == "data" and load_spec(spec.canonical()) == spec
    data["input"]["pfs"]["project"] = {"name": "bad name"}
    assert "invalid project name 'bad name'" in error_of(data)


def test_key_given_in_both_spellings_is_refused() -> None:
    message = error_of(base(datum_tries=2, datumTries=3))
    assert "datumTries: given twice (as 'datum_tries' and 'datumTries')" in message


def test_cmd_is_required_and_non_empty() -> None:
    assert "transform.cmd: required field missing" in error_of(base(transform={"env": {}}))
    assert "transform.cmd: empty" in error_of(base(transform={"cmd": []}))
    assert "transform.cmd: should be a list" in error_of(base(transform={"cmd": "python x"}))


def test_an_image_may_bring_its_own_command() -> None:
    spec = load_spec(base(transform={"image": "busybox:1.36", "network": True}))
    assert spec.transform.cmd == [] and spec.transform.network is True
    assert "cmd" in spec.canonical()["transform"]
    assert "network" not in load_spec(base()).canonical()["transform"]


def test_env_values_must_be_strings() -> None:
    message = error_of(base(transform={"cmd": ["x"], "env": {"PORT": 8080}}))
    assert "transform.env.PORT: should be a string (quote it) (got 8080)" in message


@pytest.mark.parametrize("repo", ["", "has space", "a/b/c", "x" * 64, "dots.no", "/x"])
def test_repo_name_rule(repo: str) -> None:
    message = error_of(base(input={"pfs": {"repo": repo, "glob": "/*", "name": "n"}}))
    assert "input.pfs.repo: invalid repo name" in message


def test_branch_rules() -> None:
    assert "input.pfs.branch: invalid branch name" in error_of(
        base(input={"pfs": {"repo": "a", "glob": "/*", "branch": "no/slash"}})
    )
    assert "input.pfs.branch: branch name" in error_of(
        base(input={"pfs": {"repo": "a", "glob": "/*", "branch": "0" * 32}})
    )
    assert "output_branch: invalid branch name" in error_of(base(output_branch="a b"))


def test_commit_must_be_a_full_id() -> None:
    message = error_of(base(input={"pfs": {"repo": "a", "glob": "/*", "commit": "abc"}}))
    assert "input.pfs.commit: 'abc' is not a commit id" in message


@pytest.mark.parametrize(
    ("glob", "expected"),
    [
        ("/(*", "'(' at position 1 is never closed"),
        ("/*)", "')' at position 2 closes nothing"),
        ("/[ab", "'[' at position 1 is never closed"),
        ("/{a,b", "'{' at position 1 is never closed"),
    ],
)
def test_glob_rules(glob: str, expected: str) -> None:
    message = error_of(
        base(
            input={
                "cross": [{"pfs": {"repo": "a", "glob": "/"}}, {"pfs": {"repo": "b", "glob": glob}}]
            }
        )
    )
    assert "input.cross[1].pfs.glob: " in message
    assert expected in message


def test_glob_trailing_slash_is_normalized() -> None:
    spec = load_spec(base(input={"pfs": {"repo": "a", "glob": "/*/"}}))
    assert spec.input.pfs is not None and spec.input.pfs.glob == "/*"


@pytest.mark.parametrize(
    ("glob", "clean"),
    [("*", "/*"), ("", "/"), (".", "/"), ("a/*/", "/a/*"), ("./(*).csv", "/(*).csv")],
)
def test_glob_without_leading_slash_means_the_same(glob: str, clean: str) -> None:
    # As Pachyderm (pfsfile.CleanPath): not refused, cleaned.
    spec = load_spec(base(input={"pfs": {"repo": "a", "glob": glob}}))
    assert spec.input.pfs is not None and spec.input.pfs.glob == clean


def test_input_must_set_exactly_one_kind() -> None:
    assert "input: empty input; set exactly one of" in error_of(base(input={}))
    message = error_of(
        base(input={"pfs": {"repo": "a", "glob": "/"}, "cron": {"name": "t", "spec": "@hourly"}})
    )
    assert "input: sets pfs and cron; an input is exactly one of" in message


@pytest.mark.parametrize("kind", ["cross", "union", "join", "group"])
def test_composite_inputs_need_elements(kind: str) -> None:
    assert f"input.{kind}: empty; list at least one input" in error_of(base(input={kind: []}))


def test_join_elements_must_be_pfs() -> None:
    # join_on may be left out, as in Pachyderm (every match then has the key "").
    load_spec(
        base(
            input={
                "join": [
                    {"pfs": {"repo": "a", "glob": "/(*)", "join_on": "$1"}},
                    {"pfs": {"repo": "b", "glob": "/(*)"}},
                ]
            }
        )
    )
    message = error_of(
        base(
            input={
                "join": [
                    {"pfs": {"repo": "a", "glob": "/(*)", "join_on": "$1"}},
                    {"cron": {"name": "tick", "spec": "@hourly"}},
                ]
            }
        )
    )
    assert "input.join[1]: a join takes pfs inputs only" in message


def test_group_elements_must_be_pfs_with_group_by() -> None:
    message = error_of(base(input={"group": [{"pfs": {"repo": "a", "glob": "/(*)"}}]}))
    assert "input.group[0].pfs.group_by: required in a group" in message


def test_join_on_must_use_existing_capture_groups() -> None:
    message = error_of(
        base(input={"join": [{"pfs": {"repo": "a", "glob": "/(*)", "join_on": "$2"}}]})
    )
    assert "input.join[0].pfs.join_on: '$2' uses $2 but glob '/(*)' has 1 capture group(s)" in (
        message
    )
    message = error_of(
        base(input={"join": [{"pfs": {"repo": "a", "glob": "/(*)", "join_on": "$x"}}]})
    )
    assert "input.join[0].pfs.join_on: '$x': '$' at position 0 must be followed" in message


def test_join_and_group_fields_outside_their_input() -> None:
    message = error_of(base(input={"pfs": {"repo": "a", "glob": "/(*)", "join_on": "$1"}}))
    assert "input.pfs.join_on: only used inside a join input" in message
    message = error_of(base(input={"pfs": {"repo": "a", "glob": "/*", "outer_join": True}}))
    assert "input.pfs.outer_join: only used inside a join input" in message
    message = error_of(base(input={"pfs": {"repo": "a", "glob": "/(*)", "group_by": "$1"}}))
    assert "input.pfs.group_by: only used inside a group input" in message


def test_lazy_and_empty_files_exclude_each_other() -> None:
    message = error_of(
        base(input={"pfs": {"repo": "a", "glob": "/*", "lazy": True, "empty_files": True}})
    )
    assert "input.pfs.empty_files: lazy and empty_files cannot both be true" in message


def test_input_names_must_be_unique() -> None:
    data = base(
        input={
            "cross": [
                {"pfs": {"repo": "a", "glob": "/"}},
                {
                    "union": [
                        {"pfs": {"repo": "b", "glob": "/*"}},
                        {"pfs": {"repo": "a", "glob": "/*"}},
                    ]
                },
            ]
        }
    )
    message = error_of(data)
    assert "input.cross[1].union[1].pfs.name: input name 'a' is already used by" in message
    assert "input.cross[0].pfs.name" in message and "`name`" in message
    data["input"]["cross"][1]["union"][1]["pfs"]["name"] = "a2"
    spec = load_spec(data)
    assert [leaf.name for leaf in spec.inputs()] == ["a", "b", "a2"]
    assert spec.input_branches() == [("a", "master"), ("b", "master"), ("a", "master")]


def test_cron_and_pfs_names_share_one_namespace() -> None:
    data = base(
        input={
            "cross": [
                {"pfs": {"repo": "a", "glob": "/", "name": "tick"}},
                {"cron": {"name": "tick", "spec": "@hourly"}},
            ]
        }
    )
    assert "input.cross[1].cron.name: input name 'tick' is already used" in error_of(data)


@pytest.mark.parametrize("name", ["out", "a/b", ".", ".."])
def test_input_name_must_be_a_path_segment(name: str) -> None:
    message = error_of(base(input={"pfs": {"repo": "a", "glob": "/*", "name": name}}))
    assert "input.pfs.name: " in message


def test_pipeline_cannot_read_its_own_output() -> None:
    message = error_of(base(pipeline={"name": "data"}))
    assert "input.pfs.repo: 'data' is this pipeline's own output repo" in message


def test_parallelism_and_tries_bounds() -> None:
    assert "parallelism_spec.constant: input should be greater than or equal to 1 (got 0)" in (
        error_of(base(parallelism_spec={"constant": 0}))
    )
    assert "datum_tries: input should be greater than or equal to 1" in error_of(
        base(datum_tries=0)
    )


def test_reprocess_spec_values() -> None:
    assert load_spec(base(reprocess_spec="every_job")).reprocess_spec == "every_job"
    assert "reprocess_spec: input should be 'until_success' or 'every_job'" in error_of(
        base(reprocess_spec="sometimes")
    )


def test_egress_urls() -> None:
    for url in ["s3://bucket/prefix", "file:///tmp/out", "/tmp/out"]:
        spec = load_spec(base(egress={"URL": url}))
        assert spec.egress is not None and spec.egress.url == url
    assert "egress.url: 'gs://b' is not a supported egress URL" in error_of(
        base(egress={"URL": "gs://b"})
    )


def test_egress_targets() -> None:
    # Pachyderm's object_storage.url is its URL: stored as URL, so both forms hash the same.
    spec = load_spec(base(egress={"objectStorage": {"url": "s3://b/p"}}))
    assert spec.canonical()["egress"] == {"url": "s3://b/p"}
    assert spec == load_spec(base(egress={"URL": "s3://b/p"}))
    sql = {
        "url": "postgresql://tusk@db.internal:5432/warehouse",
        "fileFormat": {"type": "csv", "columns": ["id", "name"]},
        "secret": {"name": "pg", "key": "password"},
    }
    spec = load_spec(base(egress={"sqlDatabase": sql}))
    assert spec.canonical()["egress"] == {
        "sql_database": {
            "url": "postgresql://tusk@db.internal:5432/warehouse",
            "file_format": {"type": "CSV", "columns": ["id", "name"]},
            "secret": {"name": "pg", "key": "password"},
        }
    }
    assert load_spec(spec.canonical()) == spec
    sqlite = {"url": "sqlite:////srv/out.db", "file_format": {"type": "JSON"}}
    assert load_spec(base(egress={"sql_database": sqlite})).egress is not None

    def egress_error(egress: dict[str, Any]) -> str:
        return error_of(base(egress=egress))

    assert "egress: give URL (s3://bucket/prefix, file:///dir) or sql_database" in egress_error({})
    assert "egress: give exactly one of URL" in egress_error({"URL": "/x", "sql_database": sqlite})
    assert "give URL or object_storage.url, not both" in egress_error(
        {"URL": "/x", "object_storage": {"url": "/y"}}
    )
    bad = sql | {"fileFormat": {"type": "XML"}}
    assert "egress.sql_database.file_format.type: 'XML' is not a file format; use CSV or JSON" in (
        egress_error({"sql_database": bad})
    )
    bad = sql | {"fileFormat": {"type": "PARQUET"}}
    assert "PARQUET is not supported by Tusk's SQL egress" in egress_error({"sql_database": bad})
    no_secret = {k: v for k, v in sql.items() if k != "secret"}
    assert "egress.sql_database.secret: required for a database server" in egress_error(
        {"sql_database": no_secret}
    )
    assert "do not put the password in the URL" in egress_error(
        {"sql_database": sql | {"url": "postgresql://tusk:pw@db/warehouse"}}
    )
    assert "'mysql://u@h/db' is not a supported database URL" in egress_error(
        {"sql_database": sql | {"url": "mysql://u@h/db"}}
    )


def test_pipeline_name_rule() -> None:
    assert "pipeline.name: required field missing" in error_of(base(pipeline={}))
    assert "pipeline.name: invalid pipeline name" in error_of(base(pipeline={"name": "x" * 64}))


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("2m30.5s", 150.5),
        ("100us", 0.0001),
        (45, 45.0),
        (2.5, 2.5),
        ("90", 90.0),
    ],
)
def test_durations(value: Any, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)
    spec = load_spec(base(datum_timeout=value, job_timeout=value))
    assert spec.datum_timeout == pytest.approx(seconds)
    assert spec.job_timeout == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "5x", "s", "-1s", "0s", 0, -3, True, "1h 30m", [1]])
def test_bad_durations_name_the_field(value: Any) -> None:
    message = error_of(base(datum_timeout=value))
    assert "datum_timeout: " in message
    assert "duration" in message


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_go_duration_components_add_up(h: int, m: int, s: int, ms: int) -> None:
    text = f"{h}h{m}m{s}s{ms}ms"
    total = h * 3600 + m * 60 + s + ms / 1000
    if total == 0:
        with pytest.raises(ValueError):
            parse_duration(text)
    else:
        assert parse_duration(text) == pytest.approx(total)


# --- cron ----------------------------------------------------------------------------------


def test_cron_spec_fills_repo_from_pipeline_name() -> None:
    spec = load_spec(
        base(pipeline={"name": "nightly"}, input={"cron": {"name": "tick", "spec": "@every 10s"}})
    )
    cron = spec.input.cron
    assert cron is not None
    assert (cron.name, cron.repo, cron.spec, cron.overwrite) == (
        "tick",
        "nightly_tick",
        "@every 10s",
        False,
    )
    assert spec.input_branches() == [("nightly_tick", "master")]
    assert spec.canonical()["input"]["cron"]["repo"] == "nightly_tick"


def test_cron_nested_in_a_cross_gets_its_repo() -> None:
    spec = load_spec(
        base(
            input={
                "cross": [
                    {"pfs": {"repo": "data", "glob": "/"}},
                    {"cron": {"name": "tick", "spec": "*/10 * * * *", "overwrite": True}},
                ]
            }
        )
    )
    leaves = spec.inputs()
    assert isinstance(leaves[1], CronInput)
    assert leaves[1].repo == "p_tick" and leaves[1].overwrite
    assert spec.input_branches() == [("data", "master"), ("p_tick", "master")]


def test_cron_explicit_repo_is_kept() -> None:
    spec = load_spec(base(input={"cron": {"name": "tick", "spec": "@daily", "repo": "ticks"}}))
    assert spec.input.cron is not None and spec.input.cron.repo == "ticks"


@pytest.mark.parametrize(
    "expr", ["@every 1m30s", "@every 500ms", "@hourly", "@DAILY", "0 0 * * 1-5"]
)
def test_cron_specs_accepted(expr: str) -> None:
    spec = load_spec(base(input={"cron": {"name": "t", "spec": expr}}))
    assert spec.input.cron is not None


@pytest.mark.parametrize(
    "expr",
    ["@every", "@every 10", "@every forever", "@sometimes", "* * * *", "0 0 * * * *", "61 * * * *"],
)
def test_bad_cron_specs_name_the_field(expr: str) -> None:
    message = error_of(base(input={"cron": {"name": "t", "spec": expr}}))
    assert "input.cron.spec: " in message


def test_cron_start_is_rfc3339() -> None:
    spec = load_spec(
        base(input={"cron": {"name": "t", "spec": "@hourly", "start": "2024-01-31T10:00:00+01:00"}})
    )
    assert spec.input.cron is not None and spec.input.cron.start == "2024-01-31T09:00:00Z"
    [data] = parse_specs(
        "pipeline: {name: p}\ntransform: {cmd: [x]}\n"
        "input: {cron: {name: t, spec: '@hourly', start: 2024-01-31T00:00:00Z}}\n"
    )
    yaml_spec = load_spec(data)
    assert yaml_spec.input.cron is not None and yaml_spec.input.cron.start == "2024-01-31T00:00:00Z"
    assert "input.cron.start: 'yesterday' is not an RFC 3339 time" in error_of(
        base(input={"cron": {"name": "t", "spec": "@hourly", "start": "yesterday"}})
    )
    assert "input.cron.start: 2024-01-31T00:00:00 has no time zone" in error_of(
        base(input={"cron": {"name": "t", "spec": "@hourly", "start": "2024-01-31T00:00:00"}})
    )


def test_default_cron_repo_too_long() -> None:
    message = error_of(
        base(pipeline={"name": "p" * 60}, input={"cron": {"name": "tick", "spec": "@hourly"}})
    )
    assert "input.cron.repo: the default repo name" in message and "set repo" in message


# --- canonical form and hash ---------------------------------------------------------------


def full_spec() -> dict[str, Any]:
    return {
        "pipeline": {"name": "p"},
        "description": "all the fields",
        "metadata": {"annotations": {"a": "1"}, "labels": {"l": "2"}},
        "transform": {
            "cmd": ["python3", "/app.py"],
            "stdin": ["x"],
            "env": {"K": "V"},
            "image": "img",
            "workingDir": "/w",
            "errCmd": ["true"],
            "acceptReturnCode": [3],
            "user": "u",
        },
        "input": {
            "cross": [
                {
                    "join": [
                        {
                            "pfs": {
                                "repo": "a",
                                "glob": "/(*).csv",
                                "joinOn": "$1",
                                "outerJoin": True,
                            }
                        },
                        {"pfs": {"repo": "b", "glob": "/(*).json", "joinOn": "$1", "lazy": True}},
                    ]
                },
                {
                    "group": [
                        {"pfs": {"repo": "c", "glob": "/(*)/*", "groupBy": "$1", "branch": "dev"}}
                    ]
                },
                {"union": [{"pfs": {"repo": "d", "glob": "/**", "commit": "f" * 32}}]},
                {"cron": {"name": "tick", "spec": "@every 1m", "start": "2024-01-01T00:00:00Z"}},
            ]
        },
        "parallelismSpec": {"constant": 3},
        "datumTries": 2,
        "datumTimeout": "90s",
        "jobTimeout": "1h",
        "outputBranch": "results",
        "egress": {"URL": "s3://bucket/out"},
        "reprocessSpec": "every_job",
        "salt": "pepper",
        "autoscaling": True,
    }


def test_canonical_round_trips() -> None:
    spec = load_spec(full_spec())
    canonical = spec.canonical()
    assert load_spec(canonical) == spec
    assert load_spec(json.loads(json.dumps(canonical))).canonical() == canonical
    assert canonical["parallelism_spec"] == {"constant": 3}
    assert canonical["datum_timeout"] == 90.0
    assert canonical["egress"] == {"url": "s3://bucket/out"}
    assert canonical["input"]["cross"][3]["cron"]["repo"] == "p_tick"
    assert "cron" not in canonical["input"]["cross"][0]  # unset kinds are left out
    keys = set(_all_keys(canonical))
    assert {"parallelism_spec", "join_on", "outer_join", "group_by", "working_dir"} <= keys
    assert not keys & {"parallelismSpec", "joinOn", "outerJoin", "URL", "workingDir", "errCmd"}


def test_canonical_fills_defaults() -> None:
    canonical = load_spec(base()).canonical()
    assert canonical["input"]["pfs"] == {
        "repo": "data",
        "glob": "/*",
        "name": "data",
        "branch": "master",
        "join_on": "",
        "outer_join": False,
        "group_by": "",
        "lazy": False,
        "empty_files": False,
    }
    assert canonical["datum_tries"] == 3
    assert canonical["reprocess_spec"] == "until_success"
    assert canonical["parallelism_spec"] == {"constant": 1}
    assert canonical["metadata"] == {"annotations": {}, "labels": {}}


def test_spec_hash_is_stable_and_spelling_independent() -> None:
    a = load_spec(json.loads(EDGES_JSON))
    b = load_spec(parse_specs(EDGES_YAML)[0])
    assert spec_hash(a) == spec_hash(b)
    assert len(spec_hash(a)) == 64 and int(spec_hash(a), 16) >= 0
    explicit = json.loads(EDGES_JSON)
    explicit["datum_tries"] = 3
    explicit["input"]["pfs"]["branch"] = "master"
    assert spec_hash(load_spec(explicit)) == spec_hash(a)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["transform"].update(cmd=["python3", "/other.py"]),
        lambda d: d["transform"].update(image="pachyderm/opencv:2"),
        lambda d: d["input"]["pfs"].update(glob="/"),
        lambda d: d["input"]["pfs"].update(branch="dev"),
        lambda d: d.update(datum_tries=4),
        lambda d: d.update(description="other"),
        lambda d: d.update(salt="x"),
        lambda d: d.update(parallelism_spec={"constant": 2}),
    ],
)
def test_spec_hash_changes_when_a_field_changes(change: Any) -> None:
    data = json.loads(EDGES_JSON)
    changed = copy.deepcopy(data)
    change(changed)
    assert spec_hash(load_spec(changed)) != spec_hash(load_spec(data))


def test_models_validate_on_their_own() -> None:
    pfs = PfsInput(repo="images", glob="/*")
    assert pfs.name == "images"
    assert PipelineSpec.model_validate(load_spec(base()).canonical()) == load_spec(base())


def _all_keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        keys = [k for k in value if isinstance(k, str)]
        return keys + [k for v in value.values() for k in _all_keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _all_keys(v)]
    return []


def test_s3_inputs_and_s3_out_follow_pachyderms_rules() -> None:
    s3_in = {"pfs": {"repo": "images", "glob": "/", "s3": True}}
    spec = load_spec(base(input=s3_in, s3_out=True))
    assert spec.s3_out is True and spec.inputs()[0].s3 is True
    crossed = load_spec(base(input={"cross": [s3_in, {"pfs": {"repo": "b", "glob": "/*"}}]}))
    assert [getattr(leaf, "s3", None) for leaf in crossed.inputs()] == [True, None]
    # Specs without the fields keep their canonical form (and so their hash).
    assert "s3_out" not in load_spec(base()).canonical()
    assert "s3" not in load_spec(base()).canonical()["input"]["pfs"]
    cases = [
        (base(input={"pfs": {"repo": "images", "glob": "/*", "s3": True}}),
         "input.pfs.glob: an s3 input is read whole through the S3 gateway: its glob must be '/'"),
        (base(input={"pfs": {"repo": "images", "glob": "/", "s3": True, "lazy": True}}),
         "input.pfs.lazy: an s3 input is read through the S3 gateway"),
        (base(input={"union": [s3_in, {"pfs": {"repo": "b", "glob": "/*"}}]}),
         "input.union: s3 inputs in union expressions are not supported"),
        (base(input={"join": [{"pfs": {"repo": "a", "glob": "/", "s3": True, "join_on": ""}},
                              {"pfs": {"repo": "b", "glob": "/*"}}]}),
         "input.join: s3 inputs in join expressions are not supported"),
        ({"pipeline": {"name": "p"}, "transform": {"cmd": ["x"]}, "spout": {}, "s3_out": True},
         "s3_out: s3_out is for pipelines that run on datums"),
        (base(input=s3_in, service={"internal_port": 80, "external_port": 8080}),
         "input: a service reads its inputs from /pfs"),
        (base(input={"pfs": {"repo": "images", "name": "out", "glob": "/", "s3": True}},
              s3_out=True),
         "input name 'out' is reserved"),  # (so the bucket out is never an input's)
    ]  # fmt: skip
    for data, expected in cases:
        assert expected in error_of(data)
