"""``create|list|inspect|delete repo``."""

from __future__ import annotations

import click

from tusk.cli import render
from tusk.cli.core import emit, get_client, output_option, print_json, wants_json


@click.command("repo")
@click.argument("name")
@click.option("-d", "--description", default="", help="A description of the repo.")
@click.option("--update", is_flag=True, help="Change the description if the repo exists.")
@output_option
@click.pass_context
def create_repo(ctx: click.Context, name: str, description: str, update: bool) -> None:
    """Create a new repo NAME."""
    info = get_client(ctx).create_repo(name, description, update=update)
    emit(ctx, info)


@click.command("repo")
@click.option(
    "-A",
    "--all-projects",
    is_flag=True,
    help="List the repos of every project (default: those of the current project).",
)
@output_option
@click.pass_context
def list_repo(ctx: click.Context, all_projects: bool) -> None:
    """List the repos of the current project (--project, $TUSK_PROJECT; default: default)."""
    client = get_client(ctx)
    repos = client.list_repos()
    if not all_projects:
        repos = [r for r in repos if render.project_of(r.name) == client.project]
    emit(ctx, repos, lambda: render.repo_table(repos, projects=all_projects))


@click.command("repo")
@click.argument("name")
@output_option
@click.pass_context
def inspect_repo(ctx: click.Context, name: str) -> None:
    """Show a repo's description, size and branches."""
    info = get_client(ctx).inspect_repo(name)
    emit(ctx, info, lambda: render.repo_fields(info))


@click.command("repo")
@click.argument("name")
@click.option(
    "-f", "--force", is_flag=True, help="Delete even if other repos' branches depend on it."
)
@output_option
@click.pass_context
def delete_repo(ctx: click.Context, name: str, force: bool) -> None:
    """Delete repo NAME with all its branches, commits and files."""
    get_client(ctx).delete_repo(name, force=force)
    if wants_json(ctx):
        print_json({"deleted": name})
