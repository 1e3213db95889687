"""Jsonnet pipeline templates, as pachctl takes them: ``--jsonnet FILE --arg name=value``.

Through the CLI (create/update pipeline, apply) and the SDK (read_spec_source, render_jsonnet,
read_documents), with the bad inputs a template author makes: each is one error line, exit 2,
and nothing is created.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))

from clihelpers import Tusk

from tusk.errors import InvalidArgument, InvalidSpec
from tusk.pps.spec import render_jsonnet
from tusk.sdk import read_spec_source
from tusk.sdk.gitops import parse_template_args, read_documents

pytest.importorskip("_jsonnet")

# A template as in Pachyderm's examples: a top-level function of string arguments.
EDGES = """\
function(suffix, src, glob="/*")
{
  pipeline: { name: "edges-" + suffix },
  description: "edges of " + src,
  input: {
    pfs: { repo: src, glob: glob },
  },
  transform: {
    cmd: ["python3", "/edges.py"],
    image: "pachyderm/opencv:0.0.1",
  },
}
"""

# Several pipelines from one template: a list of specs.
FANOUT = """\
function(src, count="2")
[
  {
    pipeline: { name: "copy-%d" % i },
    input: { pfs: { repo: src, glob: "/*" } },
    transform: { cmd: ["sh", "-c", "cp -r /pfs/" + src + "/* /pfs/out/"] },
  }
  for i in std.range(1, std.parseInt(count))
]
"""


@pytest.fixture
def tusk(home: Path) -> Tusk:
    t = Tusk(home)
    t("create", "repo", "images")
    return t


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    return folder


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def pipelines(tusk: Tusk) -> list[str]:
    return sorted(p["name"] for p in tusk.json("list", "pipeline"))


def repos(tusk: Tusk) -> list[str]:
    return sorted(r["name"] for r in tusk.json("list", "repo"))


# --- create / update pipeline --jsonnet -----------------------------------------------------


def test_create_pipeline_from_template_with_args(tusk: Tusk, src: Path) -> None:
    template = write(src, "edges.jsonnet", EDGES)
    [info] = tusk.json(
        "create", "pipeline", "--jsonnet", template, "--arg", "suffix=v1", "--arg", "src=images"
    )
    assert info["name"] == "edges-v1"
    assert info["spec"]["input"]["pfs"] == {**info["spec"]["input"]["pfs"], "repo": "images"}
    assert info["spec"]["input"]["pfs"]["glob"] == "/*"
    assert info["description"] == "edges of images"
    assert pipelines(tusk) == ["edges-v1"]
    # The template's origin is recorded like a spec file's.
    inspected = tusk.json("inspect", "pipeline", "edges-v1", "--history")
    assert inspected["versions"][0]["origin"]["spec_file"] == str(Path(template).resolve())


def test_update_pipeline_from_template(tusk: Tusk, src: Path) -> None:
    template = write(src, "edges.jsonnet", EDGES)
    args = ["--arg", "suffix=v1", "--arg", "src=images"]
    tusk("create", "pipeline", "--jsonnet", template, *args)
    [info] = tusk.json("update", "pipeline", "--jsonnet", template, *args, "--arg", "glob=/**")
    assert info["version"] == 2
    assert info["spec"]["input"]["pfs"]["glob"] == "/**"


def test_template_rendering_a_list_creates_every_pipeline(tusk: Tusk, src: Path) -> None:
    template = write(src, "fanout.jsonnet", FANOUT)
    created = tusk.json(
        "create", "pipeline", "--jsonnet", template, "--arg", "src=images", "--arg", "count=3"
    )
    assert [p["name"] for p in created] == ["copy-1", "copy-2", "copy-3"]
    assert pipelines(tusk) == ["copy-1", "copy-2", "copy-3"]


def test_template_from_stdin_and_dry_run(tusk: Tusk, src: Path) -> None:
    [plan] = tusk.json(
        "create",
        "pipeline",
        "--jsonnet",
        "-",
        "--arg",
        "suffix=x",
        "--arg",
        "src=images",
        "--dry-run",
        input=EDGES,
    )
    assert plan["pipeline"] == "edges-x"
    assert pipelines(tusk) == []


def test_value_after_first_equals_sign_is_kept(tusk: Tusk, src: Path) -> None:
    template = write(src, "edges.jsonnet", EDGES)
    [info] = tusk.json(
        "create",
        "pipeline",
        "--jsonnet",
        template,
        "--arg",
        "suffix=a",
        "--arg",
        "src=images",
        "--arg",
        "glob=/(*)=x",
    )
    assert info["spec"]["input"]["pfs"]["glob"] == "/(*)=x"


# --- bad input: one error line, exit 2, nothing created -------------------------------------


def test_syntax_error_shows_jsonnets_message_with_line(tusk: Tusk, src: Path) -> None:
    template = write(
        src, "bad.jsonnet", "function(src)\n{\n  pipeline: { name: 'x' },\n  a: ,\n}\n"
    )
    before = tusk.state()
    message = tusk.fails("create", "pipeline", "--jsonnet", template, "--arg", "src=a", code=2)
    assert f"{template}:4:" in message
    assert "STATIC ERROR" in message and "unexpected" in message
    assert tusk.state() == before


def test_runtime_error_shows_its_line(tusk: Tusk, src: Path) -> None:
    template = write(
        src, "boom.jsonnet", '{\n  pipeline: { name: "x" },\n  a: error "no way",\n}\n'
    )
    message = tusk.fails("create", "pipeline", "--jsonnet", template, code=2)
    assert "RUNTIME ERROR: no way" in message
    assert f"{template}:3:" in message
    assert pipelines(tusk) == []


def test_missing_argument_is_named(tusk: Tusk, src: Path) -> None:
    template = write(src, "edges.jsonnet", EDGES)
    before = tusk.state()
    message = tusk.fails("create", "pipeline", "--jsonnet", template, "--arg", "src=images", code=2)
    assert "'suffix'" in message and "--arg suffix=" in message
    assert tusk.state() == before


def test_unknown_argument_is_named(tusk: Tusk, src: Path) -> None:
    template = write(src, "edges.jsonnet", EDGES)
    message = tusk.fails(
        "create",
        "pipeline",
        "--jsonnet",
        template,
        *("--arg", "suffix=a", "--arg", "src=images", "--arg", "colour=red"),
        code=2,
    )
    assert "no parameter 'colour'" in message
    assert pipelines(tusk) == []


def test_argument_without_equals_sign(tusk: Tusk, src: Path) -> None:
    template = write(src, "edges.jsonnet", EDGES)
    before = tusk.state()
    message = tusk.fails("create", "pipeline", "--jsonnet", template, "--arg", "suffix", code=2)
    assert "invalid template argument 'suffix'" in message and "name=value" in message
    assert tusk.state() == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"just a string"', "spec 1 is a str, not a mapping"),
        ("[1, 2]", "spec 1 is a int, not a mapping"),
        ("[]", "no pipeline spec found"),
        ('{ kind: "pipeline", name: "x" }', "invalid pipeline spec"),
    ],
)
def test_template_rendering_something_that_is_not_a_spec(
    tusk: Tusk, src: Path, text: str, expected: str
) -> None:
    template = write(src, "odd.jsonnet", text)
    before = tusk.state()
    message = tusk.fails("create", "pipeline", "--jsonnet", template, code=2)
    assert expected in message
    assert tusk.state() == before


def test_second_spec_of_a_list_is_bad_nothing_created(tusk: Tusk, src: Path) -> None:
    template = write(
        src,
        "two.jsonnet",
        """[
          { pipeline: { name: "ok" }, input: { pfs: { repo: "images", glob: "/*" } },
            transform: { cmd: ["true"] } },
          { pipeline: { name: "bad" }, transform: { cmd: ["true"] } },
        ]""",
    )
    message = tusk.fails("create", "pipeline", "--jsonnet", template, code=2)
    assert "input: required field missing" in message
    assert pipelines(tusk) == []


def test_file_and_jsonnet_are_exclusive_and_arg_needs_jsonnet(tusk: Tusk, src: Path) -> None:
    template = write(src, "edges.jsonnet", EDGES)
    spec = write(src, "p.json", "{}")
    assert "not both" in tusk.fails("create", "pipeline", "-f", spec, "--jsonnet", template, code=2)
    assert "--arg is for a --jsonnet template" in tusk.fails(
        "create", "pipeline", "-f", spec, "--arg", "a=b", code=2
    )
    assert "-f/--file" in tusk.fails("update", "pipeline", code=2)
    assert "no such jsonnet template" in tusk.fails(
        "create", "pipeline", "--jsonnet", str(src / "nope.jsonnet"), code=6
    )


# --- tusk apply --------------------------------------------------------------------------


def test_apply_renders_templates_with_args_file_and_arg_wins(tusk: Tusk, src: Path) -> None:
    write(src, "edges.jsonnet", EDGES)
    write(src, "edges.args.yaml", "suffix: fromfile\nsrc: images\nglob: /*\n")
    write(src, "fanout.jsonnet", FANOUT)
    write(src, "fanout.args.yaml", "src: images\ncount: 1\n")  # a number: passed as JSON...
    write(
        src,
        "plain.yaml",
        "pipeline: {name: plain}\ninput: {pfs: {repo: images, glob: /}}\n"
        "transform: {cmd: ['true']}\n",
    )
    # ... which std.parseInt refuses: the template's own error, with its file and line.
    message = tusk.fails("apply", "-f", str(src), code=2)
    assert "fanout.jsonnet" in message and "nothing was applied" in message
    assert pipelines(tusk) == []
    write(src, "fanout.args.yaml", "src: images\ncount: '1'\n")
    out = tusk.json("apply", "-f", str(src), "--arg", "suffix=cli")
    names = sorted(c["name"] for c in out["changes"] if c["kind"] == "pipeline")
    assert names == ["copy-1", "edges-cli", "plain"]  # --arg wins over edges.args.yaml
    # The args file is not read as a spec; applying again changes nothing.
    again = tusk.json("apply", "-f", str(src), "--arg", "suffix=cli")
    assert {c["action"] for c in again["changes"]} == {"unchanged"}


def test_apply_template_problems_are_reported_together(tusk: Tusk, src: Path) -> None:
    write(src, "a.jsonnet", EDGES)  # no arguments at all
    write(src, "b.jsonnet", "{ a: }")
    before = tusk.state()
    message = tusk.fails("apply", "-f", str(src), code=2)
    assert "2 problems, nothing was applied" in message
    assert "'suffix'" in message and "b.jsonnet:1:" in message
    assert tusk.state() == before


def test_apply_args_file_without_template(tusk: Tusk, src: Path) -> None:
    write(src, "edges.jsonnet", EDGES)
    write(src, "edge.args.yaml", "suffix: a\n")
    message = tusk.fails("apply", "-f", str(src), code=2)
    assert "edge.args.yaml: arguments for edge.jsonnet, which is not there" in message


def test_apply_args_file_must_be_a_mapping(tusk: Tusk, src: Path) -> None:
    write(src, "edges.jsonnet", EDGES)
    write(src, "edges.args.yaml", "- a\n- b\n")
    message = tusk.fails("apply", "-f", str(src), code=2)
    assert "edges.args.yaml: the arguments of" in message and "mapping" in message
    write(src, "edges.args.yaml", "a: [\n")
    message = tusk.fails("apply", "-f", str(src), code=2)
    assert "edges.args.yaml:2:" in message and "invalid YAML" in message


def test_apply_bad_arg(tusk: Tusk, src: Path) -> None:
    write(src, "edges.jsonnet", EDGES)
    assert "invalid template argument '=x'" in tusk.fails(
        "apply", "-f", str(src), "--arg", "=x", code=2
    )


# --- SDK -------------------------------------------------------------------------------------


def test_sdk_read_spec_source_and_render_jsonnet(src: Path) -> None:
    template = write(src, "edges.jsonnet", EDGES)
    specs, origin = read_spec_source(template, jsonnet_args={"suffix": "s", "src": "images"})
    assert [s["pipeline"]["name"] for s in specs] == ["edges-s"]
    assert origin["spec_file"] == str(Path(template).resolve())
    # Non-string values (as an .args.yaml holds them) are passed as JSON values.
    rendered = render_jsonnet(
        write(src, "n.jsonnet", "function(n, tags) [{ n: n + 1, tags: tags }]"),
        {"n": 41, "tags": ["a"]},
    )
    assert rendered == [{"n": 42, "tags": ["a"]}]
    with pytest.raises(InvalidSpec, match="needs the argument 'suffix'"):
        read_spec_source(template, jsonnet_args={"src": "images"})
    # A .jsonnet file is a template even without arguments.
    with pytest.raises(InvalidSpec, match="needs the argument"):
        read_spec_source(template)


def test_sdk_read_documents_and_client(client: Any, src: Path) -> None:
    client.create_repo("images")
    write(src, "edges.jsonnet", EDGES)
    write(src, "edges.args.yaml", "suffix: file\nsrc: images\n")
    docs = read_documents([src], jsonnet_args={"suffix": "sdk"})
    assert [d.spec["pipeline"]["name"] for d in docs] == ["edges-sdk"]
    assert docs[0].source == str(src / "edges.jsonnet")
    result = client.apply(list(docs))
    assert [c.name for c in result.changes if c.kind == "pipeline"] == ["edges-sdk"]
    # apply_files reads the args file alone.
    result = client.apply_files([src], dry_run=True)
    assert {c.name for c in result.changes if c.action == "create"} == {"edges-file"}


def test_parse_template_args() -> None:
    assert parse_template_args(["a=1", "b=x=y", "c=", "a=2"]) == {"a": "2", "b": "x=y", "c": ""}
    with pytest.raises(InvalidArgument, match="name=value"):
        parse_template_args(["novalue"])


def test_jsonnet_is_not_imported_by_commands_that_do_not_use_it(tmp_path: Path) -> None:
    spec = tmp_path / "p.json"
    spec.write_text(
        json.dumps(
            {
                "pipeline": {"name": "p"},
                "input": {"pfs": {"repo": "images", "glob": "/*"}},
                "transform": {"cmd": ["true"]},
            }
        )
    )
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from tusk.cli.main import cli\n"
        f"home = {str(tmp_path / 'home')!r}\n"
        "r = CliRunner()\n"
        "assert r.invoke(cli, ['--home', home, 'create', 'repo', 'images']).exit_code == 0\n"
        f"res = r.invoke(cli, ['--home', home, 'create', 'pipeline', '-f', {str(spec)!r}])\n"
        "assert res.exit_code == 0, res.output\n"
        f"res = r.invoke(cli, ['--home', home, 'apply', '-f', {str(spec)!r}])\n"
        "assert res.exit_code == 0, res.output\n"
        "print('_jsonnet' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip().splitlines()[-1] == "False"
