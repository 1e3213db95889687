"""``protect|unprotect branch`` and ``list protection``: branches only ``tusk merge`` moves;
``list|inspect|delete check``: the checks that gate commits and merges, and their runs."""

from __future__ import annotations

import click

from tusk.cli.core import emit, get_client, output_option, print_json, wants_json
from tusk.cli.render import print_table, when


@click.command("branch")
@click.argument("address", metavar="REPO@BRANCH")
@click.option(
    "--require-merge",
    is_flag=True,
    help="Only tusk merge moves the branch (what protection always means; for clarity).",
)
@click.option(
    "--require-check",
    "checks",
    multiple=True,
    metavar="NAME",
    help="A check (declared with tusk apply) every merge must pass on its result; repeatable.",
)
@output_option
@click.pass_context
def protect_branch(
    ctx: click.Context, address: str, require_merge: bool, checks: tuple[str, ...]
) -> None:
    """Protect a branch: every direct write, move or delete of it is refused, on every edge
    (CLI, SDK, REST, S3, gRPC); only tusk merge from another branch moves it, after every
    --require-check passed on the merge result."""
    p = get_client(ctx).protect_branch(address, require_checks=checks)
    needs = f" (merges must pass {', '.join(p.require_checks)})" if p.require_checks else ""
    emit(ctx, p, lambda: click.echo(f"protected {p.repo}@{p.branch}{needs}"))


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
        ("REPO", "BRANCH", "PROTECTED", "BY", "REQUIRED CHECKS"),
        [(p.repo, p.branch, when(p.created_at), p.created_by, ", ".join(p.require_checks) or "-")
         for p in rows],
    ))  # fmt: skip


@click.command("check")
@click.argument("where", required=False, metavar="[REPO | REPO@REF]")
@output_option
@click.pass_context
def list_check(ctx: click.Context, where: str | None) -> None:
    """List the checks of REPO (or of every repo); with REPO@REF, the checks run on that
    commit (or on a failed merge's candidate, by its id): state, exit code, duration."""
    client = get_client(ctx)
    if where is not None and "@" in where:
        runs = client.check_runs(where)
        emit(ctx, runs, lambda: print_table(
            ("NAME", "STATE", "EXIT", "TRIGGER", "BRANCH", "STARTED", "DURATION"),
            [(r.name, r.state, "-" if r.exit_code is None else str(r.exit_code), r.trigger,
              r.branch, when(r.started_at), f"{r.duration:.2f} s") for r in runs],
        ))  # fmt: skip
        return
    checks = client.list_checks(where)
    emit(ctx, checks, lambda: print_table(
        ("NAME", "REPO", "BRANCH", "ON", "RUNS", "TIMEOUT"),
        [(c.name, c.repo, c.branch, ",".join(c.on), c.image or "host", f"{c.timeout:g} s")
         for c in checks],
    ))  # fmt: skip


@click.command("check")
@click.argument("address", metavar="REPO@REF")
@click.argument("name")
@output_option
@click.pass_context
def inspect_check(ctx: click.Context, address: str, name: str) -> None:
    """Check NAME's run on the commit REPO@REF names: state, exit code, duration and its log."""
    r = get_client(ctx).inspect_check_run(address, name)

    def show() -> None:
        code = "-" if r.exit_code is None else r.exit_code
        for label, value in (
            ("Check", r.name), ("Commit", f"{r.repo}@{r.commit}"),
            ("Branch", f"{r.branch} ({r.trigger})"), ("State", r.state),
            ("Exit code", code), ("Started", when(r.started_at)),
            ("Duration", f"{r.duration:.2f} s"),
        ):  # fmt: skip
            click.echo(f"{label}: {value}")
        click.echo("Log:")
        for line in r.log.splitlines():
            click.echo(f"  {line}")

    emit(ctx, r, show)


@click.command("check")
@click.argument("name")
@output_option
@click.pass_context
def delete_check(ctx: click.Context, name: str) -> None:
    """Remove a check: the branches it covered move without it."""
    get_client(ctx).delete_check(name)
    if wants_json(ctx):
        print_json({"deleted": name})
