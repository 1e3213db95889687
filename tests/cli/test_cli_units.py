"""The CLI's own helpers: sizes, times, durations, put planning and progress bars."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from clihelpers import Tusk, Write

from tusk.cli import progress
from tusk.cli.parse import PutPlan, local_total, parse_duration, plan_put, read_source_list
from tusk.cli.render import ago, human_size
from tusk.errors import InvalidArgument
from tusk.sdk.client import Client


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1258291, "1.2 MiB"),
        (5 * 1024**3, "5.0 GiB"),
        (None, "-"),
    ],
)
def test_human_size(n: int | None, text: str) -> None:
    assert human_size(n) == text


def test_ago() -> None:
    now = 1_000_000.0
    assert ago(now, now) == "just now"
    assert ago(now - 1, now) == "1 second ago"
    assert ago(now - 3, now) == "3 seconds ago"
    assert ago(now - 120, now) == "2 minutes ago"
    assert ago(now - 3 * 3600, now) == "3 hours ago"
    assert ago(now - 86400, now) == "1 day ago"
    assert ago(now - 90 * 86400, now).count("-") == 2  # ISO date past a month
    assert ago(None) == "-"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("90", 90),
        ("0.2", 0.2),
        ("45s", 45),
        ("30m", 1800),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2d", 172800),
        ("500ms", 0.5),
        ("1w", 604800),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "1x", "-1", "1h-", "one"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_read_source_list() -> None:
    assert read_source_list("a\n\n  b  \n# c\nhttp://x/y\n") == ["a", "b", "http://x/y"]


def test_plan_put() -> None:
    assert plan_put("r@b:/x", ["f.csv"], [], False) == PutPlan("file", "r@b:/x", (("", "f.csv"),))
    assert plan_put("r@b", ["d/f.csv"], [], False).address == "r@b:/f.csv"
    assert plan_put("r@b:/dir/", ["d/f.csv"], [], False).address == "r@b:/dir/f.csv"
    assert plan_put("r@b:/", ["http://h/p/f.csv?x=1"], [], False).address == "r@b:/f.csv"
    assert plan_put("r@b:/x", ["-"], [], False).items == (("", "-"),)
    many = plan_put("r@b:/in", ["a/1.txt"], ["b/2.txt"], False)
    assert many == PutPlan("files", "r@b:/in", (("1.txt", "a/1.txt"), ("2.txt", "b/2.txt")))
    assert plan_put("r@b", [], ["one.txt"], False).kind == "files"
    assert plan_put("r@b:/x", ["data/"], [], True) == PutPlan("dir", "r@b:/x", (("", "data/"),))
    assert plan_put("r@b:/x/", ["some/data"], [], True).address == "r@b:/x/"


@pytest.mark.parametrize(
    ("address", "files", "listed", "recursive"),
    [
        ("r@b", [], [], False),
        ("r@b", ["-"], [], False),
        ("r@b:/d/", ["-"], [], False),
        ("r@b:/d", ["-", "a"], [], False),
        ("r@b:/d", ["x/a", "y/a"], [], False),
        ("r@b", ["http://host/"], [], False),
        ("r@b", ["d1", "d2"], [], True),
        ("r@b", ["-"], [], True),
        ("r@b", ["http://h/d"], [], True),
    ],
)
def test_plan_put_rejects(
    address: str, files: list[str], listed: list[str], recursive: bool
) -> None:
    with pytest.raises(InvalidArgument):
        plan_put(address, files, listed, recursive)


def test_local_total(write: Write, tmp_path: Path) -> None:
    a = write("d/a", b"x" * 10)
    write("d/e/b", b"y" * 5)
    assert local_total(plan_put("r@b", [str(a)], [], False)) == 10
    assert local_total(plan_put("r@b", [], [str(a), str(tmp_path / "src/d/e/b")], False)) == 15
    assert local_total(plan_put("r@b", [str(tmp_path / "src" / "d")], [], True)) == 15
    assert local_total(plan_put("r@b:/x", ["-"], [], False)) is None
    assert local_total(plan_put("r@b", ["http://h/f"], [], False)) is None


def test_progress_bar_draws_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "stderr_is_tty", lambda: True)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    with progress.progress_bar("put", 2048) as cb:
        assert cb is not None
        cb(1024)
        cb(1024)
    monkeypatch.setattr(progress, "stderr_is_tty", lambda: False)
    with progress.progress_bar("put", 10) as cb:
        assert cb is None


class _Spy:
    """Wraps a Client method to record the bytes reported through ``progress=``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.reported: list[int] = []
        self.got_callback: list[bool] = []
        original = getattr(Client, name)

        def spy(client: Client, *args: Any, **kwargs: Any) -> Any:
            cb = kwargs.get("progress")
            self.got_callback.append(cb is not None)
            if cb is not None:

                def counting(n: int) -> None:
                    self.reported.append(n)
                    cb(n)

                kwargs["progress"] = counting
            return original(client, *args, **kwargs)

        monkeypatch.setattr(Client, name, spy)


