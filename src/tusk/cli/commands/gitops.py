"""``tusk apply``: make the server's repos and pipelines match spec files kept in Git."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tusk.cli import render
from tusk.cli.core import emit, get_client, note_unscheduled, output_option


@click.command("apply")
@click.option(
    "-f",
    "--file",
    "paths",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="A spec file or a folder of them (*.yaml, *.yml, *.json, *.jsonnet); repeat for more.",
)
@click.option(
    "--arg",
    "template_args",
    multiple=True,
    metavar="NAME=VALUE",
    help="A top-level argument (a string) for every *.jsonnet template; wins over the "
    "template's NAME.args.yaml. Repeat for more.",
)
@click.option("--prune", is_flag=True, help="Delete pipelines that no file declares.")
@click.option("--dry-run", is_flag=True, help="Print the plan (with spec diffs); change nothing.")
@click.option(
    "--reprocess",
    is_flag=True,
    help="Updated pipelines rerun every datum (default: the spec's reprocess_spec decides).",
)
@output_option
@click.pass_context
def apply(
    ctx: click.Context,
    paths: tuple[Path, ...],
    template_args: tuple[str, ...],
    prune: bool,
    dry_run: bool,
    reprocess: bool,
) -> None:
    """Create what the files declare, update what changed, leave the rest alone.

    Files hold Pachyderm pipeline specs and 'kind: repo' documents; Jsonnet templates
    (*.jsonnet) are rendered with the arguments of their NAME.args.yaml and --arg. Everything
    is checked first and applied in one transaction, pipelines in graph order; applying the
    same files again changes nothing. Each new pipeline version records the git commit of its
    file.
    """
    from tusk.sdk.gitops import parse_template_args, read_documents

    jsonnet_args = parse_template_args(template_args)
    client = get_client(ctx)
    if jsonnet_args:
        docs: list[Any] = list(read_documents(list(paths), jsonnet_args=jsonnet_args))
        result = client.apply(docs, prune=prune, dry_run=dry_run, reprocess=reprocess)
    else:
        result = client.apply_files(list(paths), prune=prune, dry_run=dry_run, reprocess=reprocess)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)

    def table() -> None:
        rows = [
            (
                c.action + (" (reprocess)" if c.reprocess else ""),
                c.kind,
                c.name,
                "-" if c.version is None else str(c.version),
                c.source or "-",
            )
            for c in result.changes
        ]
        render.print_table(("ACTION", "KIND", "NAME", "VERSION", "SOURCE"), rows)
        for change in result.changes:
            if change.diff:
                click.echo("")
                click.echo(change.diff.rstrip("\n"))
        done = [c for c in result.changes if c.action not in ("unchanged", "unmanaged")]
        if dry_run:
            click.echo(f"\ndry run: {len(done)} change(s) planned, nothing applied")
        else:
            click.echo(f"\napplied {len(done)} change(s)")
            for job in result.jobs:
                click.echo(f"job started: {job}")

    emit(ctx, result, table)
    pipelines = [
        c for c in result.changes if c.kind == "pipeline" and c.action in ("create", "update")
    ]
    if not dry_run and (result.jobs or pipelines):
        note_unscheduled(client, "the jobs of these pipelines")
