"""``create|list|inspect|delete project``.

A repo or pipeline of another project than ``default`` is named ``project/name``; the root
group's ``--project`` (or ``$TUSK_PROJECT``, or the config file's ``project``) makes bare
names mean the current project's.
"""

from __future__ import annotations

import click

from tusk.cli import render
from tusk.cli.core import emit, get_client, output_option, print_json, wants_json


@click.command("project")
@click.argument("name")
@click.option("-d", "--description", default="", help="A description of the project.")
@click.option("--update", is_flag=True, help="Change the description if the project exists.")
@output_option
@click.pass_context
def create_project(ctx: click.Context, name: str, description: str, update: bool) -> None:
    """Create a new project NAME; its repos are then named NAME/repo (or use --project NAME)."""
    info = get_client(ctx).create_project(name, description, update=update)
    emit(ctx, info)


@click.command("project")
@output_option
@click.pass_context
def list_project(ctx: click.Context) -> None:
    """List every project (the current one is marked with *)."""
    client = get_client(ctx)
    projects = client.list_projects()
    emit(ctx, projects, lambda: render.project_table(projects, client.project))


@click.command("project")
@click.argument("name")
@output_option
@click.pass_context
def inspect_project(ctx: click.Context, name: str) -> None:
    """Show a project's description, creation time and repos."""
    info = get_client(ctx).inspect_project(name)
    emit(ctx, info, lambda: render.project_fields(info))


@click.command("project")
@click.argument("name")
@output_option
@click.pass_context
def delete_project(ctx: click.Context, name: str) -> None:
    """Delete project NAME; refused while it has repos (delete them first), and for default."""
    get_client(ctx).delete_project(name)
    if wants_json(ctx):
        print_json({"deleted": name})
