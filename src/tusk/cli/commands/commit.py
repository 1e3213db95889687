"""``start|finish|list|inspect|wait|squash|delete commit`` and ``inspect commit-set``."""

from __future__ import annotations

import click

from tusk.cli import render
from tusk.cli.core import (
    emit,
    get_client,
    output_option,
    print_json,
    progress_log,
    run_option,
    wants_json,
)
from tusk.cli.parse import Duration


@click.command("commit")
@click.argument("address", metavar="REPO@BRANCH")
@click.option("--parent", default=None, metavar="REF", help="Start from this commit, not the head.")
@click.option("-d", "--description", default="", help="A description of the commit.")
@output_option
@click.pass_context
def start_commit(ctx: click.Context, address: str, parent: str | None, description: str) -> None:
    """Open a commit on a branch and print its id; puts to the branch go into it."""
    info = get_client(ctx).start_commit(address, parent=parent, description=description)
    emit(ctx, info, lambda: click.echo(info.id))


@click.command("commit")
@click.argument("address", metavar="REPO@BRANCH|REPO@ID")
@click.option("-d", "--description", default=None, help="Replace the commit's description.")
@output_option
@click.pass_context
def finish_commit(ctx: click.Context, address: str, description: str | None) -> None:
    """Finish the open commit on a branch (or the open commit with that id)."""
    info = get_client(ctx).finish_commit(address, description=description)
    emit(ctx, info)


@click.command("commit")
@click.argument("address", metavar="REPO[@BRANCH]")
@click.option("-n", "--number", type=click.IntRange(min=1), default=None, help="At most N commits.")
@output_option
@click.pass_context
def list_commit(ctx: click.Context, address: str, number: int | None) -> None:
    """List a branch's history (newest first), or every commit of REPO."""
    commits = get_client(ctx).list_commits(address, number=number)
    emit(ctx, commits, lambda: render.commit_table(commits))


@click.command("commit")
@click.argument("address", metavar="REPO@REF")
@output_option
@click.pass_context
def inspect_commit(ctx: click.Context, address: str) -> None:
    """Show one commit: state, parent, children, size and description."""
    info = get_client(ctx).inspect_commit(address)
    emit(ctx, info, lambda: render.commit_fields(info))


@click.command("commit")
@click.argument("address", metavar="REPO@REF")
@click.option(
    "--timeout",
    type=Duration(),
    default=None,
    metavar="DURATION",
    help="Give up after this long (e.g. 0.5, 30s, 5m); default: wait forever.",
)
@run_option
@output_option
@click.pass_context
def wait_commit(ctx: click.Context, address: str, timeout: float | None, no_run: bool) -> None:
    """Wait until a commit is finished, then show it; exit 1 if its job failed.

    A branch names its head as it is now. On a home where no scheduler runs, the pending
    jobs run in this process meanwhile.
    """
    log = progress_log(ctx, stdout_json=False)
    info = get_client(ctx).wait_commit(address, timeout=timeout, run=not no_run, log=log)
    emit(ctx, info, lambda: render.commit_fields(info))


@click.command("commit")
@click.argument("address", metavar="REPO@REF")
@click.option("-d", "--description", default=None, help="Description of the merged commit.")
@output_option
@click.pass_context
def squash_commit(ctx: click.Context, address: str, description: str | None) -> None:
    """Merge a finished commit into its parent."""
    info = get_client(ctx).squash_commit(address, description=description)
    emit(ctx, info)


@click.command("commit")
@click.argument("address", metavar="REPO@REF")
@output_option
@click.pass_context
def delete_commit(ctx: click.Context, address: str) -> None:
    """Delete a branch's head commit; the branch moves back to its parent."""
    get_client(ctx).delete_commit(address)
    if wants_json(ctx):
        print_json({"deleted": address})


@click.command("commit-set")
@click.argument("commit_set", metavar="ID")
@output_option
@click.pass_context
def inspect_commit_set(ctx: click.Context, commit_set: str) -> None:
    """List every commit in a commit set (all commits caused by one change)."""
    commits = get_client(ctx).inspect_commit_set(commit_set)
    emit(ctx, commits, lambda: render.commit_table(commits))
