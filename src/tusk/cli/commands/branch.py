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
@output_option
@click.pass_context
def create_branch(
    ctx: click.Context, address: str, head: str | None, provenance: tuple[str, ...]
) -> None:
    """Create a branch, or move an existing one with --head."""
    info = get_client(ctx).create_branch(address, head=head, provenance=provenance)
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
    """Show a branch's head, provenance and subvenance."""
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
