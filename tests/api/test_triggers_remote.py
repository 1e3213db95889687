"""Branch triggers over the REST API and through a real ``tusk up`` (issue 21): the create
branch route and BranchInfo carry the trigger, bad triggers are one 400 line that changes
nothing, and a pipeline reading a triggered branch runs in batches."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apihelpers import Live, spawn
from click.testing import CliRunner, Result

from tusk.cli.main import cli
from tusk.errors import InvalidArgument

ENGINES = ("sqlite",)
API = "/api/v1"


@pytest.fixture
def web(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{live.url}{API}") as c:
        yield c


def test_the_branch_route_takes_and_shows_a_trigger(live: Live, web: httpx.Client) -> None:
    c = live.client()
    c.create_repo("data")
    c.put_file("data@master:/a", b"a")
    body = {"name": "staging", "trigger": {"branch": "master", "commits": 2, "size": "1KB"}}
    r = web.post("/repos/data/branches", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["trigger"]["commits"] == 2 and r.json()["trigger"]["size"] == "1KB"
    assert r.json()["head"] is None
    # The SDK over HTTP: a trigger on a new branch, the BranchInfo decoded with it.
    info = c.create_branch("data@mirror", trigger="master", trigger_cron="@hourly")
    assert info.trigger is not None and info.trigger.cron_spec == "@hourly"
    assert c.inspect_branch("data@staging").trigger.describe() == (  # type: ignore[union-attr]
        "master on size(1KB) or commits(2)"
    )
    first = c.put_file("data@master:/b", b"b").commit.id  # a, b: two commits
    assert c.inspect_branch("data@staging").head == first
    listed = {b.name: b.trigger for b in c.list_branches("data")}
    assert listed["master"] is None and listed["staging"] is not None


BAD: list[tuple[dict[str, Any], str]] = [
    ({"branch": "master", "size": "100 furlongs"}, "'100 furlongs' is not a size"),
    ({"branch": "master", "cron_spec": "every hour"}, "'every hour' is not a cron expression"),
    ({"branch": "staging"}, "a branch cannot trigger on itself"),
    ({"branch": "prod"}, "would form a cycle (staging -> prod -> staging)"),
    ({"branch": "other@master"}, "other@master is a branch of another repo"),
    ({"branch": "master", "commits": -1}, ""),  # refused by the body's schema
]


@pytest.mark.parametrize(("trigger", "message"), BAD, ids=[m or "schema" for _, m in BAD])
def test_bad_triggers_are_400_and_change_nothing(
    live: Live, web: httpx.Client, trigger: dict[str, Any], message: str
) -> None:
    c = live.client()
    c.create_repo("data")
    c.create_repo("other")
    c.create_branch("data@staging", trigger="master")
    c.create_branch("data@prod", trigger="staging")
    before = c.list_branches("data")
    r = web.post("/repos/data/branches", json={"name": "staging", "trigger": trigger})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] in ("invalid_argument", "invalid_name") and message in error["message"]
    assert "\n" not in error["message"]
    assert c.list_branches("data") == before
    if message:  # the SDK raises the same class with the same line
        with pytest.raises(InvalidArgument, match="trigger"):
            c.create_branch("data@staging", trigger=trigger["branch"],
                            trigger_size=trigger.get("size"),
                            trigger_cron=trigger.get("cron_spec"))  # fmt: skip
        assert c.list_branches("data") == before


def test_openapi_names_the_trigger(live: Live) -> None:
    doc = httpx.get(f"{live.url}/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"branch", "size", "commits", "cron_spec", "all"} <= set(
        schemas["Trigger"]["properties"]
    )
    assert "trigger" in schemas["BranchCreate"]["properties"]
    assert "trigger" in schemas["BranchInfo"]["properties"]
    assert "fired_at" in schemas["BranchTrigger"]["properties"]


def run(*args: str, code: int = 0, input: str | bytes | None = None) -> Result:
    r = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    assert r.exit_code == code, f"tusk {' '.join(args)} -> {r.exit_code}\n{r.stdout}\n{r.stderr}"
    return r


def test_a_triggered_pipeline_under_tusk_up(tmp_path: Path) -> None:
    """The CLI against a real ``tusk up``: a branch trigger set with flags, a pipeline whose
    ``input.pfs.trigger`` (camelCase) runs only every third commit, and the bad inputs."""
    spec = tmp_path / "batch.yaml"
    spec.write_text(
        "pipeline: {name: batch}\n"
        "input:\n"
        "  pfs: {repo: data, glob: /, branch: staging,\n"
        "        trigger: {branch: master, commits: 3, cronSpec: '@yearly'}}\n"
        "transform:\n"
        '  cmd: [sh, -c, \'ls "$TUSK_PFS/data" | sort > "$TUSK_PFS/out/files"\']\n'
    )
    proc, url = spawn(tmp_path / "home", "up", "--port", "0", env={"TUSK_SANDBOX": "none"})
    try:
        a = ("--address", url)
        run(*a, "create", "repo", "data")
        run(*a, "create", "pipeline", "-f", str(spec))
        shown = run(*a, "inspect", "branch", "data@staging").stdout
        assert "master on commits(3) or cron(@yearly)" in shown
        for name in ("one", "two"):
            run(*a, "put", "file", f"data@master:/{name}", "-f", "-", input=name.encode())
        assert json.loads(run(*a, "list", "job", "-p", "batch", "-o", "json").stdout) == []
        put = json.loads(run(*a, "put", "file", "data@master:/three", "-f", "-", "-o", "json",
                             input=b"3").stdout)  # fmt: skip
        staging = json.loads(run(*a, "inspect", "branch", "data@staging", "-o", "json").stdout)
        assert staging["head"] == put["commit"]["id"]
        done = json.loads(
            run(*a, "wait", "commit", "batch@master", "--timeout", "60s", "-o", "json").stdout
        )
        assert done["state"] == "finished"
        assert run(*a, "get", "file", "batch@master:/files").stdout == "one\nthree\ntwo\n"
        jobs = json.loads(run(*a, "list", "job", "-p", "batch", "-o", "json").stdout)
        assert [j["state"] for j in jobs] == ["success"]
        # A chained trigger set with the flags, and the bad inputs: one line, exit 2.
        run(*a, "create", "branch", "data@prod", "--trigger", "staging", "--trigger-size", "1")
        state = run(*a, "list", "branch", "data", "-o", "json").stdout
        for args in (
            ("data@x", "--trigger", "master", "--trigger-size", "100 furlongs"),
            ("data@x", "--trigger", "master", "--trigger-cron", "every hour"),
            ("data@staging", "--trigger", "prod"),
            ("data@x", "--trigger", "x"),
        ):
            r = run(*a, "create", "branch", *args, code=2)
            assert r.stderr.startswith("error: trigger of ") and r.stderr.count("\n") == 1
        assert run(*a, "list", "branch", "data", "-o", "json").stdout == state
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
