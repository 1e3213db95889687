"""``tusk merge``: merge a branch (or any commit) into another branch; ``tusk log``: history
through both parents of merge commits."""

from __future__ import annotations

from pathlib import Path

import click

from tusk.cli import render
from tusk.cli.core import emit, fail, get_client, output_option, wants_json
from tusk.cli.parse import Duration
from tusk.errors import MergeConflict
from tusk.sdk import MergeResult


def _resolutions(items: tuple[str, ...]) -> dict[str, str | Path]:
    out: dict[str, str | Path] = {}
    for item in items:
        path, sep, how = item.partition("=")
        if not sep or not path or not how:
            fail(f"--resolve {item!r}: give PATH=ours, PATH=theirs or PATH=FILE")
        if how in ("ours", "theirs"):
            out[path] = how
            continue
        local = Path(how).expanduser()
        if not local.is_file():
            fail(f"--resolve {path}={how}: no such local file (give ours, theirs or a file)")
        out[path] = local
    return out


@click.command("merge")
@click.argument("source", metavar="REPO@BRANCH")
@click.option("--into", required=True, metavar="BRANCH", help="The branch to merge into.")
@click.option("-m", "--message", default=None, help="The merge commit's description.")
@click.option(
    "--strategy",
    type=click.Choice(["fail", "ours", "theirs"]),
    default="fail",
    show_default=True,
    help="Conflicts not settled by --resolve: fail (commit nothing), ours (keep the target's "
    "version) or theirs (take the source's).",
)
@click.option(
    "--resolve",
    "resolve",
    multiple=True,
    metavar="PATH=ours|theirs|FILE",
    help="Settle one conflicting path: keep ours, take theirs, or the content of a local FILE.",
)
@click.option("--dry-run", is_flag=True, help="List conflicts and changes; commit nothing.")
@click.option(
    "--run-pipelines",
    is_flag=True,
    help="Run every downstream pipeline on the merge first; move the branch and every output "
    "branch together (one commit set) only if all jobs succeed.",
)
@click.option(
    "--timeout",
    type=Duration(),
    default=None,
    metavar="DURATION",
    help="With --run-pipelines: give up after this long (e.g. 30s, 5m); default: no limit.",
)
@output_option
@click.pass_context
def merge(
    ctx: click.Context,
    source: str,
    into: str,
    message: str | None,
    strategy: str,
    resolve: tuple[str, ...],
    dry_run: bool,
    run_pipelines: bool,
    timeout: float | None,
) -> None:
    """Merge REPO@BRANCH (or a commit or tag) into another branch of REPO.

    A three-way merge at file level against the merge base: what only one side changed is
    taken, paths both changed differently are conflicts. The merge is one commit with two
    parents (the branch's head, then the source); pipelines downstream run once on it.
    Conflicts are listed with their base, ours and theirs content hashes and sizes; with
    --strategy fail (the default) nothing is committed until each has a --resolve.

    Checks that gate the branch run on the merge result before it moves. With
    --run-pipelines, the pipelines downstream run on the merge first, on a temporary branch,
    and the branch and their output branches move together only if every job succeeded.
    """
    client = get_client(ctx)
    how = _resolutions(resolve)
    try:
        result = client.merge(
            source, into, message=message, strategy=strategy, resolve=how, dry_run=dry_run,
            run_pipelines=run_pipelines, timeout=timeout,
        )  # fmt: skip
    except MergeConflict:
        if not wants_json(ctx):
            try:  # list them, as a dry run sees them now
                listing = client.merge(source, into, strategy=strategy, resolve=how, dry_run=True)
                render.merge_conflicts(listing.conflicts, err=True)
            except Exception:  # the error itself is what matters
                pass
        raise
    emit(ctx, result, lambda: _show(result, source))


def _show(r: MergeResult, source: str) -> None:
    if r.up_to_date:
        click.echo(f"{r.repo}@{r.into} already holds {source} ({r.source}): nothing to merge")
        return
    if r.conflicts:
        render.merge_conflicts(r.conflicts)
    bases = f" (criss-cross: {len(r.bases)} merge bases, used {r.base})" if len(r.bases) > 1 else ""
    if r.commit is None:
        unresolved = sum(1 for c in r.conflicts if c.resolution is None)
        click.echo(
            f"dry run: {r.taken} path(s) would come from {source} ({r.source}), "
            f"{len(r.conflicts)} conflict(s), {unresolved} unresolved{bases}"
        )
        return
    for run in r.checks:
        click.echo(f"check {run.name}: {run.state} in {run.duration:.2f} s")
    for out in r.outputs:
        click.echo(f"moved with it: {out.repo}@{out.branch} to {out.id}")
    click.echo(
        f"merged {source} into {r.into}: commit {r.commit.id} "
        f"({r.taken} path(s) taken, {len(r.conflicts)} conflict(s) resolved){bases}"
    )


@click.command("log")
@click.argument("address", metavar="REPO@REF")
@click.option("-n", "--number", type=click.IntRange(min=1), default=None, help="At most N commits.")
@output_option
@click.pass_context
def log(ctx: click.Context, address: str, number: int | None) -> None:
    """A branch's or commit's history through every parent, newest first.

    A merge commit's block shows both its parents, and the commits merged in follow."""
    commits = get_client(ctx).log(address, number=number)
    emit(ctx, commits, lambda: render.commit_log(commits))
