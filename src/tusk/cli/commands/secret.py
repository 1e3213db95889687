"""``create|list|inspect|delete secret``: Kubernetes Secret manifests for ``transform.secrets``.

Values go in and never come out: listing and inspecting show names, keys and times.
"""

from __future__ import annotations

import click

from tusk.cli import render
from tusk.cli.core import emit, get_client, output_option, print_json, wants_json


@click.command("secret")
@click.option(
    "-f",
    "--file",
    "source",
    required=True,
    metavar="FILE",
    help="A Kubernetes Secret manifest, JSON or YAML (kind: Secret, metadata.name, data in "
    "base64 and/or stringData); - reads stdin.",
)
@output_option
@click.pass_context
def create_secret(ctx: click.Context, source: str) -> None:
    """Store a secret, encrypted at rest, for pipelines to name in transform.secrets."""
    from pathlib import Path

    info = get_client(ctx).create_secret(source if source == "-" else Path(source))
    emit(ctx, info, lambda: click.echo(f"created secret {info.name} ({_keys(info.keys)})"))


@click.command("secret")
@output_option
@click.pass_context
def list_secret(ctx: click.Context) -> None:
    """List every secret's name and keys (never the values)."""
    secrets = get_client(ctx).list_secrets()

    def table() -> None:
        rows = [(s.name, _keys(s.keys), render.ago(s.created_at)) for s in secrets]
        render.print_table(("NAME", "KEYS", "CREATED"), rows)

    emit(ctx, secrets, table)


@click.command("secret")
@click.argument("name")
@output_option
@click.pass_context
def inspect_secret(ctx: click.Context, name: str) -> None:
    """Show a secret's keys and times (never the values)."""
    info = get_client(ctx).inspect_secret(name)

    def fields() -> None:
        render.print_fields(
            [
                ("Name", info.name),
                ("Keys", _keys(info.keys)),
                ("Created", render.when(info.created_at)),
                ("Created by", info.created_by or "-"),
            ]
        )

    emit(ctx, info, fields)


@click.command("secret")
@click.argument("name")
@output_option
@click.pass_context
def delete_secret(ctx: click.Context, name: str) -> None:
    """Delete secret NAME; pipelines naming it fail their next job, saying so."""
    get_client(ctx).delete_secret(name)
    if wants_json(ctx):
        print_json({"deleted": name})


def _keys(keys: list[str]) -> str:
    return ", ".join(keys) if keys else "(no keys)"
