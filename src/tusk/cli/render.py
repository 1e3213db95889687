"""Tables for people: human sizes, relative times, and one layout per result type.

rich is imported inside the functions that draw, never at module import.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from tusk.sdk import (
        BranchInfo,
        CommitInfo,
        DiffEntry,
        FileInfo,
        FsckReport,
        GcReport,
        RepoInfo,
    )

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(n: int | None) -> str:
    """``0 B``, ``512 B``, ``1.2 KiB``, ``3.4 GiB``; ``-`` for unknown."""
    if n is None:
        return "-"
    size = float(n)
    for unit in _UNITS:
        if abs(size) < 1024 or unit == _UNITS[-1]:
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def iso(ts: float | None) -> str:
    """Local time as ``2024-05-01T12:34:56``; ``-`` for none."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).isoformat(timespec="seconds")


def ago(ts: float | None, now: float | None = None) -> str:
    """``just now``, ``3 seconds ago``, ``1 hour ago``; ISO time past 30 days or in the future."""
    if ts is None:
        return "-"
    delta = (time.time() if now is None else now) - ts
    if delta < -1 or delta >= 30 * 86400:
        return iso(ts)
    if delta < 1:
        return "just now"
    for unit, seconds in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if delta >= seconds:
            count = int(delta // seconds)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def when(ts: float | None) -> str:
    """ISO time followed by the relative time, for inspect views."""
    return "-" if ts is None else f"{iso(ts)} ({ago(ts)})"


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _console() -> Console:
    from rich.console import Console

    console = Console(file=sys.stdout, highlight=False, emoji=False, markup=False, soft_wrap=False)
    if not console.is_terminal:
        # Pipes and files get whole lines, never wrapped or cut at 80 columns.
        console.width = 10_000
    return console


def _print(renderable: object) -> None:
    """Print through rich, without the trailing spaces rich pads table cells with."""
    console = _console()
    with console.capture() as captured:
        console.print(renderable)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    console.file.write(text + "\n")
    console.file.flush()


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A borderless table with a bold header, like ``pachctl list``."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for name in columns:
        table.add_column(name, no_wrap=True, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    _print(table)


def print_fields(fields: Sequence[tuple[str, str]]) -> None:
    """``Key: value`` lines for one object, like ``pachctl inspect``."""
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for key, value in fields:
        grid.add_row(Text(f"{key}:"), Text(value))
    _print(grid)


def _join(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "-"


# Repos


def repo_table(repos: Sequence[RepoInfo]) -> None:
    print_table(
        ("NAME", "CREATED", "SIZE (MASTER)", "DESCRIPTION"),
        [(r.name, ago(r.created_at), human_size(r.size), first_line(r.description)) for r in repos],
    )


def repo_fields(r: RepoInfo) -> None:
    print_fields(
        [
            ("Name", r.name),
            ("Description", r.description or "-"),
            ("Created", when(r.created_at)),
            ("Size of master", human_size(r.size)),
            ("Branches", _join(r.branches)),
        ]
    )


# Branches


def branch_table(branches: Sequence[BranchInfo]) -> None:
    print_table(
        ("BRANCH", "HEAD", "PROVENANCE"),
        [(b.name, b.head or "-", _join(b.provenance)) for b in branches],
    )


def branch_fields(b: BranchInfo) -> None:
    print_fields(
        [
            ("Name", f"{b.repo}@{b.name}"),
            ("Head", b.head or "-"),
            ("Created", when(b.created_at)),
            ("Provenance", _join(b.provenance)),
            ("Subvenance", _join(b.subvenance)),
        ]
    )


# Commits


def commit_table(commits: Sequence[CommitInfo]) -> None:
    print_table(
        ("REPO", "BRANCH", "COMMIT", "STARTED", "FINISHED", "SIZE", "FILES", "DESCRIPTION"),
        [
            (
                c.repo,
                c.branch or "-",
                c.id,
                ago(c.started_at),
                ago(c.finished_at) if c.finished else c.state,
                human_size(c.size),
                str(c.files),
                first_line(c.description),
            )
            for c in commits
        ],
    )


def commit_fields(c: CommitInfo) -> None:
    print_fields(
        [
            ("Commit", f"{c.repo}@{c.id}"),
            ("Original branch", c.branch or "-"),
            ("Heads of", _join(c.branches)),
            ("Parent", c.parent or "-"),
            ("Children", _join(c.children)),
            ("State", c.state),
            ("Started", when(c.started_at)),
            ("Finished", when(c.finished_at)),
            ("Size", human_size(c.size)),
            ("Files", str(c.files)),
            ("Commit set", c.commit_set),
            ("Provenance", _join(c.provenance)),
            ("Subvenance", _join(c.subvenance)),
            ("Description", c.description or "-"),
        ]
    )


# Files


def file_table(files: Sequence[FileInfo]) -> None:
    print_table(
        ("NAME", "TYPE", "SIZE"),
        [
            (
                f.path + ("/" if f.type == "dir" and f.path != "/" else ""),
                f.type,
                human_size(f.size),
            )
            for f in files
        ],
    )


def file_fields(f: FileInfo) -> None:
    print_fields(
        [
            ("Path", f.path),
            ("Commit", f"{f.repo}@{f.commit}"),
            ("Type", f.type),
            ("Size", human_size(f.size)),
            ("Files", str(f.files)),
            ("Hash", f.hash),
            ("Chunks", str(f.chunks)),
        ]
    )


def diff_table(entries: Sequence[DiffEntry]) -> None:
    marks = {"added": "+", "removed": "-", "changed": "~"}
    print_table(
        ("", "PATH", "CHANGE", "OLD SIZE", "NEW SIZE"),
        [
            (
                marks.get(e.change, "?"),
                e.path,
                e.change,
                human_size(e.old_size),
                human_size(e.new_size),
            )
            for e in entries
        ],
    )


# Maintenance


def fsck_counts(report: FsckReport) -> str:
    return ", ".join(f"{v} {k}" for k, v in report.counts.items())


def gc_fields(r: GcReport) -> None:
    print_fields(
        [
            ("Dry run", "yes (nothing was deleted)" if r.dry_run else "no"),
            ("Tree nodes", str(r.nodes_deleted)),
            ("Chunks", str(r.chunks_deleted)),
            ("Packs", str(r.packs_deleted)),
            ("Temp files", str(r.temp_files_deleted)),
            ("Would free" if r.dry_run else "Freed", human_size(r.bytes_freed)),
        ]
    )


def version_table(version: str) -> None:
    print_table(("COMPONENT", "VERSION"), [("tusk", version)])
