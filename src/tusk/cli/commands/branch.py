"""``create|list|inspect|delete branch``."""

from __future__ import annotations

import click

from tusk.cli import render
from tusk.cli.core import emit, get_client, output_option, print_json, wants_json


@click.command("branch")
@click.argument("address", metavar="REPO@BRANCH")
@click.option("--head", default=None, metavar="REF", help="Commit or branch the branch points at.")
@click.option(
    "-p",
    "--provenance",
    multiple=True,
    metavar="REPO@BRANCH",
    help="A branch this branch's data comes from (repeatable).",
)
@click.option(
    "-t",
    "--trigger",
    default=None,
    metavar="BRANCH",
    help="Follow BRANCH of the same repo: move to its head when the conditions hold.",
)
@click.option(
    "--trigger-size", default=None, metavar="SIZE", help="Condition: SIZE more data (100MB)."
)
@click.option(
    "--trigger-commits",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Condition: N more commits.",
)
@click.option(
    "--trigger-cron",
    default=None,
    metavar="SPEC",
    help="Condition: a cron tick since the last move ('@every 1h', '0 * * * *').",
)
@click.option(
    "--trigger-all", is_flag=True, help="Every condition given must hold (default: any one)."
)
@output_option
@click.pass_context
def create_branch(
    ctx: click.Context,
    address: str,
    head: str | None,
    provenance: tuple[str, ...],
    trigger: str | None,
    trigger_size: str | None,
    trigger_commits: int | None,
    trigger_cron: str | None,
    trigger_all: bool,
) -> None:
    """Create a branch, or move an existing one with --head.

    With --trigger the branch follows another branch of its repo, as Pachyderm's branch
    triggers: when a commit finishes there, it moves to that commit if the conditions hold
    (any one, or each with --trigger-all; none given: every commit). Pipelines reading it run
    when it moves.
    """
    info = get_client(ctx).create_branch(
        address,
        head=head,
        provenance=provenance,
        trigger=trigger,
        trigger_size=trigger_size,
        trigger_commits=trigger_commits,
        trigger_cron=trigger_cron,
        trigger_all=trigger_all,
    )
    emit(ctx, info)


@click.command("branch")
@click.argument("repo")
@output_option
@click.pass_context
def list_branch(ctx: click.Context, repo: str) -> None:
    """List the branches of REPO."""
    branches = get_client(ctx).list_branches(repo)
    emit(ctx, branches, lambda: render.branch_table(branches))


@click.command("branch")
@click.argument("address", metavar="REPO@BRANCH")
@output_option
@click.pass_context
def inspect_branch(ctx: click.Context, address: str) -> None:
    """Show a branch's head, provenance, subvenance and trigger."""
    info = get_client(ctx).inspect_branch(address)
    emit(ctx, info, lambda: render.branch_fields(info))


@click.command("branch")
@click.argument("address", metavar="REPO@BRANCH")
@click.option(
    "-f", "--force", is_flag=True, help="Delete even if other branches name it in provenance."
)
@output_option
@click.pass_context
def delete_branch(ctx: click.Context, address: str, force: bool) -> None:
    """Delete a branch; its commits stay reachable by id."""
    get_client(ctx).delete_branch(address, force=force)
    if wants_json(ctx):
        print_json({"deleted": address})
