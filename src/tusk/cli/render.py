"""Tables for people: human sizes, relative times, and one layout per result type.

rich is imported inside the functions that draw, never at module import.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tusk.units import human_size

if TYPE_CHECKING:
    from rich.console import Console
    from rich.tree import Tree

    from tusk.sdk import (
        BranchInfo,
        CachedImage,
        CommitInfo,
        DatumInfo,
        DiffEntry,
        FileInfo,
        FsckReport,
        GcReport,
        JobInfo,
        LineageStep,
        LogLine,
        MergeConflictInfo,
        MergeSide,
        PipelineInfo,
        ProjectInfo,
        RepoInfo,
        RetentionRule,
    )


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


def _console(err: bool = False) -> Console:
    from rich.console import Console

    console = Console(
        file=sys.stderr if err else sys.stdout,
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=False,
    )
    if not console.is_terminal:
        # Pipes and files get whole lines, never wrapped or cut at 80 columns.
        console.width = 10_000
    return console


def _print(renderable: object, err: bool = False) -> None:
    """Print through rich, without the trailing spaces rich pads table cells with."""
    console = _console(err)
    with console.capture() as captured:
        console.print(renderable)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    console.file.write(text + "\n")
    console.file.flush()


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]], err: bool = False) -> None:
    """A borderless table with a bold header, like ``pachctl list`` (``err``: on stderr):
    columns two spaces apart, as wide as their widest cell; a cell's lines stack in its
    column. Written directly (rich's table costs a command ~35 ms of imports); only a table
    wider than the terminal it is shown on goes through rich, which folds the cells."""
    rows = [list(row) for row in rows]
    out = sys.stderr if err else sys.stdout
    lines = _layout([list(columns), *rows], gap=2, bold_first_row=_is_terminal(out))
    if lines is None:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for name in columns:
            table.add_column(name, no_wrap=True, overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        _print(table, err)
        return
    out.write("".join(line + "\n" for line in lines))
    out.flush()


def print_fields(fields: Sequence[tuple[str, str]]) -> None:
    """``Key: value`` lines for one object, like ``pachctl inspect`` (a key "" continues the
    line above); directly, as :func:`print_table`, through rich only when too wide."""
    cells = [[f"{key}:" if key else "", value] for key, value in fields]
    lines = _layout(cells, gap=1, bold_first_column=_is_terminal(sys.stdout))
    if lines is None:
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        for key, value in cells:
            grid.add_row(Text(key), Text(value))
        _print(grid)
        return
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


_BOLD, _PLAIN = "\x1b[1m", "\x1b[0m"


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def _layout(
    rows: Sequence[Sequence[str]],
    gap: int,
    bold_first_row: bool = False,
    bold_first_column: bool = False,
) -> list[str] | None:
    """The lines of ``rows`` as columns ``gap`` spaces apart, trailing spaces stripped; None
    when they are wider than the terminal (the caller folds them with rich)."""
    split = [[cell.splitlines() or [""] for cell in row] for row in rows]
    ncols = max((len(row) for row in rows), default=0)
    widths = [0] * ncols
    for row in split:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], *(_cells(line) for line in cell))
    total = sum(widths) + gap * max(ncols - 1, 0)
    if (bold_first_row or bold_first_column) and total > shutil.get_terminal_size().columns:
        return None
    lines: list[str] = []
    pad = " " * gap
    for r, row in enumerate(split):
        for k in range(max(len(cell) for cell in row) if row else 0):
            parts = []
            for i, cell in enumerate(row):
                text = cell[k] if k < len(cell) else ""
                fill = " " * (widths[i] - _cells(text)) if i < len(row) - 1 else ""
                if text and ((bold_first_row and r == 0) or (bold_first_column and i == 0)):
                    text = f"{_BOLD}{text}{_PLAIN}"
                parts.append(text + fill)
            lines.append(pad.join(parts).rstrip())
    return lines


def _cells(text: str) -> int:
    """Columns ``text`` takes in a terminal: East Asian wide characters take two."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def _join(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "-"


# Repos


def project_of(name: str) -> str:
    """The project of a stored repo or pipeline name (``research/images``: research)."""
    return name.rpartition("/")[0] or "default"


def repo_table(repos: Sequence[RepoInfo], projects: bool = False) -> None:
    """Repos by NAME as addressed (``project/repo`` outside default); ``projects``: with a
    PROJECT column first, as ``tusk list repo --all-projects`` shows them."""
    print_table(
        (*(("PROJECT",) if projects else ()), "NAME", "CREATED", "SIZE (MASTER)", "DESCRIPTION"),
        [
            (
                *((project_of(r.name),) if projects else ()),
                r.name,
                ago(r.created_at),
                human_size(r.size),
                first_line(r.description),
            )
            for r in repos
        ],
    )


# Projects


def project_table(projects: Sequence[ProjectInfo], current: str = "") -> None:
    """Projects; the current one (--project, $TUSK_PROJECT) is marked with ``*``."""
    print_table(
        ("ACTIVE", "PROJECT", "REPOS", "CREATED", "DESCRIPTION"),
        [
            (
                "*" if p.name == current else "",
                p.name,
                str(len(p.repos)),
                ago(p.created_at),
                first_line(p.description),
            )
            for p in projects
        ],
    )


def project_fields(p: ProjectInfo) -> None:
    print_fields(
        [
            ("Name", p.name),
            ("Description", p.description or "-"),
            ("Created", when(p.created_at)),
            ("Repos", _join(p.repos)),
        ]
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
        ("BRANCH", "HEAD", "PROVENANCE", "TRIGGER"),
        [
            (
                b.name,
                b.head or "-",
                _join(b.provenance),
                b.trigger.describe() if b.trigger is not None else "-",
            )
            for b in branches
        ],
    )


def branch_fields(b: BranchInfo) -> None:
    print_fields(
        [
            ("Name", f"{b.repo}@{b.name}"),
            ("Head", b.head or "-"),
            ("Created", when(b.created_at)),
            ("Provenance", _join(b.provenance)),
            ("Subvenance", _join(b.subvenance)),
            *([("Trigger", b.trigger.describe())] if b.trigger is not None else []),
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


def commit_log(commits: Sequence[CommitInfo]) -> None:
    """``git log``'s shape: one block per commit, a merge's two parents on its ``Merge:`` line."""
    import click

    for i, c in enumerate(commits):
        if i:
            click.echo("")
        heads = f" ({', '.join(c.branches)})" if c.branches else ""
        click.echo(f"commit {c.id}{heads}")
        if c.merge_parent is not None:
            click.echo(f"Merge: {c.parent} {c.merge_parent}")
        click.echo(f"Date:   {iso(c.finished_at or c.started_at)}  {c.state}, "
                   f"{human_size(c.size)} in {c.files} file(s)")  # fmt: skip
        for line in (c.description or "").splitlines() or [""]:
            click.echo(f"    {line}".rstrip())


def merge_conflicts(conflicts: Sequence[MergeConflictInfo], err: bool = False) -> None:
    def side(s: MergeSide) -> str:
        if s.type is None:
            return "(absent)"
        kind = "dir " if s.type == "dir" else ""
        return f"{kind}{(s.hash or '')[:12]} {human_size(s.size or 0)}"

    print_table(
        ("CONFLICT", "BASE", "OURS", "THEIRS", "RESOLUTION"),
        [
            (c.path, side(c.base), side(c.ours), side(c.theirs), c.resolution or "unresolved")
            for c in conflicts
        ],
        err,
    )


def commit_fields(c: CommitInfo) -> None:
    print_fields(
        [
            ("Commit", f"{c.repo}@{c.id}"),
            ("Original branch", c.branch or "-"),
            ("Heads of", _join(c.branches)),
            ("Parent", c.parent or "-"),
            *([("Merged", c.merge_parent)] if c.merge_parent else []),
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
            ("Repacked", f"{r.packs_repacked} packs ({human_size(r.bytes_rewritten)} rewritten)"),
            ("Temp files", str(r.temp_files_deleted)),
            ("Scratch", f"{r.scratch_deleted} folders"),
            ("S3 uploads", f"{r.uploads_expired} abandoned, expired"),
            ("Images", f"{r.images_deleted} unused ({human_size(r.image_bytes_freed)})"),
            ("Leftovers", f"{r.leftovers_removed} (what killed merges and checks left)"),
            (
                "Would expire" if r.dry_run else "Expired",
                f"{len(r.expired)} commits, {r.jobs_expired} jobs (retention; "
                f"{r.kept_for_lineage} kept for lineage)",
            ),
            *(("", name) for name in r.expired),
            ("Would free" if r.dry_run else "Freed", human_size(r.bytes_freed)),
        ]
    )


def retention_table(rules: Sequence[RetentionRule]) -> None:
    from tusk.units import human_duration

    print_table(
        ("REPO", "KEEP LAST", "KEEP WITHIN", "KEEP TAGGED", "SET"),
        [
            (
                r.repo,
                str(r.keep_last) if r.keep_last is not None else "-",
                human_duration(r.keep_within) if r.keep_within is not None else "-",
                "yes" if r.keep_tagged else "no",
                ago(r.updated_at),
            )
            for r in rules
        ],
    )


# Images


def image_table(images: Sequence[CachedImage]) -> None:
    """Cached images by short digest (docker's IMAGE ID), as ``tusk list image`` shows them."""
    print_table(
        ("DIGEST", "REFERENCES", "ARCH", "SIZE", "UNPACKED"),
        [
            (
                i.short,
                _join(i.references),
                i.architecture or "-",
                human_size(i.size),
                "yes" if i.unpacked else "no",
            )
            for i in images
        ],
    )


def image_fields(i: CachedImage) -> None:
    import shlex

    print_fields(
        [
            ("Digest", i.digest),
            ("References", "\n".join(i.references) or "-"),
            ("Platform", f"{i.os or '?'}/{i.architecture or '?'}"),
            ("Size", human_size(i.size)),
            ("Unpacked", "yes" if i.unpacked else "no (on its first datum)"),
            ("Entrypoint", shlex.join(i.entrypoint) if i.entrypoint else "-"),
            ("Cmd", shlex.join(i.cmd) if i.cmd else "-"),
            ("Working dir", i.working_dir or "/"),
            ("User", i.user or "-"),
            ("Env", "\n".join(i.env) or "-"),
        ]
    )


def version_table(version: str) -> None:
    print_table(("COMPONENT", "VERSION"), [("tusk", version)])


# Pipelines, jobs, datums, logs, lineage

DATUM_PREFIX = 12  # datum ids are 64 hex digits; tables show this many


def short_datum(datum_id: str) -> str:
    return datum_id[:DATUM_PREFIX] if datum_id else "-"


def duration(seconds: float | None) -> str:
    """``0.4s``, ``12s``, ``3m04s``, ``2h05m``; ``-`` for unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{max(seconds, 0):.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _span(start: float | None, end: float | None) -> float | None:
    if start is None:
        return None
    return (end if end is not None else time.time()) - start


def _cmd(spec: dict[str, Any]) -> str:
    import shlex

    cmd = (spec.get("transform") or {}).get("cmd") or []
    return shlex.join(str(part) for part in cmd) if cmd else "-"


def code_summary(code: dict[str, Any]) -> str:
    """``git 1a2b3c4d5e6f (origin main), spec /x/edges.yaml``: where a pipeline's code came from."""
    parts = []
    if code.get("sha"):
        where = " ".join(str(code[k]) for k in ("remote", "branch") if code.get(k))
        parts.append(f"git {str(code['sha'])[:12]}" + (f" ({where})" if where else ""))
    if code.get("spec_file"):
        parts.append(f"spec {code['spec_file']}")
    for key, value in code.items():
        if key not in ("sha", "remote", "branch", "spec_file") and value not in (None, ""):
            parts.append(f"{key} {value}")
    return ", ".join(parts) or "-"


def pipeline_table(pipelines: Sequence[PipelineInfo]) -> None:
    print_table(
        ("NAME", "VERSION", "STATE", "INPUT", "LAST JOB", "CREATED", "DESCRIPTION"),
        [
            (
                p.name,
                str(p.version),
                _pipeline_state(p),
                p.input,
                p.last_job_state or "-",
                ago(p.created_at),
                first_line(p.description),
            )
            for p in pipelines
        ],
    )


def _pipeline_state(p: PipelineInfo) -> str:
    """``running``, or a spout's ``running (spout crashed, 3 restarts)``, a service's."""
    if p.process_state is None:
        return p.state
    kind = "spout" if "spout" in p.spec else "service"
    restarts = f", {p.restarts} restart{'s' if p.restarts != 1 else ''}" if p.restarts else ""
    return f"{p.state} ({kind} {p.process_state}{restarts})"


def pipeline_fields(p: PipelineInfo) -> None:
    image = (p.spec.get("transform") or {}).get("image")
    last = f"{p.name}@{p.last_job} ({p.last_job_state})" if p.last_job else "-"
    print_fields(
        [
            ("Name", p.name),
            ("Description", p.description or "-"),
            ("Version", str(p.version)),
            ("State", _pipeline_state(p)),
            *([("Process", p.process_detail)] if p.process_detail else []),
            ("Input", p.input),
            ("Output", f"{p.name}@{p.output_branch}"),
            ("Transform", _cmd(p.spec)),
            *([("Image", str(image))] if image else []),
            ("Created", when(p.created_at)),
            ("Updated", when(p.updated_at)),
            ("Last job", last),
            *[("Resources" if i == 0 else "", line) for i, line in enumerate(p.resources)],
        ]
    )


def pipeline_history_table(p: PipelineInfo) -> None:
    """One row per version of the spec, oldest first; REPROCESS says whether the salt changed
    (every datum runs again under that version)."""
    rows = []
    previous_salt = None
    for v in sorted(p.versions, key=lambda v: v.version):
        reprocess = "-" if previous_salt is None else ("yes" if v.salt != previous_salt else "no")
        previous_salt = v.salt
        code = dict(v.origin.get("git") or {})
        if v.origin.get("spec_file"):
            code["spec_file"] = v.origin["spec_file"]
        rows.append(
            (str(v.version), ago(v.created_at), v.spec_hash[:12], reprocess, code_summary(code))
        )
    print_table(("VERSION", "CREATED", "SPEC HASH", "REPROCESS", "SOURCE"), rows)


def job_table(jobs: Sequence[JobInfo]) -> None:
    print_table(
        (
            "PIPELINE",
            "JOB",
            "VERSION",
            "STATE",
            "STARTED",
            "DURATION",
            "DATUMS",
            "PROCESSED",
            "SKIPPED",
            "FAILED",
            "REASON",
        ),
        [
            (
                j.pipeline,
                j.id,
                str(j.version),
                j.state,
                ago(j.started_at),
                duration(_span(j.started_at, j.finished_at)),
                str(j.datums_total),
                str(j.processed),
                str(j.skipped),
                str(j.failed),
                first_line(j.reason),
            )
            for j in jobs
        ],
    )


def job_fields(j: JobInfo) -> None:
    print_fields(
        [
            ("Job", f"{j.pipeline}@{j.id}"),
            ("Pipeline version", str(j.version)),
            ("State", j.state),
            ("Reason", j.reason or "-"),
            ("Output commit", f"{j.pipeline}@{j.output_commit}"),
            ("Input commits", _join(j.input_commits)),
            *([("Image", j.image_digest)] if j.image_digest else []),
            ("Created", when(j.created_at)),
            ("Started", when(j.started_at)),
            ("Finished", when(j.finished_at)),
            ("Duration", duration(_span(j.started_at, j.finished_at))),
            ("Datums", str(j.datums_total)),
            ("Processed", str(j.processed)),
            ("Skipped", str(j.skipped)),
            ("Failed", str(j.failed)),
            ("Recovered", str(j.recovered)),
        ]
    )


def datum_file(f: dict[str, Any]) -> str:
    """``repo:/path`` of one file of a datum."""
    return f"{f.get('repo', f.get('input_name', '?'))}:{f.get('path', '?')}"


def dry_run_table(datums: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """(pipeline, datum) pairs, as ``create pipeline --dry-run`` finds them."""
    print_table(
        ("PIPELINE", "DATUM", "FILES"),
        [
            (name, short_datum(str(d["id"])), _join([datum_file(f) for f in d["files"]]))
            for name, d in datums
        ],
    )


def datum_table(datums: Sequence[DatumInfo]) -> None:
    print_table(
        ("DATUM", "STATE", "ATTEMPTS", "FILES", "ERROR"),
        [
            (
                short_datum(d.id),
                d.state,
                str(d.attempts),
                _join([datum_file(f) for f in d.files]),
                first_line(d.error) or "-",
            )
            for d in datums
        ],
    )


def datum_fields(d: DatumInfo) -> None:
    print_fields(
        [
            ("Datum", d.id),
            ("Job", f"{d.pipeline}@{d.job}"),
            ("State", d.state),
            ("Attempts", str(d.attempts)),
            ("Exit code", "-" if d.exit_code is None else str(d.exit_code)),
            ("Files", "\n".join(datum_file(f) for f in d.files) or "-"),
            ("Output files", "-" if d.output_files is None else str(d.output_files)),
            ("Started", when(d.started_at)),
            ("Finished", when(d.finished_at)),
            ("Duration", duration(_span(d.started_at, d.finished_at))),
            ("Error", d.error or "-"),
            ("Stderr (tail)", d.stderr_tail.rstrip("\n") or "-"),
        ]
    )


def log_line(line: LogLine) -> str:
    """``[datum-prefix] text``, as ``tusk logs`` prints each line."""
    return f"[{short_datum(line.datum)}] {line.line}"


def _file_label(s: LineageStep) -> str:
    label = f"{s.repo}@{s.commit}:{s.path}"
    return label if s.pipeline is not None or s.inputs else f"{label} (original data)"


def _lineage_node(tree: Tree, s: LineageStep) -> None:
    from rich.text import Text

    if s.pipeline is None:
        if s.merge_parents:
            came = f"from {s.merged_from}" if s.merged_from else "resolved by hand"
            parents = " and ".join(s.merge_parents)
            tree.add(Text(f"merge of {parents}: this version {came}"))
        for inp in s.inputs:  # a commit that names its provenance (tusk sql --to)
            _lineage_node(tree.add(Text(f"computed from: {_file_label(inp)}")), inp)
        return
    made = [f"pipeline {s.pipeline}"]
    if s.pipeline_version is not None:
        made[0] += f" v{s.pipeline_version}"
    if s.job:
        made.append(f"job {s.pipeline}@{s.job}")
    made.append(f"datum {short_datum(s.datum)}" if s.datum else "datum unknown")
    tree.add(Text("made by: " + ", ".join(made)))
    if s.code:
        tree.add(Text("code: " + code_summary(s.code)))
    if s.image:
        pinned = f" ({s.image_digest})" if s.image_digest else " (not run: --executor host)"
        tree.add(Text(f"image: {s.image}{pinned}"))
    for inp in s.inputs:
        _lineage_node(tree.add(Text(f"input: {_file_label(inp)}")), inp)


def lineage_tree(step: LineageStep) -> None:
    """How a file was made: the job and datum that wrote it, its code, then its inputs."""
    from rich.text import Text
    from rich.tree import Tree

    tree = Tree(Text(_file_label(step)))
    _lineage_node(tree, step)
    _print(tree)
