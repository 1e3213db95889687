"""Branch triggers (issue 21): a branch follows another branch of its repo and moves when the
conditions hold (size, commit count, cron on a fake clock), chains of them, pipelines whose
``input.pfs.trigger`` makes them run in batches, and every bad input refused with nothing
changed. In-process; tests/api/test_triggers_remote.py runs them against a server."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tusk
from schemahelpers import undo_migrations
from tusk.errors import BranchNotFound, InvalidArgument, InvalidSpec, TuskError

ENGINES = ("sqlite", "postgresql")

HOUR = 3600.0


@pytest.fixture
def c(home: Path, engine: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tusk.Client]:
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    client = tusk.Client(home)
    client.create_repo("data")
    yield client
    client.close()


def put(c: tusk.Client, name: str, size: int = 1, repo: str = "data") -> str:
    """One commit on master adding ``size`` bytes; its id."""
    return c.put_file(f"{repo}@master:/{name}", b"x" * size).commit.id


def head(c: tusk.Client, address: str) -> str | None:
    return c.inspect_branch(address).head


def test_a_commit_count_trigger_moves_every_n_commits(c: tusk.Client) -> None:
    put(c, "a")
    info = c.create_branch("data@staging", head="master", trigger="master", trigger_commits=3)
    assert info.trigger is not None and info.trigger.branch == "master"
    assert info.trigger.commits == 3 and info.trigger.describe() == "master on commits(3)"
    start = info.head
    put(c, "b")
    put(c, "c")
    assert head(c, "data@staging") == start
    third = put(c, "d")
    assert head(c, "data@staging") == third  # three commits since its head
    put(c, "e")
    assert head(c, "data@staging") == third
    assert c.list_files("data@staging:/") and c.get_file("data@staging:/d") == b"x"


def test_a_size_trigger_moves_once_enough_data_came(c: tusk.Client) -> None:
    c.create_branch("data@staging", trigger="master", trigger_size="1KB")
    assert head(c, "data@staging") is None
    put(c, "a", 600)
    assert head(c, "data@staging") is None
    second = put(c, "b", 600)  # 1200 bytes since an empty branch: >= 1000
    assert head(c, "data@staging") == second
    put(c, "c", 999)
    assert head(c, "data@staging") == second
    # Pachyderm compares the commits' sizes: a deletion then a put of the same bytes is no growth.
    c.delete_file("data@master:/c")
    put(c, "c2", 999)
    assert head(c, "data@staging") == second
    last = put(c, "d", 2)
    assert head(c, "data@staging") == last


def test_a_trigger_without_conditions_follows_every_commit(c: tusk.Client) -> None:
    info = c.create_branch("data@mirror", trigger="master")
    assert info.trigger is not None and info.trigger.describe() == "master on every commit"
    for name in "abc":
        commit = put(c, name)
        assert head(c, "data@mirror") == commit


def test_any_condition_or_all_of_them(c: tusk.Client) -> None:
    c.create_branch("data@any", trigger="master", trigger_size="100", trigger_commits=3)
    c.create_branch(
        "data@all", trigger="master", trigger_size="100", trigger_commits=3, trigger_all=True
    )
    both = c.inspect_branch("data@all").trigger
    assert both is not None and both.describe() == "master on size(100) and commits(3)"
    big = put(c, "big", 150)  # size holds, commits do not
    assert head(c, "data@any") == big
    assert head(c, "data@all") is None
    put(c, "b")
    last = put(c, "c")  # three commits and 152 bytes since the empty branch
    assert head(c, "data@all") == last
    assert head(c, "data@any") == big  # 2 bytes and 2 commits since big: neither holds


def test_a_cron_trigger_moves_on_the_clock_given(c: tusk.Client) -> None:
    pfs = c._pfs
    now = [1_000_000.0]  # a fake clock, for the trigger's commits and ticks alike
    pfs.clock = lambda: now[0]
    first = put(c, "a")
    c.create_branch("data@hourly", head="master", trigger="master", trigger_cron="@every 1h")
    assert c.inspect_branch("data@hourly").trigger.fired_at == now[0]  # type: ignore[union-attr]
    now[0] += 60
    second = put(c, "b")
    assert head(c, "data@hourly") == first  # no tick since it was set
    now[0] += HOUR - 120
    assert pfs.fire_cron_triggers() == []
    now[0] += 61
    assert pfs.fire_cron_triggers() == ["data@hourly"]
    assert head(c, "data@hourly") == second
    assert c.inspect_branch("data@hourly").trigger.fired_at == now[0]  # type: ignore[union-attr]
    # Nothing new: a due tick moves nothing and writes nothing.
    now[0] += 3 * HOUR
    assert pfs.fire_cron_triggers() == []
    assert c.inspect_branch("data@hourly").trigger.fired_at == now[0] - 3 * HOUR  # type: ignore[union-attr]
    # A tick passed while nothing was new: the next commit moves it at once.
    third = put(c, "c")
    assert head(c, "data@hourly") == third
    # Also with a time passed in (as the scheduler does).
    fourth = put(c, "d")
    assert head(c, "data@hourly") == third
    assert pfs.fire_cron_triggers(now[0] + 2 * HOUR) == ["data@hourly"]
    assert head(c, "data@hourly") == fourth


def test_cron_and_commits_together_wait_for_both(c: tusk.Client) -> None:
    pfs = c._pfs
    c.create_branch(
        "data@batch", trigger="master", trigger_cron="0 * * * *", trigger_commits=2,
        trigger_all=True,
    )  # fmt: skip
    set_at = c.inspect_branch("data@batch").trigger.fired_at  # type: ignore[union-attr]
    assert set_at is not None
    put(c, "a")
    later = set_at + 2 * HOUR
    assert pfs.fire_cron_triggers(later) == []  # the tick passed, but one commit only
    assert pfs.fire_cron_triggers(later + 1) == []  # same heads: not evaluated again
    second = put(c, "b")
    assert head(c, "data@batch") is None  # two commits, but no tick by the real clock
    assert pfs.fire_cron_triggers(later) == ["data@batch"]
    assert head(c, "data@batch") == second


def test_a_changed_trigger_is_evaluated_again_on_the_same_heads(c: tusk.Client) -> None:
    pfs = c._pfs
    pfs.clock = lambda: 1_000_000.0
    c.create_branch("data@batch", trigger="master", trigger_cron="@hourly", trigger_commits=2,
                    trigger_all=True)  # fmt: skip
    first = put(c, "a")
    assert pfs.fire_cron_triggers(1_000_000.0 + 2 * HOUR) == []  # one commit of two
    c.create_branch("data@batch", trigger="master", trigger_cron="@hourly", trigger_commits=1,
                    trigger_all=True)  # fmt: skip
    assert pfs.fire_cron_triggers(1_000_000.0 + 2 * HOUR) == ["data@batch"]
    assert head(c, "data@batch") == first


def test_triggers_chain(c: tusk.Client) -> None:
    c.create_branch("data@staging", trigger="master", trigger_commits=2)
    c.create_branch("data@prod", trigger="staging")
    c.create_branch("data@archive", trigger="prod", trigger_commits=3)
    put(c, "a")
    assert head(c, "data@staging") is None and head(c, "data@prod") is None
    second = put(c, "b")
    assert head(c, "data@staging") == second
    assert head(c, "data@prod") == second  # in the same transaction
    assert head(c, "data@archive") is None  # two commits since its empty head: not three
    put(c, "c")
    fourth = put(c, "d")
    assert head(c, "data@staging") == head(c, "data@prod") == fourth
    assert head(c, "data@archive") == fourth  # four commits since its empty head


def test_a_cycle_is_one_clear_error_and_changes_nothing(c: tusk.Client) -> None:
    c.create_branch("data@staging", trigger="master")
    c.create_branch("data@prod", trigger="staging")
    with pytest.raises(InvalidArgument, match=r"cycle \(master -> prod -> staging -> master\)"):
        c.create_branch("data@master", trigger="prod")
    with pytest.raises(BranchNotFound):
        c.inspect_branch("data@master")  # not even created
    with pytest.raises(InvalidArgument, match="cycle"):
        c.create_branch("data@staging", trigger="prod")
    assert c.inspect_branch("data@staging").trigger.branch == "master"  # type: ignore[union-attr]


BAD: list[tuple[dict[str, Any], str]] = [
    ({"trigger": "master", "trigger_size": "100 furlongs"}, "'100 furlongs' is not a size"),
    ({"trigger": "master", "trigger_size": "0"}, "at least one byte"),
    ({"trigger": "master", "trigger_cron": "every hour"}, "'every hour' is not a cron"),
    ({"trigger": "master", "trigger_cron": "@every 0s"}, "must be positive"),
    ({"trigger": "master", "trigger_commits": -2}, "commits must be a positive number"),
    ({"trigger": "SELF"}, "cannot trigger on itself"),
    ({"trigger": "other@master"}, "same repo"),
    ({"trigger": "bad name"}, "invalid branch name"),
    ({"trigger_commits": 3}, "need the branch to follow"),
    ({"trigger": "master", "provenance": ["other@master"]}, "cannot also have a trigger"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_triggers_are_refused_and_change_nothing(
    c: tusk.Client, kwargs: dict[str, Any], message: str
) -> None:
    c.create_repo("other")
    put(c, "a")
    c.create_branch("data@staging", head="master", trigger="master", trigger_commits=5)
    before = c.inspect_branch("data@staging")
    for branch in ("staging", "fresh"):
        args: dict[str, Any] = {k: branch if v == "SELF" else v for k, v in kwargs.items()}
        with pytest.raises(InvalidArgument, match=re.escape(message)):
            c.create_branch(f"data@{branch}", **args)
    assert c.inspect_branch("data@staging") == before
    with pytest.raises(BranchNotFound):
        c.inspect_branch("data@fresh")


def test_a_branch_with_provenance_takes_no_trigger(c: tusk.Client) -> None:
    c.create_repo("out")
    c.create_branch("out@master", provenance=["data@master"])
    with pytest.raises(InvalidArgument, match="has provenance"):
        c.create_branch("out@master", trigger="other")
    c.create_branch("data@staging", trigger="master")
    with pytest.raises(InvalidArgument, match="has a trigger"):
        c.create_branch("data@staging", provenance=["out@master"])


def test_an_open_commit_moves_nothing_until_it_is_finished(c: tusk.Client) -> None:
    c.create_branch("data@mirror", trigger="master")
    first = put(c, "a")
    commit = c.start_commit("data@master")
    c.put_file("data@master:/b", b"b")
    assert head(c, "data@mirror") == first
    c.finish_commit("data@master")
    assert head(c, "data@mirror") == commit.id


def test_deleting_a_branch_or_repo_deletes_its_trigger(c: tusk.Client) -> None:
    c.create_branch("data@staging", trigger="master")
    c.delete_branch("data@staging")
    c.create_branch("data@staging")
    assert c.inspect_branch("data@staging").trigger is None
    c.create_branch("data@staging", trigger="master", trigger_commits=2)
    # A trigger set again replaces the one before.
    again = c.create_branch("data@staging", trigger="master", trigger_size="1MB")
    assert again.trigger is not None and again.trigger.commits is None
    assert again.trigger.size == "1MB"
    c.delete_repo("data")
    c.create_repo("data")
    c.create_branch("data@staging")
    assert c.inspect_branch("data@staging").trigger is None


# Pipelines: input.pfs.trigger

COPY = 'cp -r "$TUSK_PFS"/data/. "$TUSK_PFS/out/"'


def spec(trigger: dict[str, Any], **pfs: Any) -> dict[str, Any]:
    return {
        "pipeline": {"name": "batch"},
        "input": {"pfs": {"repo": "data", "glob": "/", "trigger": trigger, **pfs}},
        "transform": {"cmd": ["sh", "-c", COPY]},
    }


def jobs(c: tusk.Client) -> list[str]:
    return [j.state for j in c.list_jobs("batch")]


def test_a_pipeline_with_a_trigger_runs_when_the_threshold_is_reached(c: tusk.Client) -> None:
    put(c, "before")  # the branch starts empty: history counts toward the first batch
    info = c.create_pipeline(spec({"branch": "master", "commits": 3}, branch="staging"))
    assert info.name == "batch"
    branch = c.inspect_branch("data@staging")
    assert branch.trigger is not None and branch.trigger.commits == 3
    assert branch.head is None and branch.subvenance == ["batch@master"]
    c.run_scheduler(once=True)
    assert jobs(c) == []
    put(c, "a")
    c.run_scheduler(once=True)
    assert jobs(c) == []
    third = put(c, "b")  # before, a, b: three commits
    assert head(c, "data@staging") == third
    c.run_scheduler(once=True)
    assert jobs(c) == ["success"]
    assert sorted(f.path for f in c.list_files("batch@master:/")) == ["/a", "/b", "/before"]
    [job] = c.list_jobs("batch")
    assert job.id != c.inspect_commit(f"data@{third}").commit_set  # a commit set of its own
    # The next batch: three more commits.
    put(c, "c")
    put(c, "d")
    c.run_scheduler(once=True)
    assert jobs(c) == ["success"]
    put(c, "e")
    c.run_scheduler(once=True)
    assert jobs(c) == ["success", "success"]
    assert c.get_file("batch@master:/e") == b"x"


def test_a_spec_trigger_in_camel_case_with_the_default_branch_and_a_cron(
    c: tusk.Client,
) -> None:
    pfs = c._pfs
    c.create_pipeline(spec({"cronSpec": "@every 1h", "size": "10B", "all": True}))
    branch = c.inspect_branch("data@batch-trigger-1")  # Pachyderm's name for it
    assert branch.trigger is not None and branch.trigger.cron_spec == "@every 1h"
    assert branch.trigger.size == "10B" and branch.trigger.all
    set_at = branch.trigger.fired_at
    assert set_at is not None
    assert c.inspect_pipeline("batch").spec["input"]["pfs"]["branch"] == "batch-trigger-1"
    put(c, "a", 20)
    c.run_scheduler(once=True)
    assert jobs(c) == []
    assert pfs.fire_cron_triggers(set_at + HOUR + 1) == ["data@batch-trigger-1"]
    c.run_scheduler(once=True)
    assert jobs(c) == ["success"]
    # Updating the pipeline with the same trigger keeps the trigger's clock.
    c.update_pipeline({**spec({"cronSpec": "@every 1h", "size": "10B", "all": True}),
                       "description": "v2"})  # fmt: skip
    after = c.inspect_branch("data@batch-trigger-1").trigger
    assert after is not None and after.fired_at == set_at + HOUR + 1


def test_the_scheduler_fires_cron_triggers_on_its_clock(
    c: tusk.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    c.create_pipeline(spec({"cron_spec": "@every 1h"}, branch="staging"))
    put(c, "a")
    c.run_scheduler(once=True)
    assert jobs(c) == []
    # The scheduler's clock, two hours on: each pass hands it to PFS.
    pfs = c._pfs
    fire = type(pfs).fire_cron_triggers
    clocks: list[float] = []

    def later(now: float | None = None) -> list[str]:
        clocks.append(now or 0.0)
        return fire(pfs, (now or time.time()) + 2 * HOUR)

    monkeypatch.setattr(pfs, "fire_cron_triggers", later)
    c.run_scheduler(once=True)
    assert clocks and abs(clocks[0] - time.time()) < 60  # the scheduler passes the time
    assert jobs(c) == ["success"]
    assert c.get_file("batch@master:/a") == b"x"


@pytest.mark.parametrize(
    ("trigger", "pfs", "message"),
    [
        ({"size": "100 furlongs"}, {}, "input.pfs.trigger.size: '100 furlongs' is not a size"),
        ({"cron_spec": "every hour"}, {}, "input.pfs.trigger.cron_spec: 'every hour'"),
        ({"branch": "staging"}, {"branch": "staging"}, "the branch it moves"),
        ({"rate_limit_spec": "@every 1h"}, {}, "use cron_spec"),
        ({"commits": -1}, {}, "negative"),
    ],
)
def test_bad_spec_triggers_are_refused_and_change_nothing(
    c: tusk.Client, trigger: dict[str, Any], pfs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidSpec, match=message):
        c.create_pipeline(spec(trigger, **pfs))
    assert c.list_pipelines() == []
    assert [b.name for b in c.list_branches("data")] == []


def test_a_spec_trigger_that_makes_a_cycle_creates_nothing(c: tusk.Client) -> None:
    c.create_branch("data@staging", trigger="master")
    with pytest.raises(TuskError, match="cycle"):
        c.create_pipeline(spec({"branch": "staging"}, branch="master"))
    assert c.list_pipelines() == []
    assert {b.name for b in c.list_branches("data")} == {"staging"}
    assert "batch" not in [r.name for r in c.list_repos()]


def test_a_store_of_schema_0009_gains_triggers(home: Path, engine: str) -> None:
    import os

    from tusk.storage.meta.store import MetaStore, sqlite_url

    with tusk.Client(home) as client:
        client.create_repo("data")
        put(client, "a")
    url = os.environ.get("TUSK_METADATA_URL") or sqlite_url(home / "tusk.db")
    store = MetaStore(url)
    with store.write() as tx:  # back to 0009: no branch_triggers (nor 0011's s3_sessions)
        undo_migrations(tx.conn, "0009")
    store.close()
    with tusk.Client(home) as client:  # opening migrates
        assert client.inspect_branch("data@master").trigger is None
        client.create_branch("data@mirror", trigger="master")
        commit = put(client, "b")
        assert head(client, "data@mirror") == commit
