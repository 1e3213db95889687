"""``create|list|inspect|delete tag``: names for commits (``repo@v1`` wherever a commit is)."""

from __future__ import annotations

import click

from tusk.cli.core import emit, get_client, output_option, print_json, wants_json
from tusk.cli.render import print_fields, print_table, when


@click.command("tag")
@click.argument("address", metavar="REPO@COMMIT")
@click.argument("name")
@output_option
@click.pass_context
def create_tag(ctx: click.Context, address: str, name: str) -> None:
    """Name a finished commit NAME: REPO@NAME then reads it anywhere a commit is taken, and
    the commit cannot be deleted or squashed away while the tag stands."""
    info = get_client(ctx).create_tag(address, name)
    emit(ctx, info, lambda: click.echo(f"tagged {info.repo}@{info.commit} as {info.name}"))


@click.command("tag")
@click.argument("repo")
@output_option
@click.pass_context
def list_tag(ctx: click.Context, repo: str) -> None:
    """List the tags of REPO."""
    tags = get_client(ctx).list_tags(repo)
    emit(ctx, tags, lambda: print_table(
        ("TAG", "COMMIT", "CREATED"), [(t.name, t.commit, when(t.created_at)) for t in tags]
    ))  # fmt: skip


@click.command("tag")
@click.argument("address", metavar="REPO@TAG")
@output_option
@click.pass_context
def inspect_tag(ctx: click.Context, address: str) -> None:
    """Show the commit a tag names."""
    t = get_client(ctx).inspect_tag(address)
    emit(ctx, t, lambda: print_fields(
        [("Name", f"{t.repo}@{t.name}"), ("Commit", t.commit), ("Created", when(t.created_at))]
    ))  # fmt: skip


@click.command("tag")
@click.argument("address", metavar="REPO@TAG")
@output_option
@click.pass_context
def delete_tag(ctx: click.Context, address: str) -> None:
    """Delete a tag; its commit stays (and may then be deleted or squashed)."""
    get_client(ctx).delete_tag(address)
    if wants_json(ctx):
        print_json({"deleted": address})
