"""``fsck``, ``gc``, ``init`` and ``version``."""

from __future__ import annotations

import click

from tusk.cli import render
from tusk.cli.core import emit, get_client, output_option, print_json, wants_json
from tusk.cli.parse import Duration


@click.command("fsck")
@click.option(
    "--references",
    is_flag=True,
    help="Also check every object imported by reference (HEAD requests, in parallel): "
    "each one changed or gone since its import is a problem.",
)
@output_option
@click.pass_context
def fsck(ctx: click.Context, references: bool) -> None:
    """Re-read every pack and check every hash and reference; exit 1 when damaged."""
    report = get_client(ctx).fsck(references=references)
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    if wants_json(ctx):
        print_json(report)
    elif report.ok:
        click.echo(f"ok: {render.fsck_counts(report)}")
    else:
        for problem in report.problems:
            click.echo(f"problem: {problem}")
    if not report.ok:
        n = len(report.problems)
        click.echo(f"error: fsck found {n} problem{'s' if n != 1 else ''}", err=True)
        ctx.exit(1)


@click.command("gc")
@click.option(
    "--grace",
    type=Duration(),
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="Keep unreferenced data touched within this long (e.g. 0, 30m, 1h, 2d).",
)
@click.option("--dry-run", is_flag=True, help="Only report what would be deleted.")
@click.option(
    "--repack-threshold",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    metavar="F",
    help="Rewrite packs whose live fraction is below F, so their dead bytes go (0: never).",
)
@click.option(
    "--retention/--no-retention",
    default=True,
    show_default=True,
    help="First expire old commits by the repos' retention rules (tusk retention set).",
)
@output_option
@click.pass_context
def gc(
    ctx: click.Context, grace: float, dry_run: bool, repack_threshold: float, retention: bool
) -> None:
    """Delete data no commit references and repack mostly dead packs (garbage collection).

    First expires old commits as the repos' retention rules say (with --dry-run: lists them).
    Also removes old webhook checkouts and scratch folders that killed processes left.
    """
    report = get_client(ctx).gc(
        grace=grace, dry_run=dry_run, repack_threshold=repack_threshold, retention=retention
    )
    emit(ctx, report, lambda: render.gc_fields(report))


@click.command("init")
@output_option
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the Tusk home (if needed) and print its path."""
    client = get_client(ctx)
    home = str(client.home)
    emit(ctx, {"home": home}, lambda: click.echo(home))


@click.command("version")
@output_option
@click.pass_context
def version(ctx: click.Context) -> None:
    """Print the version of tusk."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        v = dist_version("tusk-data")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from tusk import __version__ as v
    emit(ctx, {"tusk": v}, lambda: render.version_table(v))
