"""The ``tusk`` entry point: the root group, the verbs, and the top-level error handler."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tusk.cli.commands import (
    admin,
    auth,
    branch,
    commit,
    context,
    file,
    gitops,
    pipeline,
    project,
    repo,
    report,
    secret,
)
from tusk.cli.commands.pipeline import ADDRESS_KEY
from tusk.cli.core import AliasGroup, State, TuskGroup, fail, output_option, to_cli_error

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=TuskGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Tusk home folder (default: $TUSK_HOME, else ~/.tusk).",
)
@click.option(
    "--address",
    default=None,
    metavar="URL",
    help="Talk to the Tusk server at URL (tusk up / tusk serve) instead of working on a home "
    "in-process (default: $TUSK_ADDRESS when set and --home is not given).",
)
@click.option(
    "--project",
    default=None,
    metavar="NAME",
    help="The current project: bare repo and pipeline names are its (default: $TUSK_PROJECT, "
    "else the config file's project, else default).",
)
@output_option
@click.pass_context
def cli(ctx: click.Context, home: Path | None, address: str | None, project: str | None) -> None:
    """Tusk: version control for data, with pachctl's commands.

    Addresses: REPO, REPO@BRANCH, REPO@COMMIT-ID, REPO@BRANCH^2 (or ~2), and with a path
    REPO@BRANCH:/dir/file. The branch defaults to master. A repo of another project than
    default is PROJECT/REPO (or REPO with --project PROJECT).
    """
    if home is not None and address is not None:
        fail("give --home (work on a home here) or --address (talk to a server), not both")
    state = State(home=home.expanduser() if home is not None else None, project=project)
    ctx.obj = state
    if address is not None:
        from tusk.sdk import Client

        ctx.meta[ADDRESS_KEY] = address
        client = Client(address=address, project=project)
        state.client = client
        ctx.call_on_close(client.close)


def _verb(name: str, help: str) -> AliasGroup:
    group = AliasGroup(name, help=help, context_settings=CONTEXT_SETTINGS)
    cli.add_command(group)
    return group


create = _verb("create", "Create a project, a repo, a branch, a pipeline or a secret.")
update = _verb("update", "Update a pipeline to a new version of its spec.")
list_ = _verb(
    "list",
    "List projects, repos, branches, commits, files, pipelines, jobs, datums or secrets.",
)
inspect = _verb(
    "inspect",
    "Show details of a project, repo, branch, commit, commit set, file, pipeline, job, datum "
    "or secret.",
)
delete = _verb("delete", "Delete a project, repo, branch, commit, file, pipeline or secret.")
start = _verb("start", "Start a commit, or resume a pipeline.")
stop = _verb("stop", "Pause a pipeline or kill a job.")
run = _verb("run", "Run a pipeline on its inputs' current data.")
finish = _verb("finish", "Finish a commit.")
wait = _verb("wait", "Wait for a commit, a job or a commit set's jobs to finish.")
squash = _verb("squash", "Merge a commit into its parent.")
put = _verb("put", "Put files into a repo.")
get = _verb("get", "Get files out of a repo.")
glob = _verb("glob", "List files matching a glob pattern.")
diff = _verb("diff", "Show what changed between two commits.")
copy = _verb("copy", "Copy files between commits, without copying data.")

create.add_command(project.create_project)
list_.add_command(project.list_project)
inspect.add_command(project.inspect_project)
delete.add_command(project.delete_project)
create.add_command(repo.create_repo)
create.add_command(branch.create_branch)
list_.add_command(repo.list_repo)
list_.add_command(branch.list_branch)
list_.add_command(commit.list_commit)
list_.add_command(file.list_file)
inspect.add_command(repo.inspect_repo)
inspect.add_command(branch.inspect_branch)
inspect.add_command(commit.inspect_commit)
inspect.add_command(commit.inspect_commit_set)
inspect.add_command(file.inspect_file)
delete.add_command(repo.delete_repo)
delete.add_command(branch.delete_branch)
delete.add_command(commit.delete_commit)
delete.add_command(file.delete_file)
start.add_command(commit.start_commit)
finish.add_command(commit.finish_commit)
wait.add_command(commit.wait_commit)
squash.add_command(commit.squash_commit)
put.add_command(file.put_file)
get.add_command(file.get_file)
glob.add_command(file.glob_file)
diff.add_command(file.diff_file)
copy.add_command(file.copy_file)
create.add_command(pipeline.create_pipeline)
update.add_command(pipeline.update_pipeline)
list_.add_command(pipeline.list_pipeline)
list_.add_command(pipeline.list_job)
list_.add_command(pipeline.list_datum)
inspect.add_command(pipeline.inspect_pipeline)
inspect.add_command(pipeline.inspect_job)
inspect.add_command(pipeline.inspect_datum)
delete.add_command(pipeline.delete_pipeline)
start.add_command(pipeline.start_pipeline)
stop.add_command(pipeline.stop_pipeline)
stop.add_command(pipeline.stop_job)
run.add_command(pipeline.run_pipeline)
wait.add_command(pipeline.wait_job)
wait.add_command(pipeline.wait_commit_set)
create.add_command(secret.create_secret)
list_.add_command(secret.list_secret)
inspect.add_command(secret.inspect_secret)
delete.add_command(secret.delete_secret)
for command in (pipeline.logs, pipeline.lineage, pipeline.up, pipeline.serve, pipeline.worker):
    cli.add_command(command)
cli.add_command(context.context)
cli.add_command(auth.auth)
cli.add_command(auth.audit)
cli.add_command(gitops.apply)
cli.add_command(report.report)
for command in (admin.fsck, admin.gc, admin.init, admin.version):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Run ``tusk``; every failure ends as one ``error:`` line and the error's exit code."""
    try:
        cli.main(args=argv, prog_name="tusk")
    except SystemExit:
        raise
    except Exception as exc:  # raised outside a command, e.g. while closing the client
        err = to_cli_error(exc)
        err.show()
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
