"""``tusk report BASE..HEAD``: data, jobs, metrics and checks as markdown, for a PR comment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tusk.cli.core import OUTPUT_KEY, get_client, print_json, wants_json

if TYPE_CHECKING:
    from tusk.sdk.report import Report

FORMATS = ("markdown", "json")


def _store_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    # Shared with the root group's -o, so 'tusk -o json report ...' works too.
    if value is not None:
        ctx.meta[OUTPUT_KEY] = value


@click.command("report")
@click.argument("range_", metavar="BASE..HEAD")
@click.option(
    "--repo",
    "repos",
    multiple=True,
    metavar="NAME",
    help="Only this repo (repeatable); default: every repo that has HEAD.",
)
@click.option(
    "--metrics",
    "metrics",
    multiple=True,
    metavar="GLOB",
    help="Metrics files to compare (repeatable); a glob without '/' matches a file name "
    "anywhere. Default: metrics.json, metrics.yaml, metrics.yml, *.metrics.json.",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Files listed per repo; the rest are counted ('and N more').",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(FORMATS),
    default=None,
    expose_value=False,
    callback=_store_format,
    help="Markdown for people and PR comments (default), or JSON for scripts.",
)
@click.option(
    "--output-file",
    "output_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Write the report to FILE instead of stdout (e.g. $GITHUB_STEP_SUMMARY).",
)
@click.option("--append", is_flag=True, help="Append to --output-file instead of replacing it.")
@click.option(
    "--github",
    is_flag=True,
    envvar="TUSK_REPORT_GITHUB",
    help="In a GitHub Actions step: write the check runs as the step outputs 'checks' (a "
    "JSON list) and 'checks-failed' (a count) to $GITHUB_OUTPUT, and, given a GitHub token "
    "in $TUSK_GITHUB_TOKEN, post a commit status per check (context tusk/check/NAME) on "
    "the workflow's commit (the pull request's head for pull_request events). The Tusk "
    "action sets it ($TUSK_REPORT_GITHUB=true).",
)
@click.pass_context
def report(
    ctx: click.Context,
    range_: str,
    repos: tuple[str, ...],
    metrics: tuple[str, ...],
    max_rows: int,
    output_file: Path | None,
    append: bool,
    github: bool,
) -> None:
    """Compare BASE and HEAD: files, jobs, metrics and checks, as markdown for a pull request.

    BASE and HEAD are REPO@REF (one repo), or a branch name or commit set id applied to
    every repo that has it: 'tusk report master..pr-12' compares REPO@master with
    REPO@pr-12 for every repo with a pr-12 branch (a repo without master counts as empty).
    Jobs are those HEAD's own commits (not in BASE's history) started; checks are those
    run on HEAD's commits.
    """
    from tusk.sdk.report import build_report, parse_range, render_markdown

    base, head = parse_range(range_)
    result = build_report(
        get_client(ctx),
        base,
        head,
        repos=repos,
        metrics=metrics or None,
        max_rows=max_rows,
    )
    if output_file is None:
        if wants_json(ctx):
            print_json(result)
        else:
            click.echo(render_markdown(result), nl=False)
    else:
        if wants_json(ctx):
            import json

            text = json.dumps(result.to_dict(), indent=2) + "\n"
        else:
            text = render_markdown(result)
        with open(output_file, "a" if append else "w", encoding="utf-8") as f:
            f.write(text)
    if github:
        _to_github(result)


def _to_github(result: Report) -> None:
    """The check runs as step outputs and, with a token, as commit statuses. Problems on
    GitHub's side are warnings: the report itself is done."""
    import os

    from tusk.sdk.report import (
        GitHubContext,
        commit_statuses,
        github_outputs,
        post_commit_statuses,
    )

    token = os.environ.get("TUSK_GITHUB_TOKEN", "").strip()
    secrets = [s for s in (token, os.environ.get("TUSK_TOKEN", "").strip()) if s]
    path = os.environ.get("GITHUB_OUTPUT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            for name, value in github_outputs(result).items():
                for secret in secrets:  # never in a check's log; should one print it anyway
                    value = value.replace(secret, "***")
                f.write(f"{name}={value}\n")
    else:
        _warn("--github: $GITHUB_OUTPUT is not set (not a GitHub Actions step): no outputs")
    if not token or not result.checks:
        return
    context = GitHubContext.from_env(os.environ)
    if context is None:
        _warn(
            "--github: $GITHUB_REPOSITORY or $GITHUB_SHA is not set (not a GitHub Actions "
            "job): no commit statuses posted"
        )
        return
    statuses = commit_statuses(result, context.run_url)
    problems = post_commit_statuses(context, token, statuses)
    for problem in problems:
        _warn(problem)
    if not problems:
        click.echo(
            f"posted {len(statuses)} commit status(es) to {context.repository}@{context.sha}: "
            + ", ".join(f"{s['context']} {s['state']}" for s in statuses),
            err=True,
        )


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)
