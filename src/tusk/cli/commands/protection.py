"""``protect|unprotect branch`` and ``list protection``: branches only ``tusk merge`` moves."""

from __future__ import annotations

import click

from tusk.cli.core import emit, get_client, output_option, print_json, wants_json
from tusk.cli.render import print_table, when


@click.command("branch")
@click.argument("address", metavar="REPO@BRANCH")
@output_option
@click.pass_context
def protect_branch(ctx: click.Context, address: str) -> None:
    """Protect a branch: every direct write, move or delete of it is refused, on every edge
    (CLI, SDK, REST, S3, gRPC); only tusk merge from another branch moves it."""
    p = get_client(ctx).protect_branch(address)
    emit(ctx, p, lambda: click.echo(f"protected {p.repo}@{p.branch}"))


@click.command("branch")
@click.argument("address", metavar="REPO@BRANCH")
@output_option
@click.pass_context
def unprotect_branch(ctx: click.Context, address: str) -> None:
    """Lift a branch's protection: direct writes reach it again."""
    get_client(ctx).unprotect_branch(address)
    if wants_json(ctx):
        print_json({"unprotected": address})


@click.command("protection")
@click.argument("repo", required=False)
@output_option
@click.pass_context
def list_protection(ctx: click.Context, repo: str | None) -> None:
    """List the protected branches of REPO, or of every repo."""
    rows = get_client(ctx).list_protections(repo)
    emit(ctx, rows, lambda: print_table(
        ("REPO", "BRANCH", "PROTECTED", "BY"),
        [(p.repo, p.branch, when(p.created_at), p.created_by) for p in rows],
    ))  # fmt: skip
