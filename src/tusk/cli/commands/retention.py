"""``tusk retention set|show|unset``: which old commits ``tusk gc`` expires."""

from __future__ import annotations

import click

from tusk.cli import render
from tusk.cli.core import emit, get_client, output_option, print_json, wants_json
from tusk.cli.parse import Duration


@click.group("retention")
def retention() -> None:
    """Which old commits of a repo tusk gc expires, and how to see and remove the rule.

    A rule keeps the newest --keep-last commits of each branch, those finished within
    --keep-within, and the tagged ones; branch heads, open commits and what kept outputs
    were computed from always stay. tusk gc expires the rest (tusk gc --dry-run lists them
    and the bytes that would come back), and tusk up applies the rules every hour.
    """


@retention.command("set")
@click.argument("repo")
@click.option("--keep-last", type=click.IntRange(min=1), default=None, metavar="N",
              help="Keep the N newest commits of each branch.")  # fmt: skip
@click.option("--keep-within", type=Duration(), default=None, metavar="DURATION",
              help="Keep commits finished within this long (e.g. 12h, 30d).")  # fmt: skip
@click.option("--keep-tagged/--no-keep-tagged", default=True, show_default=True,
              help="Keep tagged commits (else they expire with their tags).")  # fmt: skip
@output_option
@click.pass_context
def set_(
    ctx: click.Context,
    repo: str,
    keep_last: int | None,
    keep_within: float | None,
    keep_tagged: bool,
) -> None:
    """Set REPO's retention rule (replacing any); at least one of --keep-last, --keep-within."""
    rule = get_client(ctx).set_retention(repo, keep_last, keep_within, keep_tagged)
    emit(ctx, rule, lambda: render.retention_table([rule]))


@retention.command("show")
@click.argument("repo", required=False)
@output_option
@click.pass_context
def show(ctx: click.Context, repo: str | None) -> None:
    """Show REPO's retention rule, or every repo's."""
    rules = get_client(ctx).list_retention(repo)
    emit(ctx, rules, lambda: render.retention_table(rules))


@retention.command("unset")
@click.argument("repo")
@output_option
@click.pass_context
def unset(ctx: click.Context, repo: str) -> None:
    """Remove REPO's retention rule: gc keeps all its commits again."""
    get_client(ctx).delete_retention(repo)
    if wants_json(ctx):
        print_json({"unset": repo})
