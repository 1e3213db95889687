"""``tusk report BASE..HEAD``: files, jobs, metrics and checks between two refs, in-process,
over HTTP and through the CLI.

The pipeline graph: repo ``data``; pipeline ``score`` (glob ``/``) writes ``/metrics.json``
from the row count of data's CSV files; pipeline ``upper`` (glob ``/*``) upper-cases each
file. A second commit on master changes a.csv, adds c.csv and removes old.csv, so the
report of ``master^1..master`` has a job per pipeline and a metrics change. Branch-per-PR
data (``data@pr``) is tested on plain repos: pipelines follow the branch of their spec.
Checks (``kind: check``) are tested on data@pr: a commit they passed, then an open commit a
check kept open.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent / "api"))
sys.path.insert(0, str(Path(__file__).parent / "cli"))

from apihelpers import start_live, stop_live
from clihelpers import Tusk

from tusk import Client
from tusk.errors import BranchNotFound, CheckFailed, InvalidArgument, RepoNotFound
from tusk.sdk.report import (
    CheckRow,
    Report,
    build_report,
    flatten_metrics,
    is_metrics_path,
    load_metrics,
    parse_range,
    render_markdown,
)

SCORE = textwrap.dedent(
    """
    import json, os, pathlib
    pfs = pathlib.Path(os.environ["TUSK_PFS"])
    rows = sum(len(p.read_text().splitlines()) for p in sorted((pfs / "in").glob("*.csv")))
    out = {"train": {"loss": round(1 / rows, 4), "rows": rows}, "model": "linear", "ok": True}
    (pfs / "out" / "metrics.json").write_text(json.dumps(out))
    """
)
UPPER = 'for f in "$TUSK_PFS"/in/*; do tr a-z A-Z < "$f" > "$TUSK_PFS/out/$(basename "$f")"; done'
# Fails its datum when data has a file named "bad".
CHECK = 'test ! -e "$TUSK_PFS/in/bad" || { echo "bad row found" >&2; exit 3; }'


def pipeline(name: str, cmd: list[str], glob: str) -> dict[str, object]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": "data", "glob": glob, "name": "in"}},
        "transform": {"cmd": cmd},
    }


def build_graph(c: Client) -> tuple[str, str]:
    """Two commits on data@master with the jobs they start; returns their commit set ids."""
    c.create_repo("data")
    c.create_pipeline(pipeline("score", [sys.executable, "-c", SCORE], "/"))
    c.create_pipeline(pipeline("upper", ["sh", "-c", UPPER], "/*"))
    c.put_files(
        "data@master", [("/a.csv", b"1,2\n3,4\n"), ("/b.csv", b"5,6\n"), ("/old.csv", b"x\n")]
    )
    c.run_scheduler(once=True)
    first = c.inspect_commit("data@master").commit_set
    with c.commit("data@master") as h:
        h.put_file("/a.csv", b"1,2\n3,4\n5,6\n7,8\n")
        h.put_file("/c.csv", b"9\n")
        h.delete_file("/old.csv")
    c.run_scheduler(once=True)
    second = c.inspect_commit("data@master").commit_set
    assert {j.state for j in c.list_jobs()} == {"success"}
    return first, second


@pytest.fixture(autouse=True)
def no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUSK_SANDBOX", "none")


@pytest.fixture(params=["in-process", "http"])
def any_client(request: pytest.FixtureRequest, home: Path, engine: str) -> Iterator[Client]:
    """An in-process client, or a RemoteClient on a live server of the same home."""
    if request.param == "in-process":
        c = Client(home)
        yield c
        c.close()
        return
    live = start_live(home)
    try:
        yield live.client()  # a RemoteClient: the same methods as Client
    finally:
        stop_live(live)


def by_path(report: Report, repo: str) -> dict[str, tuple[str, int | None, int | None]]:
    [diff] = [r for r in report.repos if r.repo == repo]
    return {f.path: (f.change, f.old_size, f.new_size) for f in diff.files}


# SDK, on a pipeline graph, in-process and over HTTP


def test_report_of_the_last_commit_has_files_jobs_and_metrics(any_client: Client) -> None:
    c = any_client
    _first, second = build_graph(c)
    report = build_report(c, "master^1", "master")
    assert (report.base, report.head) == ("master^1", "master")
    assert [r.repo for r in report.repos] == ["data", "score", "upper"]  # inputs first
    data = report.repos[0]
    assert (data.added, data.removed, data.changed, data.size_delta) == (1, 1, 1, 8 + 2 - 2)
    assert (data.base_size, data.head_size, data.more) == (14, 22, 0)
    assert data.head == c.inspect_commit("data@master").id
    assert data.base == c.inspect_commit("data@master^1").id
    assert by_path(report, "data") == {
        "/a.csv": ("changed", 8, 16),
        "/c.csv": ("added", None, 2),
        "/old.csv": ("removed", 2, None),
    }
    assert by_path(report, "upper") == by_path(report, "data")
    assert by_path(report, "score") == {"/metrics.json": ("changed", 67, 69)}

    jobs = {j.pipeline: j for j in report.jobs}
    assert [j.pipeline for j in report.jobs] == ["score", "upper"]
    assert {j.id for j in report.jobs} == {second}
    assert (jobs["upper"].processed, jobs["upper"].skipped, jobs["upper"].failed) == (2, 1, 0)
    assert (jobs["upper"].datums_total, jobs["upper"].state) == (3, "success")
    assert (jobs["score"].processed, jobs["score"].skipped) == (1, 0)
    assert jobs["score"].output_commit == c.inspect_commit("score@master").id
    assert jobs["score"].duration is not None and jobs["score"].duration >= 0

    metrics = {m.key: m for m in report.metrics}
    assert sorted(metrics) == ["train.loss", "train.rows"]  # "model" and "ok" are no numbers
    loss = metrics["train.loss"]
    assert (loss.repo, loss.path, loss.old, loss.new) == ("score", "/metrics.json", 0.25, 0.1667)
    assert loss.change == -0.0833 and loss.change_pct == pytest.approx(-33.32)
    rows = metrics["train.rows"]
    assert (rows.old, rows.new, rows.change, rows.change_pct) == (4, 6, 2, 50.0)
    assert report.notes == []
    assert report.summary() == {
        "repos": 3,
        "repos_changed": 3,
        "files_added": 2,
        "files_removed": 2,
        "files_changed": 3,
        "size_delta": 18,
        "jobs": 2,
        "jobs_succeeded": 2,
        "jobs_failed": 0,
        "metrics_changed": 2,
        "checks": 0,
        "checks_passed": 0,
        "checks_failed": 0,
    }
    assert report.checks == []  # no check ran: no section, nothing in the summary line

    md = render_markdown(report)
    assert "Checks" not in md and "check" not in md.splitlines()[2]
    assert md.startswith("## Tusk report: `master^1` → `master`\n")
    assert (
        "**3** repos compared, **3** changed · files: 2 added, 2 removed, 3 changed (+18 B)"
        " · 2 jobs: 2 succeeded · 2 metrics changed"
    ) in md
    assert "| `score` | `/metrics.json` | `train.loss` | 0.25 | 0.1667 | -0.0833 (-33.3%) |" in md
    assert "| `score` | `/metrics.json` | `train.rows` | 4 | 6 | +2 (+50.0%) |" in md
    assert f"| `upper` | `{second[:12]}` | success | 2 | 1 | 0 |" in md
    assert "| changed | `/a.csv` | 8 B | 16 B | +8 B |" in md
    assert "| added | `/c.csv` | - | 2 B | +2 B |" in md
    assert "| removed | `/old.csv` | 2 B | - | -2 B |" in md


def test_commit_set_ids_compare_every_repo_they_touched(any_client: Client) -> None:
    c = any_client
    first, second = build_graph(c)
    by_set = build_report(c, first, second)
    by_branch = build_report(c, "master^1", "master")
    assert (by_set.base, by_set.head) == (first, second)
    assert (by_set.repos, by_set.jobs, by_set.metrics) == (
        by_branch.repos,
        by_branch.jobs,
        by_branch.metrics,
    )
    # One repo, by commit id; jobs are those its new commit started.
    one = build_report(c, f"data@{first}", f"data@{second}")
    assert [r.repo for r in one.repos] == ["data"]
    assert sorted(j.pipeline for j in one.jobs) == ["score", "upper"]
    assert one.metrics == []
    # Nothing between a ref and itself.
    same = build_report(c, "master", "master")
    assert [r.total for r in same.repos] == [0, 0, 0] and same.jobs == [] and same.metrics == []
    assert "Unchanged: `data`, `score`, `upper`." in render_markdown(same)


def test_failed_job_is_reported_with_its_reason(client: Client) -> None:
    client.create_repo("data")
    client.put_file("data@master:/a.csv", b"1\n")
    client.create_pipeline(pipeline("check", ["sh", "-c", CHECK], "/"))
    client.run_scheduler(once=True)
    client.put_file("data@master:/bad", b"oops\n")
    client.run_scheduler(once=True)
    # The failed job's output commit is dropped, so check@master did not move; the job is
    # HEAD's all the same: it ran for data's new commit.
    report = build_report(client, "data@master^1", "data@master")
    assert [(r.repo, r.added) for r in report.repos] == [("data", 1)]
    [job] = report.jobs
    assert (job.pipeline, job.state, job.failed, job.processed) == ("check", "failure", 1, 0)
    assert job.id == client.inspect_commit("data@master").commit_set
    assert "bad row found" in job.reason
    s = report.summary()
    assert (s["jobs"], s["jobs_succeeded"], s["jobs_failed"]) == (1, 0, 1)
    md = render_markdown(report)
    assert "1 job: 0 succeeded, **1 failed**" in md
    assert f"| `check` | `{job.id[:12]}` | failure | 0 | 0 | 1 |" in md
    assert f"- `check@{job.id[:12]}` failure: " in md


# SDK, on plain repos with a pr branch


@pytest.fixture
def pr_home(client: Client) -> Client:
    """data@master and data@pr (from master, then changed); other@master only; empty@pr."""
    c = client
    c.create_repo("data")
    c.put_files(
        "data@master",
        [
            ("/a.csv", b"1,2\n3,4\n"),
            ("/b.csv", b"5,6\n"),
            ("/old.csv", b"x\n"),
            ("/eval/metrics.yaml", b"acc: 0.5\nf1: {macro: 0.4}\nloss: 0\n"),
            ("/eval/scores.json", b'{"auc": 0.7}'),
        ],
    )
    c.create_branch("data@pr", head="master")
    with c.commit("data@pr") as h:
        h.put_file("/a.csv", b"1,2\n3,4\n5,6\n7,8\n")
        h.put_file("/c.csv", b"9\n")
        h.delete_file("/old.csv")
        h.put_file("/eval/metrics.yaml", b"acc: 0.75\nf1: {micro: 0.4}\nloss: 0.1\nname: x\n")
        h.put_file("/eval/scores.json", b'{"auc": 0.8}')
        h.put_file("/bad.metrics.json", b"{nope")
    c.create_repo("other")
    c.put_file("other@master:/x", b"x")
    c.create_repo("fresh")  # pr only: everything in it is added
    c.put_file("fresh@pr:/new.txt", b"hello")
    return c


def test_branch_range_compares_every_repo_with_head(pr_home: Client) -> None:
    report = build_report(pr_home, "master", "pr")
    assert [r.repo for r in report.repos] == ["data", "fresh"]  # other has no pr
    assert by_path(report, "data") == {
        "/a.csv": ("changed", 8, 16),
        "/bad.metrics.json": ("added", None, 5),
        "/c.csv": ("added", None, 2),
        "/eval/metrics.yaml": ("changed", 34, 45),
        "/eval/scores.json": ("changed", 12, 12),
        "/old.csv": ("removed", 2, None),
    }
    fresh = report.repos[1]
    assert fresh.base is None and by_path(report, "fresh") == {"/new.txt": ("added", None, 5)}
    assert "#### `fresh` (no `master` → " in render_markdown(report)
    assert report.jobs == []
    rows = [(m.path, m.key, m.old, m.new, m.change, m.change_pct) for m in report.metrics]
    assert rows == [
        ("/eval/metrics.yaml", "acc", 0.5, 0.75, 0.25, 50.0),
        ("/eval/metrics.yaml", "f1.micro", None, 0.4, None, None),
        ("/eval/metrics.yaml", "loss", 0, 0.1, 0.1, None),  # no percent of zero
        ("/eval/metrics.yaml", "f1.macro", 0.4, None, None, None),
    ]
    [note] = report.notes
    assert note.startswith("data@pr:/bad.metrics.json: cannot read metrics: not valid JSON")
    md = render_markdown(report)
    assert "| `data` | `/eval/metrics.yaml` | `f1.micro` | - | 0.4 | - |" in md
    assert "| `data` | `/eval/metrics.yaml` | `loss` | 0 | 0.1 | +0.1 |" in md
    assert "### Notes\n\n- data@pr:/bad.metrics.json: cannot read metrics" in md


def test_repo_filter_metrics_globs_and_row_cap(pr_home: Client) -> None:
    report = build_report(
        pr_home, "master", "pr", repos=["data"], metrics=["eval/*.json"], max_rows=2
    )
    [data] = report.repos
    assert (data.added, data.removed, data.changed, data.more) == (2, 1, 3, 4)
    assert [f.path for f in data.files] == ["/a.csv", "/bad.metrics.json"]
    assert [(m.key, m.old, m.new) for m in report.metrics] == [("auc", 0.7, 0.8)]
    assert report.notes == []  # bad.metrics.json is not a metrics file here
    assert "… and 4 more." in render_markdown(report)
    # repo@ref on one side, a bare name on the other: that repo.
    mixed = build_report(pr_home, "data@master", "pr")
    assert [r.repo for r in mixed.repos] == ["data"]


def test_open_head_commit_is_compared_as_of_its_last_finished_commit(client: Client) -> None:
    client.create_repo("data")
    client.put_file("data@master:/a", b"a")
    finished = client.inspect_commit("data@master").id
    opened = client.start_commit("data@master")
    client.put_file(f"data@{opened.id}:/b", b"b")
    # Reads see the finished commit; ancestors count from the head as it is (open or not).
    report = build_report(client, "data@master^1", "data@master")
    [data] = report.repos
    assert (data.base, data.head, data.total) == (finished, finished, 0)
    [note] = report.notes
    assert note == (
        f"data@master: commit {opened.id[:12]} is still open; "
        f"its data is compared as of {finished[:12]}"
    )


def test_bad_ranges_and_refs_raise(pr_home: Client) -> None:
    c = pr_home
    for text in ("master", "master...pr", "..pr", "master..", "a..b..c"):
        with pytest.raises(InvalidArgument, match=r"use BASE\.\.HEAD"):
            parse_range(text)
    assert parse_range("data@master^1..data@master") == ("data@master^1", "data@master")
    with pytest.raises(BranchNotFound, match="HEAD nope names no branch, commit or commit set"):
        build_report(c, "master", "nope")
    with pytest.raises(BranchNotFound, match="BASE nope names no branch"):
        build_report(c, "nope", "pr")
    with pytest.raises(RepoNotFound):
        build_report(c, "master", "pr", repos=["zzz"])
    with pytest.raises(RepoNotFound):
        build_report(c, "zzz@master", "zzz@pr")
    with pytest.raises(InvalidArgument, match="different repos"):
        build_report(c, "data@master", "other@master")
    with pytest.raises(InvalidArgument, match="drop ':path'"):
        build_report(c, "data@master:/a.csv", "data@pr")
    with pytest.raises(InvalidArgument, match="leaves out data"):
        build_report(c, "data@master", "data@pr", repos=["other"])
    with pytest.raises(InvalidArgument, match="invalid reference"):
        build_report(c, "mas/ter", "pr")


def test_head_only_history_stops_where_the_histories_meet(client: Client) -> None:
    from tusk.sdk import report as rp

    client.create_repo("data")
    for i in range(3):
        client.put_file(f"data@master:/m{i}", b"m")
    client.create_branch("data@pr", head="master^1")
    for i in range(2):
        client.put_file(f"data@pr:/p{i}", b"p")
    pr_ids = [c.id for c in client.list_commits("data@pr")]
    master_tip = client.inspect_commit("data@master").id
    assert [c.id for c in rp._history(client, "data", pr_ids[0], page=2)] == pr_ids
    pins = {
        name: rp._Pinned(name, client.inspect_commit(f"data@{name}"), tip)
        for name, tip in (("master", master_tip), ("pr", pr_ids[0]))
    }
    mine = rp._head_only(client, "data", pins["master"], pins["pr"])
    assert [c.id for c in mine] == pr_ids[:2]  # pr's own two commits, not the shared ones
    assert [c.id for c in rp._head_only(client, "data", pins["pr"], pins["master"])] == [master_tip]
    assert rp._head_only(client, "data", pins["pr"], pins["pr"]) == []
    assert len(rp._head_only(client, "data", None, pins["pr"])) == 4


# Checks

# The candidate is below $TUSK_PFS here (no sandbox); every file must be under 100 bytes,
# and the check says much first, so only the end of its log is shown.
D = 'd="$TUSK_PFS/$TUSK_CHECK_REPO"; '
CHECKS: list[dict[str, Any]] = [
    {"kind": "check", "name": "not-empty", "repo": "data", "branch": "*", "on": ["commit"],
     "cmd": ["sh", "-c", D + 'test -s "$d/rows.csv"']},
    {"kind": "check", "name": "small", "repo": "data", "branch": "pr", "on": ["commit"],
     "cmd": ["sh", "-c", D + 'for i in $(seq 1 20); do echo "line $i"; done; '
             'for f in "$d"/*; do [ "$(wc -c < "$f")" -lt 100 ] || '
             '{ echo "$(basename "$f") is too big"; exit 4; }; done']},
]  # fmt: skip


def test_report_shows_the_check_runs_of_heads(any_client: Client) -> None:
    c = any_client
    c.create_repo("data")
    c.apply([*CHECKS])
    c.put_file("data@master:/rows.csv", b"id\n1\n")
    c.create_branch("data@pr", head="master")
    landed = c.put_file("data@pr:/b.csv", b"ok\n").commit  # both checks pass
    opened = c.start_commit("data@pr")
    c.put_file("data@pr:/big.csv", b"x" * 500)
    with pytest.raises(CheckFailed, match="the commit stays open"):
        c.finish_commit("data@pr")  # small fails: pr's head stays open

    report = build_report(c, "master", "pr")
    rows = [(r.commit, r.name, r.state, r.exit_code, r.trigger) for r in report.checks]
    assert rows == [
        (opened.id, "not-empty", "passed", 0, "commit"),  # the open head first
        (opened.id, "small", "failed", 4, "commit"),
        (landed.id, "not-empty", "passed", 0, "commit"),  # then the head compared
        (landed.id, "small", "passed", 0, "commit"),
    ]
    failed = report.checks[1]
    assert (failed.repo, failed.branch) == ("data", "pr")
    assert failed.duration >= 0 and failed.started_at > 0
    tail = failed.log_tail.splitlines()
    assert len(tail) == 15
    assert tail[0] == "line 8" and tail[-2:] == ["big.csv is too big", "(sh exited with code 4)"]
    assert all(r.log_tail == "" for r in report.checks if r.passed)
    s = report.summary()
    assert (s["checks"], s["checks_passed"], s["checks_failed"]) == (4, 3, 1)
    assert report.to_dict()["checks"][1]["log_tail"] == failed.log_tail

    md = render_markdown(report)
    assert "· 4 checks: 3 passed, **1 failed**" in md.splitlines()[2]
    assert "### Checks\n\n| Repo | Commit | Check | On | State | Exit code | Duration |" in md
    assert f"| `data` | `{opened.id[:12]}` | `small` | commit | **failed** | 4 |" in md
    assert f"| `data` | `{landed.id[:12]}` | `not-empty` | commit | passed | 0 |" in md
    details = md.split("<details>")
    assert len(details) == 2  # the failed run only
    assert details[1].startswith(
        f"<summary><code>data@{opened.id[:12]}</code> check <code>small</code> failed, "
        "exit code 4: the end of its log</summary>\n\n```text\nline 8\n"
    )
    assert "line 7\n" not in md
    assert "big.csv is too big\n(sh exited with code 4)\n```\n\n</details>" in details[1]
    # The checks come before the metrics, the jobs and the files.
    assert md.index("### Checks") < md.index("### Files")

    # Another repo with no check: nothing to show for it.
    c.create_repo("plain")
    c.put_file("plain@pr:/x", b"x")
    assert [r.repo for r in build_report(c, "master", "pr").checks] == ["data"] * 4
    assert build_report(c, "plain@pr", "plain@pr").checks == []


def test_cli_github_writes_step_outputs_and_warns_outside_github(
    home: Path, tmp_path: Path
) -> None:
    """``--github`` (or $TUSK_REPORT_GITHUB): the step outputs checks and checks-failed;
    what it cannot do outside a GitHub job (no $GITHUB_OUTPUT, no repository, GitHub out of
    reach) is a warning, and the report is still made."""
    with Client(home) as c:
        c.create_repo("data")
        c.apply([*CHECKS])
        c.put_file("data@master:/rows.csv", b"id\n1\n")
    tusk = Tusk(home)
    out = tmp_path / "github_output"
    out.touch()
    no_github = dict.fromkeys(
        ("GITHUB_REPOSITORY", "GITHUB_SHA", "GITHUB_API_URL", "GITHUB_EVENT_NAME"), None
    )
    env: Any = {  # None: unset (click's CliRunner)
        **no_github,
        "GITHUB_OUTPUT": str(out),
        "TUSK_GITHUB_TOKEN": None,
        "TUSK_REPORT_GITHUB": None,
    }
    r = tusk("report", "data@master^1..data@master", env=env)
    assert "### Checks" in r.stdout and out.read_text() == ""  # not asked to
    r = tusk("report", "data@master^1..data@master", "--github", env=env)
    assert "| `data` |" in r.stdout and r.stderr == ""
    name, _, value = out.read_text().splitlines()[0].partition("=")
    assert name == "checks"
    [run] = json.loads(value)
    assert (run["name"], run["state"], run["exit_code"], run["log_tail"]) == (
        "not-empty",
        "passed",
        0,
        "",
    )
    assert out.read_text().splitlines()[1] == "checks-failed=0"

    # The action's way: $TUSK_REPORT_GITHUB; a token but no GitHub job: a warning.
    env.update({"TUSK_REPORT_GITHUB": "true", "TUSK_GITHUB_TOKEN": "t0ken"})
    r = tusk("report", "master..master", env=env)
    assert r.stderr == (
        "warning: --github: $GITHUB_REPOSITORY or $GITHUB_SHA is not set (not a GitHub "
        "Actions job): no commit statuses posted\n"
    )
    assert len(out.read_text().splitlines()) == 4
    # GitHub out of reach: one warning (the next status would not get through either).
    env.update({"GITHUB_REPOSITORY": "o/p", "GITHUB_SHA": "f" * 40})
    env["GITHUB_API_URL"] = "http://127.0.0.1:9"
    r = tusk("report", "master..master", env=env)
    [line] = r.stderr.splitlines()
    assert line.startswith(
        f"warning: cannot post the commit status tusk/check/not-empty on o/p@{'f' * 12}: Connect"
    )
    assert "t0ken" not in r.stderr
    env["GITHUB_OUTPUT"] = None
    r = tusk("report", "master..master", "--output-file", str(tmp_path / "r.md"), env=env)
    assert r.stderr.startswith("warning: --github: $GITHUB_OUTPUT is not set")
    assert (tmp_path / "r.md").read_text().startswith("## Tusk report")


def test_check_markdown_keeps_logs_inside_their_block() -> None:
    """A log with backticks cannot close the code block; HTML in names is escaped."""
    from tusk.sdk.report import render_checks

    row = CheckRow(
        "data", "c" * 32, "odd", "master", "merge", "timed out", None, 1.0, 2.5,
        "```\n</details> ````",
    )  # fmt: skip
    lines = render_checks([row])
    assert "| `data` | `cccccccccccc` | `odd` | merge | **timed out** | - | 2.5 s |" in lines
    start = lines.index("`````text")
    assert lines[start : start + 4] == ["`````text", "```", "</details> ````", "`````"]


# Metrics parsing


def test_flatten_and_load_metrics() -> None:
    nested = {"train": {"loss": 0.5, "acc": [0.1, 0.2]}, "n": 3, "ok": True, "s": "x", "z": None}
    assert flatten_metrics(nested) == {
        "train.loss": 0.5,
        "train.acc.0": 0.1,
        "train.acc.1": 0.2,
        "n": 3,
    }
    assert flatten_metrics({"a": float("nan"), "b": float("inf"), "c": 1}) == {"c": 1}
    assert load_metrics("/m.yaml", b"a:\n  b: 1.5\n  c: text\n") == {"a.b": 1.5}
    assert load_metrics("/m.json", b'{"x": {"y": 2}}') == {"x.y": 2}
    assert load_metrics("/metrics", b"x: 1\n") == {"x": 1}  # not JSON: read as YAML
    with pytest.raises(ValueError, match="not valid JSON"):
        load_metrics("/m.json", b"{")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_metrics("/m.yml", b"a: [1,\n")
    with pytest.raises(ValueError, match="not a mapping or a list"):
        load_metrics("/m.json", b"3")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_metrics("/m.json", b"\xff\xfe")


def test_metrics_globs() -> None:
    defaults = ("metrics.json", "metrics.yaml", "metrics.yml", "*.metrics.json")
    for path in ("/metrics.json", "/a/b/metrics.yml", "/eval/test.metrics.json"):
        assert is_metrics_path(path, defaults), path
    for path in ("/metrics.json.bak", "/my-metrics.json", "/metrics.csv"):
        assert not is_metrics_path(path, defaults), path
    assert is_metrics_path("/eval/x.json", ["eval/*.json"])
    assert is_metrics_path("/eval/x.json", ["/eval/*.json"])
    assert not is_metrics_path("/other/eval/x.json", ["eval/*.json"])
    assert is_metrics_path("/other/eval/x.json", ["**/eval/*.json"])


# CLI


def test_cli_markdown_json_and_files(home: Path, tmp_path: Path) -> None:
    c = Client(home)
    _first, second = build_graph(c)
    c.close()
    tusk = Tusk(home)
    md = tusk("report", "master^1..master").stdout
    assert md.startswith("## Tusk report: `master^1` → `master`\n\n**3** repos compared")
    assert "| `score` | `/metrics.json` | `train.loss` | 0.25 | 0.1667 | -0.0833 (-33.3%) |" in md
    assert f"| `upper` | `{second[:12]}` | success | 2 | 1 | 0 |" in md
    assert "| changed | `/a.csv` | 8 B | 16 B | +8 B |" in md

    doc = tusk.json("report", "master^1..master", "--repo", "data", "--repo", "score")
    assert sorted(doc) == [
        "base",
        "checks",
        "head",
        "jobs",
        "metrics",
        "notes",
        "repos",
        "summary",
    ]
    assert doc["checks"] == []
    assert [r["repo"] for r in doc["repos"]] == ["data", "score"]
    assert doc["repos"][0]["files"][0] == {
        "path": "/a.csv",
        "change": "changed",
        "old_size": 8,
        "new_size": 16,
    }
    assert [(j["pipeline"], j["processed"], j["skipped"]) for j in doc["jobs"]] == [
        ("score", 1, 0),
        ("upper", 2, 1),  # started by data's commit, though upper is not in --repo
    ]
    assert doc["metrics"][0] == {
        "repo": "score",
        "path": "/metrics.json",
        "key": "train.loss",
        "old": 0.25,
        "new": 0.1667,
        "change": -0.0833,
        "change_pct": -33.32,
    }
    assert doc["summary"]["files_added"] == 1 and doc["summary"]["metrics_changed"] == 2
    # The root group's -o works too.
    assert json.loads(tusk("-o", "json", "report", "master^1..master").stdout) == tusk.json(
        "report", "master^1..master"
    )

    out = tmp_path / "summary.md"
    out.write_text("# earlier step\n")
    r = tusk("report", "master^1..master", "--output-file", str(out), "--max-rows", "1")
    assert r.stdout == ""
    assert out.read_text().startswith("## Tusk report")
    assert "… and 2 more." in out.read_text()
    tusk("report", "master..master", "--output-file", str(out), "--append")
    text = out.read_text()
    assert text.count("## Tusk report") == 2 and "Unchanged: `data`, `score`, `upper`." in text
    jpath = tmp_path / "report.json"
    tusk("report", "master^1..master", "-o", "json", "--output-file", str(jpath))
    assert json.loads(jpath.read_text())["summary"]["jobs"] == 2


def test_cli_errors_are_one_line_with_exit_codes(home: Path) -> None:
    tusk = Tusk(home)
    tusk("create", "repo", "data")
    tusk("put", "file", "data@master:/a", "-f", "-", input=b"a")
    assert "invalid range 'master'" in tusk.fails("report", "master", code=2)
    assert "invalid range" in tusk.fails("report", "master...pr", code=2)
    assert "repo zzz not found" in tusk.fails("report", "master..master", "--repo", "zzz", code=3)
    assert tusk.fails("report", "master..nope", code=3) == (
        "HEAD nope names no branch, commit or commit set in any repo"
    )
    assert "BASE nope names no branch" in tusk.fails("report", "nope..master", code=3)
    assert "in repo data" in tusk.fails("report", "data@master..data@nope", code=3)
    assert "different repos" in tusk.fails("report", "data@master..x@master", code=2)
    assert tusk("report", "x..y", "-o", "yaml", code=2).stderr.count("Invalid value") == 1