def test_progress_only_on_a_terminal(
    tusk: Tusk, write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tusk("create", "repo", "r")
    data = bytes(range(256)) * 2000
    src = write("big.bin", data)
    put = _Spy(monkeypatch, "put_file")
    tusk("put", "file", "r@master:/a", "-f", str(src))
    assert put.got_callback == [False]

    monkeypatch.setattr(progress, "stderr_is_tty", lambda: True)
    tusk("put", "file", "r@master:/b", "-f", str(src))
    assert put.got_callback[-1] is True and sum(put.reported) == len(data)

    put_dir = _Spy(monkeypatch, "put_dir")
    write("tree/x", data)
    write("tree/y/z", data)
    tusk("put", "file", "r@master:/t", "-r", "-f", str(tmp_path / "src" / "tree"))
    assert put_dir.got_callback == [True] and sum(put_dir.reported) == 2 * len(data)

    get = _Spy(monkeypatch, "get_file_to")
    out = tusk("get", "file", "r@master:/b").stdout_bytes
    assert out == data and sum(get.reported) == len(data)
    get_dir = _Spy(monkeypatch, "get_dir")
    tusk("get", "file", "r@master:/t", "-r", "-o", str(tmp_path / "t"))
    assert sum(get_dir.reported) == 2 * len(data)


def test_progress_log_survives_a_signal_handler_that_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM handler logs "stopping" in the main thread, maybe while that thread is inside
    log() writing a line: the lock must be re-entrant, or ``tusk up`` never stops."""
    import threading

    import click

    from tusk.cli.core import progress_log

    lines: list[str] = []
    real_echo = click.echo

    def echo(message: Any = None, **kw: Any) -> None:
        lines.append(str(message))
        if len(lines) == 1:  # the "signal" arrives while the first line is being written
            log("SIGTERM: stopping")
        real_echo(message, **kw)

    ctx = click.Context(click.Command("up"))
    log = progress_log(ctx)
    monkeypatch.setattr(click, "echo", echo)
    done = threading.Event()

    def run() -> None:
        log("REST API off")
        done.set()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    assert done.wait(10), "log() deadlocked when re-entered"
    assert [line.split(" ", 1)[1] for line in lines] == ["REST API off", "SIGTERM: stopping"]


def test_every_lazy_command_loads_under_its_name_with_its_summary() -> None:
    """main.py registers commands by module:function with the summary `tusk --help` shows
    without importing them; each must import, carry that name, and have that summary."""
    import click

    from tusk.cli import main
    from tusk.cli.core import AliasGroup

    groups: list[AliasGroup] = [main.cli, *main.NOUNS]
    checked = 0
    for group in groups:
        ctx = click.Context(group)
        for name, (_target, summary) in dict(group.lazy).items():
            cmd = group.get_command(ctx, name)
            assert cmd is not None and cmd.name == name, name
            if summary is not None:
                assert summary == cmd.get_short_help_str(limit=10**6), name
            checked += 1
    assert checked == sum(map(len, main.NOUNS.values())) + len(main.COMMANDS)
    # And no verb is also registered lazily under the same name.
    assert not set(main.cli.lazy) & {verb.name for verb in main.NOUNS}
