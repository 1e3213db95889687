"""Plumbing shared by every command: the client, ``-o/--output``, JSON output and errors."""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, TextIO, TypeVar

import click

if TYPE_CHECKING:
    from tusk.sdk import Client

F = TypeVar("F", bound=Callable[..., Any])

OUTPUT_KEY = "tusk.output"
FORMATS = ("table", "json")

# Plural and short forms pachctl users type out of habit.
ADDRESS_KEY = "tusk.address"  # ctx.meta: the --address given to the root group, if any

NOUN_ALIASES = {
    "repos": "repo",
    "branches": "branch",
    "commits": "commit",
    "files": "file",
    "commitset": "commit-set",
    "commit-sets": "commit-set",
    "pipelines": "pipeline",
    "jobs": "job",
    "datums": "datum",
    "secrets": "secret",
    "images": "image",
    "projects": "project",
}


@dataclass
class State:
    """What the root group parsed; the client is opened on first use and closed at exit."""

    home: Path | None = None
    client: Client | None = None
    project: str | None = None  # --project (else $TUSK_PROJECT, the config file, default)
    force_protected: bool = False  # --force-protected: a clusterAdmin's write (audited)


def get_client(ctx: click.Context) -> Client:
    """The invocation's :class:`tusk.Client` (``--home`` if given, else ``$TUSK_HOME``/~/.tusk)."""
    root = ctx.find_root()
    state = root.ensure_object(State)
    if state.client is None:
        from tusk.sdk import Client

        project = state.project
        state.client = (
            Client(state.home, project=project)
            if state.home is not None
            else Client(project=project)
        )
        root.call_on_close(state.client.close)
    if state.force_protected:
        state.force_protected = False  # entered once, left when the command ends
        root.with_resource(state.client.force_protected())
    return state.client


def _store_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[OUTPUT_KEY] = value


def output_option(
    f: F,
    formats: tuple[str, ...] = FORMATS,
    help: str = "Output format: a table for people (default) or JSON for scripts.",
) -> F:
    """``-o/--output [table|json]``; accepted on the root group and on every command (a
    command with more formats gives them and its ``help``)."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(formats),
        default=None,
        expose_value=False,
        callback=_store_output,
        help=help,
    )(f)


def output_format(ctx: click.Context) -> str:
    """The format asked for; ``ctx.meta`` is shared by every context of one invocation."""
    return str(ctx.meta.get(OUTPUT_KEY, "table"))


def wants_json(ctx: click.Context) -> bool:
    return output_format(ctx) == "json"


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, list | tuple):
        return [_jsonable(x) for x in obj]
    return obj


def print_json(obj: Any) -> None:
    """A result object (``to_dict``), a list of them, or plain JSON data, to stdout."""
    click.echo(json.dumps(_jsonable(obj), indent=2))


def emit(ctx: click.Context, obj: Any, table: Callable[[], None] | None = None) -> None:
    """Print ``obj`` as JSON when ``-o json`` was asked for, else run ``table`` (if any)."""
    if wants_json(ctx):
        print_json(obj)
    elif table is not None:
        table()


def progress_log(ctx: click.Context, *, stdout_json: bool = True) -> Callable[[str], None]:
    """Progress lines: ``HH:MM:SS message`` on stderr, or JSON lines on stdout with ``-o json``
    (``stdout_json=False``: stderr always, for commands whose stdout is their answer)."""
    import threading
    import time

    as_json = stdout_json and wants_json(ctx)
    # Re-entrant: a signal handler that logs may interrupt this thread inside log().
    lock = threading.RLock()

    def log(message: str) -> None:
        now = time.time()
        with lock:
            if as_json:
                click.echo(json.dumps({"ts": now, "message": message}))
            else:
                click.echo(f"{time.strftime('%H:%M:%S', time.localtime(now))} {message}", err=True)

    return log


def run_option(f: F) -> F:
    """``--no-run`` for the wait commands."""
    return click.option(
        "--no-run",
        "no_run",
        is_flag=True,
        help="On a home where no scheduler (tusk up) runs, only wait (default: run the "
        "pending jobs in this process meanwhile, as tusk up --once would).",
    )(f)


def note_unscheduled(client: Client, what: str) -> None:
    """One stderr line when jobs were made on a home where no scheduler runs them."""
    if client.scheduler_running() is False:
        click.echo(
            f"note: no scheduler is running on {client.home}: {what} run under 'tusk up', or at "
            "the next 'tusk wait'",
            err=True,
        )


def fail(message: str) -> NoReturn:
    """Refuse bad user input the CLI itself detects (one line, exit 2)."""
    from tusk.errors import InvalidArgument

    raise InvalidArgument(message)


def source_failure(message: str) -> NoReturn:
    """A local input (list file, directory) the CLI reads itself cannot be read (exit 6)."""
    from tusk.errors import SourceError

    raise SourceError(message)


def binary_stdin() -> BinaryIO:
    return sys.stdin.buffer


def binary_stdout() -> BinaryIO:
    sys.stdout.flush()
    return sys.stdout.buffer


def text_stdin() -> TextIO:
    return sys.stdin


# Errors


class CliError(click.ClickException):
    """Any failure, shown as exactly one ``error: <message>`` line on stderr."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares a ClassVar

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _debug() -> bool:
    return os.environ.get("TUSK_DEBUG", "") not in ("", "0")


