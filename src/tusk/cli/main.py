"""The ``tusk`` entry point: the root group, the verbs, and the top-level error handler."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tusk.cli.core import (
    ADDRESS_KEY,
    AliasGroup,
    State,
    TuskGroup,
    fail,
    output_option,
    to_cli_error,
)
from tusk.gcpause import pause_start_up, start_up_done

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
@click.option(
    "--force-protected",
    is_flag=True,
    help="Write to a protected branch anyway (clusterAdmin only on a server; audited).",
)
@output_option
@click.pass_context
def cli(
    ctx: click.Context,
    home: Path | None,
    address: str | None,
    project: str | None,
    force_protected: bool,
) -> None:
    """Tusk: version control for data, with pachctl's commands.

    Addresses: REPO, REPO@BRANCH, REPO@COMMIT-ID, REPO@BRANCH^2 (or ~2), and with a path
    REPO@BRANCH:/dir/file. The branch defaults to master. A repo of another project than
    default is PROJECT/REPO (or REPO with --project PROJECT).
    """
    if home is not None and address is not None:
        fail("give --home (work on a home here) or --address (talk to a server), not both")
    state = State(
        home=home.expanduser() if home is not None else None,
        project=project,
        force_protected=force_protected,
    )
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


create = _verb("create", "Create a project, a repo, a branch, a tag, a pipeline or a secret.")
update = _verb("update", "Update a pipeline to a new version of its spec.")
list_ = _verb(
    "list",
    "List projects, repos, branches, commits, files, pipelines, jobs, datums, secrets or images.",
)
inspect = _verb(
    "inspect",
    "Show details of a project, repo, branch, commit, commit set, file, pipeline, job, datum, "
    "secret or image.",
)
delete = _verb(
    "delete", "Delete a project, repo, branch, tag, commit, file, pipeline, secret or image."
)
start = _verb("start", "Start a commit, or resume a pipeline.")
stop = _verb("stop", "Pause a pipeline or kill a job.")
run = _verb("run", "Run a pipeline on its inputs' current data.")
restart = _verb("restart", "Run a running job's datums again.")
finish = _verb("finish", "Finish a commit.")
wait = _verb("wait", "Wait for a commit, a job or a commit set's jobs to finish.")
squash = _verb("squash", "Merge a commit into its parent.")
put = _verb("put", "Put files into a repo.")
get = _verb("get", "Get files out of a repo.")
glob = _verb("glob", "List files matching a glob pattern.")
diff = _verb("diff", "Show what changed between two commits: files, or a table's rows.")
copy = _verb("copy", "Copy files between commits, without copying data.")
next_ = _verb("next", "Go on to the next datum (in the code of a datum_batching pipeline).")
protect = _verb("protect", "Protect a branch: only tusk merge from another branch moves it.")
unprotect = _verb("unprotect", "Lift a branch's protection.")
debug = _verb("debug", "Rerun a datum on this machine, on its exact inputs.")

# Each verb's nouns, as module:function of tusk.cli.commands: a command imports only its
# own module (see AliasGroup.add_lazy).
NOUNS: dict[AliasGroup, dict[str, str]] = {
    create: {
        "project": "project:create_project",
        "repo": "repo:create_repo",
        "branch": "branch:create_branch",
        "tag": "tag:create_tag",
        "pipeline": "pipeline:create_pipeline",
        "secret": "secret:create_secret",
    },
    update: {"pipeline": "pipeline:update_pipeline"},
    list_: {
        "project": "project:list_project",
        "repo": "repo:list_repo",
        "branch": "branch:list_branch",
        "tag": "tag:list_tag",
        "protection": "protection:list_protection",
        "check": "protection:list_check",
        "commit": "commit:list_commit",
        "file": "file:list_file",
        "pipeline": "pipeline:list_pipeline",
        "job": "pipeline:list_job",
        "datum": "pipeline:list_datum",
        "secret": "secret:list_secret",
        "image": "image:list_image",
    },
    inspect: {
        "project": "project:inspect_project",
        "repo": "repo:inspect_repo",
        "branch": "branch:inspect_branch",
        "tag": "tag:inspect_tag",
        "check": "protection:inspect_check",
        "commit": "commit:inspect_commit",
        "commit-set": "commit:inspect_commit_set",
        "file": "file:inspect_file",
        "pipeline": "pipeline:inspect_pipeline",
        "job": "pipeline:inspect_job",
        "datum": "pipeline:inspect_datum",
        "secret": "secret:inspect_secret",
        "image": "image:inspect_image",
    },
    delete: {
        "project": "project:delete_project",
        "repo": "repo:delete_repo",
        "branch": "branch:delete_branch",
        "tag": "tag:delete_tag",
        "check": "protection:delete_check",
        "commit": "commit:delete_commit",
        "file": "file:delete_file",
        "pipeline": "pipeline:delete_pipeline",
        "secret": "secret:delete_secret",
        "image": "image:delete_image",
    },
    start: {"commit": "commit:start_commit", "pipeline": "pipeline:start_pipeline"},
    stop: {"pipeline": "pipeline:stop_pipeline", "job": "pipeline:stop_job"},
    run: {"pipeline": "pipeline:run_pipeline"},
    restart: {"datum": "pipeline:restart_datum"},
    finish: {"commit": "commit:finish_commit"},
    wait: {
        "commit": "commit:wait_commit",
        "job": "pipeline:wait_job",
        "commit-set": "pipeline:wait_commit_set",
    },
    squash: {"commit": "commit:squash_commit"},
    put: {"file": "file:put_file"},
    get: {"file": "file:get_file"},
    glob: {"file": "file:glob_file"},
    diff: {"file": "file:diff_file", "table": "sql:diff_table"},
    copy: {"file": "file:copy_file"},
    next_: {"datum": "datum:next_datum"},
    protect: {"branch": "protection:protect_branch"},
    unprotect: {"branch": "protection:unprotect_branch"},
    debug: {"datum": "debug:debug_datum"},
}
for verb, nouns in NOUNS.items():
    for noun, target in nouns.items():
        verb.add_lazy(noun, target)

# The other commands, with the summary `tusk --help` shows for each (checked against the
# command's own by tests/cli/test_cli_units.py).
COMMANDS = {
    "logs": ("pipeline:logs", "Print what user code wrote to stdout and stderr, as [datum] line."),
    "lineage": (
        "pipeline:lineage",
        "How a file was made: pipeline version, job, datum, code and image, then its inputs.",
    ),
    "up": (
        "pipeline:up",
        "Run the scheduler and its workers, and serve the REST API, in the foreground.",
    ),
    "serve": (
        "pipeline:serve",
        "Serve the REST API on a home without running jobs (tusk up does both).",
    ),
    "console": (
        "pipeline:console",
        "Serve the web console for a home on 127.0.0.1 (tusk up serves it too).",
    ),
    "worker": (
        "pipeline:worker",
        "Run datums only, for jobs that a tusk up elsewhere starts and finishes.",
    ),
    "context": (
        "context:context",
        "Named servers to talk to (stored in $TUSK_CONFIG, default <home>/config.yaml).",
    ),
    "auth": (
        "auth:auth",
        "Tokens and roles on a Tusk server (needs --address, $TUSK_ADDRESS or a context).",
    ),
    "audit": (
        "auth:audit",
        "The server's audit log, newest first (clusterAdmin): changes and denials.",
    ),
    "image": (
        "image:image",
        "The image cache pipelines run in: load docker save tarballs into it.",
    ),
    "deploy": ("deploy:deploy", "Write Kubernetes manifests: the server and pipeline workers."),
    "import": (
        "imports:import_objects",
        "Commit every object below s3://BUCKET/PREFIX as a file under PATH, by reference.",
    ),
    "materialize": (
        "imports:materialize",
        "Copy the files imported by reference at or below PATH into the store, in a new commit.",
    ),
    "merge": (
        "merge:merge",
        "Merge REPO@BRANCH (or a commit or tag) into another branch of REPO.",
    ),
    "log": (
        "merge:log",
        "A branch's or commit's history through every parent, newest first.",
    ),
    "retention": (
        "retention:retention",
        "Which old commits of a repo tusk gc expires, and how to see and remove the rule.",
    ),
    "apply": (
        "gitops:apply",
        "Create what the files declare, update what changed, leave the rest alone.",
    ),
    "sql": (
        "sql:sql",
        "Run a SQL query (DuckDB's) over versioned files, read in place at their commits.",
    ),
    "report": (
        "report:report",
        "Compare BASE and HEAD: files, jobs, metrics and checks, as markdown for a pull request.",
    ),
    "mount": (
        "mount:mount",
        "Mount commits as a folder with FUSE, read lazily; with --write, one commit on unmount.",
    ),
    "unmount": (
        "mount:unmount",
        "Unmount a folder that tusk mount serves (fusermount3 -u); the mount then exits.",
    ),
    "fsck": (
        "admin:fsck",
        "Re-read every pack and check every hash and reference; exit 1 when damaged.",
    ),
    "gc": (
        "admin:gc",
        "Delete data no commit references and repack mostly dead packs (garbage collection).",
    ),
    "init": ("admin:init", "Create the Tusk home (if needed) and print its path."),
    "version": ("admin:version", "Print the version of tusk."),
}
for name, (target, summary) in COMMANDS.items():
    cli.add_lazy(name, target, summary)


def main(argv: list[str] | None = None) -> None:
    """Run ``tusk``; every failure ends as one ``error:`` line and the error's exit code."""
    # httpx's __init__ imports its own command line (httpx._main: click, rich.progress,
    # rich.syntax, pygments) whenever click and rich are installed, ~55 ms of every remote
    # command. This process never runs httpx's command line; a None entry makes that import
    # fail, and httpx then falls back to a stub `httpx.main`. Only the `tusk` process does
    # this, never a program that imports tusk as a library.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    pause_start_up()  # no cyclic collection while the command loads (tusk.gcpause)
    try:
        cli.main(args=argv, prog_name="tusk")
    except SystemExit:
        raise
    except Exception as exc:  # raised outside a command, e.g. while closing the client
        err = to_cli_error(exc)
        err.show()
        sys.exit(err.exit_code)
    finally:
        start_up_done()  # a command that opened nothing, run by a caller that goes on


if __name__ == "__main__":  # python -m tusk.cli.main: as the tusk script runs it
    from tusk.cli import entry

    entry.finish(main)