def _print_traceback(exc: BaseException) -> None:
    import traceback  # only with TUSK_DEBUG: it costs every command start-up otherwise

    traceback.print_exception(exc, file=sys.stderr)


def to_cli_error(exc: BaseException) -> CliError:
    """Map an exception escaping a command to its one-line message and exit code."""
    from tusk.errors import TuskError

    if isinstance(exc, TuskError):
        if _debug():
            _print_traceback(exc)
        return CliError(exc.shown(), exc.exit_code)
    if isinstance(exc, OSError) and exc.strerror:
        if _debug():
            _print_traceback(exc)
        where = f": {os.fsdecode(exc.filename)!r}" if exc.filename else ""
        return CliError(f"{exc.strerror}{where}", 1)
    if _debug():
        _print_traceback(exc)
    return CliError(f"internal error: {exc!r}", 1)


def _passes_through(exc: BaseException) -> bool:
    """Click's own exceptions, and a closed pipe (click exits quietly on EPIPE)."""
    if isinstance(exc, click.ClickException | click.exceptions.Exit | click.Abort):
        return True
    return isinstance(exc, OSError) and exc.errno == errno.EPIPE


class AliasGroup(click.Group):
    """A verb (``list``, ``create``...) whose nouns also answer to their plural forms.

    Commands may be registered lazily (:meth:`add_lazy`): by ``module:attribute`` under
    ``tusk.cli.commands``, imported only when the command is looked up, so ``tusk list repo``
    loads the repo commands and nothing of the pipeline, auth or report ones. A lazy command
    can carry its one-line summary, so the group's ``--help`` lists it without the import
    (tests/cli/test_cli_units.py checks every summary against the command's own).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, str | None]] = {}

    def add_lazy(self, name: str, target: str, summary: str | None = None) -> None:
        """Register command ``name`` as ``module:attribute`` of ``tusk.cli.commands``."""
        self.lazy[name] = (target, summary)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = cmd_name if cmd_name in self.commands or cmd_name in self.lazy else None
        if name is None and cmd_name in NOUN_ALIASES:
            name = NOUN_ALIASES[cmd_name]
        if name is None:
            return None
        if name not in self.commands and name in self.lazy:
            import importlib

            module, _, attr = self.lazy[name][0].partition(":")
            command = getattr(importlib.import_module(f"tusk.cli.commands.{module}"), attr)
            self.add_command(command, name)
        return self.commands.get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's, but a lazy command with a summary is listed without importing it."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            lazy = self.lazy.get(name)
            if name not in self.commands and lazy is not None and lazy[1] is not None:
                # Shortened as click shortens a command's own help.
                rows.append((name, click.Command(name, help=lazy[1]).get_short_help_str(limit)))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd is not None else name), cmd, rest


class TuskGroup(AliasGroup):
    """The root group: turns every exception from a command into one ``error:`` line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if _passes_through(exc):
                raise
            raise to_cli_error(exc) from exc
