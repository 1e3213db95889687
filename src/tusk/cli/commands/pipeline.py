"""Pipelines, jobs, datums, logs, lineage and the scheduler (``tusk up``).

``create|update|list|inspect|delete|stop|start|run pipeline``, ``list|inspect|stop|wait job``,
``list|inspect datum``, ``wait commit-set``, ``logs``, ``lineage``, ``up`` (scheduler and REST
API) and ``serve`` (the REST API alone).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from tusk.cli import render
from tusk.cli.core import (
    ADDRESS_KEY,
    CliError,
    emit,
    fail,
    get_client,
    note_unscheduled,
    output_option,
    print_json,
    progress_log,
    run_option,
    wants_json,
)
from tusk.cli.parse import Duration
from tusk.config import default_home

if TYPE_CHECKING:
    from tusk.sdk import Client, JobInfo, PipelineInfo
    from tusk.server import Server

FOLLOW_POLL = 0.5  # seconds between polls of ``tusk logs --follow``

_timeout_option = click.option(
    "--timeout",
    type=Duration(),
    default=None,
    metavar="DURATION",
    help="Give up after this long (exit 5), e.g. 30s, 5m; default: wait forever.",
)


def _spec_option(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--arg",
        "template_args",
        multiple=True,
        metavar="NAME=VALUE",
        help="A top-level argument (a string) for the --jsonnet template; repeat for more.",
    )(f)
    f = click.option(
        "--jsonnet",
        "template",
        metavar="TEMPLATE",
        default=None,
        help="A Jsonnet template rendering one spec or a list of specs (as pachctl's "
        "--jsonnet): a file, a URL, or - for stdin. Instead of -f.",
    )(f)
    return click.option(
        "-f",
        "--file",
        "source",
        default=None,
        metavar="SPEC",
        help="The pipeline spec (JSON or YAML; several in one file are fine): a file, a URL, "
        "or - for stdin.",
    )(f)


def _spec_source(
    source: str | None, template: str | None, template_args: tuple[str, ...]
) -> tuple[str, dict[str, str] | None]:
    """The source to read and, for a --jsonnet template, its arguments (exactly one of -f
    and --jsonnet, as pachctl asks; --arg only with --jsonnet)."""
    if source is not None and template is not None:
        fail("give either -f/--file or --jsonnet, not both")
    if template is None:
        if template_args:
            fail("--arg is for a --jsonnet template; add --jsonnet TEMPLATE or drop --arg")
        if source is None:
            fail("give the spec with -f/--file SPEC (or a template with --jsonnet TEMPLATE)")
        return source, None
    from tusk.sdk.gitops import parse_template_args

    return template, parse_template_args(template_args)


# Pipelines


def _read_specs(
    client: Client,
    source: str,
    update: bool | None,
    jsonnet_args: dict[str, str] | None = None,
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """(name, spec) of every spec of ``source`` (a template rendered with ``jsonnet_args``
    when they are given), and where they came from.

    Each spec is checked before any is created, so a bad field in the second spec of a file
    does not leave the first one behind; so are the names, against the existing pipelines
    (``update`` None: not at all).
    """
    from tusk.errors import AlreadyExists, PipelineNotFound
    from tusk.sdk import load_spec, read_spec_source
    from tusk.sdk.projects import with_project

    specs, origin = read_spec_source(source, jsonnet_args=jsonnet_args)
    where = "<stdin>" if source == "-" else source
    named: list[tuple[str, dict[str, Any]]] = []
    for i, raw in enumerate(specs, 1):
        spec = with_project(client.project, raw)  # in the current project unless it names one
        label = where if len(specs) == 1 else f"{where} (spec {i} of {len(specs)})"
        name = load_spec(spec, label).name
        if any(name == n for n, _ in named):
            fail(f"{where}: pipeline {name} is defined twice")
        named.append((name, spec))
    if len(named) > 1 and update is not None:
        existing = {p.name for p in client.list_pipelines()}
        for name, _ in named:
            if name in existing and not update:
                raise AlreadyExists(
                    f"pipeline {name} already exists (change it with: tusk update pipeline)"
                )
            if name not in existing and update:
                raise PipelineNotFound(f"pipeline {name} not found; create it first")
    return named, origin


def _create(
    ctx: click.Context,
    source: str,
    update: bool,
    reprocess: bool,
    jsonnet_args: dict[str, str] | None = None,
) -> None:
    from tusk.errors import TuskError

    client = get_client(ctx)
    named, origin = _read_specs(client, source, update, jsonnet_args)
    done: list[PipelineInfo] = []
    for _name, spec in named:
        try:
            info = client.create_pipeline(spec, update=update, reprocess=reprocess, origin=origin)
        except TuskError as exc:
            if not done:
                raise
            names = ", ".join(p.name for p in done)
            verb = "updated" if update else "created"
            raise type(exc)(f"{exc.message} ({verb} before it: {names})") from exc
        done.append(info)
    if wants_json(ctx):
        print_json(done)
    note_unscheduled(client, "its jobs" if len(done) == 1 else "their jobs")


def _dry_run(ctx: click.Context, source: str, jsonnet_args: dict[str, str] | None) -> None:
    client = get_client(ctx)
    named, _origin = _read_specs(client, source, None, jsonnet_args)
    plans: list[dict[str, Any]] = [
        {"pipeline": name, "datums": client.dry_run(spec)} for name, spec in named
    ]
    emit(
        ctx,
        plans,
        lambda: render.dry_run_table([(p["pipeline"], d) for p in plans for d in p["datums"]]),
    )


@click.command("pipeline")
@_spec_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only print the datums the spec would have on the current data; create nothing.",
)
@output_option
@click.pass_context
def create_pipeline(
    ctx: click.Context,
    source: str | None,
    template: str | None,
    template_args: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Create the pipelines of a spec file (or --jsonnet template); each gets an output repo
    of its name.

    A job starts for the inputs' current data once a scheduler runs (tusk up), or when a
    tusk wait runs it on a home where no scheduler runs.
    """
    spec, jsonnet_args = _spec_source(source, template, template_args)
    if dry_run:
        _dry_run(ctx, spec, jsonnet_args)
    else:
        _create(ctx, spec, update=False, reprocess=False, jsonnet_args=jsonnet_args)


@click.command("pipeline")
@_spec_option
@click.option(
    "--reprocess",
    is_flag=True,
    help="Run every datum again under the new version (default: only changed datums run).",
)
@output_option
@click.pass_context
def update_pipeline(
    ctx: click.Context,
    source: str | None,
    template: str | None,
    template_args: tuple[str, ...],
    reprocess: bool,
) -> None:
    """Replace existing pipelines with a new version of their specs (or --jsonnet template)."""
    spec, jsonnet_args = _spec_source(source, template, template_args)
    _create(ctx, spec, update=True, reprocess=reprocess, jsonnet_args=jsonnet_args)


@click.command("pipeline")
@output_option
@click.pass_context
def list_pipeline(ctx: click.Context) -> None:
    """List pipelines: version, state, input, state of the last job."""
    pipelines = get_client(ctx).list_pipelines()
    emit(ctx, pipelines, lambda: render.pipeline_table(pipelines))


@click.command("pipeline")
@click.argument("name")
@click.option("--history", is_flag=True, help="Also list every version of the spec.")
@output_option
@click.pass_context
def inspect_pipeline(ctx: click.Context, name: str, history: bool) -> None:
    """Show one pipeline: input, transform, state, last job (and with --history, versions)."""
    info = get_client(ctx).inspect_pipeline(name, history=history)

    def table() -> None:
        render.pipeline_fields(info)
        if history:
            click.echo()
            render.pipeline_history_table(info)

    emit(ctx, info, table)


@click.command("pipeline")
@click.argument("name")
@click.option("--keep-repo", is_flag=True, help="Keep the output repo and its commits.")
@click.option(
    "--force", is_flag=True, help="Delete even if other pipelines read this one's output."
)
@output_option
@click.pass_context
def delete_pipeline(ctx: click.Context, name: str, keep_repo: bool, force: bool) -> None:
    """Delete a pipeline (its running jobs are killed) and its output repo."""
    get_client(ctx).delete_pipeline(name, keep_repo=keep_repo, force=force)
    if wants_json(ctx):
        print_json({"deleted": name})


@click.command("pipeline")
@click.argument("name")
@output_option
@click.pass_context
def stop_pipeline(ctx: click.Context, name: str) -> None:
    """Pause a pipeline: new input commits queue jobs that run once it is started."""
    info = get_client(ctx).stop_pipeline(name)
    emit(ctx, info)


@click.command("pipeline")
@click.argument("name")
@output_option
@click.pass_context
def start_pipeline(ctx: click.Context, name: str) -> None:
    """Resume a paused pipeline."""
    info = get_client(ctx).start_pipeline(name)
    emit(ctx, info)


@click.command("pipeline")
@click.argument("name")
@click.option(
    "--branch",
    default=None,
    help="Run on this branch of the inputs, into this branch of the output repo (e.g. a "
    "pull request's pr-12); missing branches are made from the usual ones.",
)
@output_option
@click.pass_context
def run_pipeline(ctx: click.Context, name: str, branch: str | None) -> None:
    """Run a pipeline again on its inputs' current data; print the job (PIPELINE@ID).

    The job id is the id of the new commit set; -o json shows the new output commit. With
    --branch, the pipeline and every pipeline up- and downstream of it get that branch, so
    later commits to data@BRANCH run the graph there; unchanged datums are skipped.
    """
    info = get_client(ctx).run_pipeline(name, branch)
    emit(ctx, info, lambda: click.echo(f"{name}@{info.commit_set}"))


# Jobs


def _job_failed(job: JobInfo) -> str:
    what = "failed" if job.state == "failure" else f"was {job.state}"
    return f"job {job.pipeline}@{job.id} {what}: {job.reason or 'no reason recorded'}"


@click.command("job")
@click.option(
    "-p", "--pipeline", default=None, metavar="PIPELINE", help="Only this pipeline's jobs."
)
@click.option("--commit-set", default=None, metavar="ID", help="Only the jobs of this commit set.")
@output_option
@click.pass_context
def list_job(ctx: click.Context, pipeline: str | None, commit_set: str | None) -> None:
    """List jobs, newest first: state, duration and datums processed, skipped and failed."""
    jobs = get_client(ctx).list_jobs(pipeline=pipeline, commit_set=commit_set)
    emit(ctx, jobs, lambda: render.job_table(jobs))


@click.command("job")
@click.argument("address", metavar="PIPELINE@JOB")
@output_option
@click.pass_context
def inspect_job(ctx: click.Context, address: str) -> None:
    """Show one job: state, reason, input and output commits, datum counts."""
    info = get_client(ctx).inspect_job(address)
    emit(ctx, info, lambda: render.job_fields(info))


@click.command("job")
@click.argument("address", metavar="PIPELINE@JOB")
@output_option
@click.pass_context
def stop_job(ctx: click.Context, address: str) -> None:
    """Kill a job: its running datums stop and its output commit is dropped."""
    info = get_client(ctx).stop_job(address)
    emit(ctx, info)


@click.command("datum")
@click.argument("address", metavar="PIPELINE@JOB")
@click.argument("filters", nargs=-1, metavar="[FILTER]...")
@output_option
@click.pass_context
def restart_datum(ctx: click.Context, address: str, filters: tuple[str, ...]) -> None:
    """Stop a running job's datums and run them again (the try is not counted), as pachctl
    restart datum: those FILTERs name (a datum id or prefix, an input file's path or its
    content hash), else every running datum of the job."""
    restarted = get_client(ctx).restart_datum(address, filters)

    def table() -> None:
        click.echo(f"restarted {len(restarted)} datum(s)")
        for datum in restarted:
            click.echo(f"  {datum}")

    emit(ctx, {"restarted": restarted}, table)


@click.command("job")
@click.argument("address", metavar="PIPELINE@JOB")
@_timeout_option
@run_option
@output_option
@click.pass_context
def wait_job(ctx: click.Context, address: str, timeout: float | None, no_run: bool) -> None:
    """Wait until a job is done, then show it; exit 1 if it did not succeed.

    On a home where no scheduler runs, the pending jobs run in this process meanwhile.
    """
    log = progress_log(ctx, stdout_json=False)
    info = get_client(ctx).wait_job(address, timeout=timeout, run=not no_run, log=log)
    emit(ctx, info, lambda: render.job_fields(info))
    if info.state != "success":
        raise CliError(_job_failed(info), 1)


@click.command("commit-set")
@click.argument("commit_set", metavar="ID")
@_timeout_option
@run_option
@output_option
@click.pass_context
def wait_commit_set(
    ctx: click.Context, commit_set: str, timeout: float | None, no_run: bool
) -> None:
    """Wait until every job of a commit set is done, then list them; exit 1 if one failed.

    On a home where no scheduler runs, the pending jobs run in this process meanwhile.
    """
    log = progress_log(ctx, stdout_json=False)
    client = get_client(ctx)
    jobs = client.wait_commit_set(commit_set, timeout=timeout, run=not no_run, log=log)
    emit(ctx, jobs, lambda: render.job_table(jobs))
    failed = [j for j in jobs if j.state != "success"]
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise CliError(_job_failed(failed[0]) + more, 1)


# Datums


@click.command("datum")
@click.argument("address", metavar="PIPELINE@JOB")
@output_option
@click.pass_context
def list_datum(ctx: click.Context, address: str) -> None:
    """List a job's datums: state, attempts, input files, error."""
    datums = get_client(ctx).list_datums(address)
    emit(ctx, datums, lambda: render.datum_table(datums))


@click.command("datum")
@click.argument("address", metavar="PIPELINE@JOB")
@click.argument("datum", metavar="DATUM")
@output_option
@click.pass_context
def inspect_datum(ctx: click.Context, address: str, datum: str) -> None:
    """Show one datum (a unique prefix of its id is enough): files, exit code, stderr."""
    info = get_client(ctx).inspect_datum(address, datum)
    emit(ctx, info, lambda: render.datum_fields(info))


# Logs


@click.command("logs")
@click.option(
    "-p", "--pipeline", default=None, metavar="PIPELINE", help="The pipeline whose logs to show."
)
@click.option(
    "-j", "--job", default=None, metavar="JOB", help="Only this job (its id, or PIPELINE@ID)."
)
@click.option("--datum", default=None, metavar="DATUM", help="Only this datum (an id prefix).")
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Keep printing new lines: until the job is done with --job, else until Ctrl-C.",
)
@output_option
@click.pass_context
def logs(
    ctx: click.Context,
    pipeline: str | None,
    job: str | None,
    datum: str | None,
    follow: bool,
) -> None:
    """Print what user code wrote to stdout and stderr, as [datum] line."""
    if job is not None and "@" in job:
        owner, _, job = job.partition("@")
        if pipeline is not None and owner != pipeline:
            fail(f"--job {owner}@{job} is not a job of --pipeline {pipeline}")
        pipeline = owner
    if not pipeline:
        fail("logs needs --pipeline PIPELINE (or --job PIPELINE@JOB)")
    if job is not None and not job:
        fail("--job needs a job id")
    client = get_client(ctx)
    as_json = wants_json(ctx)

    def drain(after: int, out: Callable[[Any], None]) -> int:
        while True:
            batch = client.logs(pipeline, job=job, datum=datum, after=after)
            if not batch:
                return after
            for line in batch:
                out(line)
            after = batch[-1].id

    if not follow:
        lines: list[Any] = []
        drain(0, lines.append if as_json else lambda ln: click.echo(render.log_line(ln)))
        if as_json:
            print_json(lines)
        return

    def show(line: Any) -> None:
        if as_json:
            click.echo(json.dumps(line.to_dict()))  # one object per line while following
        else:
            click.echo(render.log_line(line))

    def job_done() -> bool:
        return job is not None and client.inspect_job(f"{pipeline}@{job}").done

    last = 0
    try:
        while True:
            done = job_done()  # before reading, so no line written before the end is missed
            last = drain(last, show)
            if done:
                return
            time.sleep(FOLLOW_POLL)
    except KeyboardInterrupt:
        return


# Lineage


@click.command("lineage")
@click.argument("address", metavar="REPO@REF:/PATH")
@click.option(
    "--depth",
    type=click.IntRange(min=0),
    default=32,
    show_default=True,
    help="How many steps up the inputs to follow (0: only the job that wrote the file).",
)
@output_option
@click.pass_context
def lineage(ctx: click.Context, address: str, depth: int) -> None:
    """How a file was made: pipeline version, job, datum, code and image, then its inputs."""
    step = get_client(ctx).lineage(address, depth=depth)
    emit(ctx, step, lambda: render.lineage_tree(step))


# The scheduler


_SANDBOX_NOTES = {
    "bwrap": "bubblewrap: /pfs is a private read-only mount, /pfs/out the only writable place",
    "none": "no sandbox: user code finds its inputs under $TUSK_PFS and can write anywhere",
}


@contextmanager
def _stop_on_signals(stop: threading.Event, log: Callable[[str], None]) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop``; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log(f"{signal.Signals(signum).name}: stopping (send it again to stop at once)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _server_home(ctx: click.Context, command: str) -> Path | None:
    """The home ``up``/``serve`` run on: ``--home``, else None ($TUSK_HOME); never a remote."""
    from tusk.cli.core import State

    if ctx.meta.get(ADDRESS_KEY):
        fail(f"tusk {command} runs the server here, on a home: drop --address (use --home)")
    state = ctx.find_root().ensure_object(State)
    return state.home


def _logger(ctx: click.Context) -> Callable[[str], None]:
    return progress_log(ctx)


DEFAULT_PORT = 7800  # tusk.server.DEFAULT_PORT (not imported: --help stays quick)
DEFAULT_S3_PORT = 30600  # Pachyderm's S3 gateway port
DEFAULT_GRPC_PORT = 30650  # pachd's port, pachyderm-sdk's and pachctl's default


_PORT = click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="The HTTP port of the REST API and the web console (0: any free port).",
)


def _http_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = _PORT(f)
    f = click.option(
        "--insecure",
        is_flag=True,
        help="Allow a non-loopback --host while auth is off (anyone reaching it may change "
        "anything); without it, that is refused until tusk auth activate.",
    )(f)
    f = click.option(
        "--tls-cert",
        type=click.Path(dir_okay=False),
        default=None,
        help="Serve HTTPS with this certificate (PEM; needs --tls-key).",
    )(f)
    f = click.option(
        "--tls-key", type=click.Path(dir_okay=False), default=None, help="The TLS key (PEM)."
    )(f)
    return click.option(
        "--host",
        default="127.0.0.1",
        show_default=True,
        help="Listen on this address; 0.0.0.0 or :: listens on every interface (needs auth "
        "on, see tusk auth activate, or --insecure).",
    )(f)


def _tls(cert: str | None, key: str | None) -> tuple[str, str] | None:
    if (cert is None) != (key is None):
        fail("--tls-cert and --tls-key go together")
    return None if cert is None or key is None else (cert, key)


def _explicit(ctx: click.Context, *names: str) -> bool:
    return any(
        ctx.get_parameter_source(n) not in (None, click.core.ParameterSource.DEFAULT) for n in names
    )


def _start_api(ctx: click.Context, server: Server, log: Callable[[str], None]) -> Server | None:
    """Start the API next to the scheduler; a default port that is taken only turns it off."""
    from tusk.errors import InUse

    try:
        server.start()
    except InUse as exc:
        server.close()
        # A port the user gave is an error when taken (the S3 and gRPC ports given too: a
        # default one only turns its own edge off, see Server).
        if _explicit(ctx, "host", "port", "s3_port", "grpc_port"):
            raise
        log(f"REST API off: {exc.message} (another tusk up?)")
        return None
    log(f"REST API on {server.url}/api/v1 (docs: {server.url}/docs)")
    log(f"web console on {server.url}/")
    if server.s3_url is not None:
        log(f"S3 gateway on {server.s3_url} (buckets: branch.repo; see docs/s3.md)")
    elif server.s3_off is not None:
        log(f"S3 gateway off: {server.s3_off} (another tusk up? pick one with --s3-port)")
    if server.grpc_url is not None:
        log(f"Pachyderm gRPC API on {server.grpc_url} (pachctl, pachyderm-sdk; see docs/grpc.md)")
    elif server.grpc_off is not None:
        log(f"Pachyderm gRPC API off: {server.grpc_off} (another tusk up? use --grpc-port)")
    return server


@click.command("up")
@click.option("--once", is_flag=True, help="Exit when no job is waiting or running (no HTTP).")
@click.option(
    "--sandbox",
    type=click.Choice(["auto", "bwrap", "none"]),
    default=None,
    help="How user code runs: in a bubblewrap mount namespace, or as plain processes "
    "(default: $TUSK_SANDBOX, else auto: bwrap where it works).",
)
@_http_options
@click.option("--no-http", is_flag=True, help="Run only the scheduler: no REST API.")
@click.option(
    "--s3-port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_S3_PORT,
    show_default=True,
    help="The port of the S3 gateway (0: any free port); every branch is a bucket.",
)
@click.option("--no-s3", is_flag=True, help="Do not serve the S3 gateway.")
@click.option(
    "--s3-domain",
    default=None,
    metavar="DOMAIN",
    help="Also answer virtual-host style requests (BUCKET.DOMAIN) on the S3 gateway.",
)
@click.option(
    "--grpc-port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_GRPC_PORT,
    show_default=True,
    help="The port of Pachyderm's gRPC API, for pachyderm-sdk and pachctl (0: any free port).",
)
@click.option("--no-grpc", is_flag=True, help="Do not serve Pachyderm's gRPC API.")
@click.option(
    "--executor",
    default=None,
    metavar="local|host|dask://HOST:PORT",
    help="Where datums run: local processes, in the spec's image when it names one (default: "
    "$TUSK_EXECUTOR, else local); host: always on this machine, images only recorded; or the "
    "workers of a Dask cluster.",
)
@output_option
@click.pass_context
def up(
    ctx: click.Context,
    once: bool,
    sandbox: str | None,
    host: str,
    port: int,
    insecure: bool,
    tls_cert: str | None,
    tls_key: str | None,
    no_http: bool,
    s3_port: int,
    no_s3: bool,
    s3_domain: str | None,
    grpc_port: int,
    no_grpc: bool,
    executor: str | None,
) -> None:
    """Run the scheduler and its workers, and serve the REST API, in the foreground.

    Jobs start for every new input commit. The API answers at http://HOST:PORT/api/v1 (docs
    at /docs); if the default port is taken (another tusk up on this machine), the scheduler
    runs without it. The S3 gateway answers at http://HOST:S3-PORT (buckets branch.repo, see
    docs/s3.md). Ctrl-C or SIGTERM stops; progress goes to stderr (-o json: JSON lines on
    stdout).
    """
    from tusk.sdk import Client
    from tusk.server import Server, Services

    # An explicit home: in-process even when $TUSK_ADDRESS names a server for other commands.
    client = Client(_server_home(ctx, "up") or default_home())
    ctx.call_on_close(client.close)
    mode = client.sandbox_mode(sandbox)
    log = _logger(ctx)
    until = "until no job is waiting or running" if once else "until Ctrl-C"
    stop = threading.Event()
    server = None
    # Signals are caught from the start: the API takes a moment to come up.
    with _stop_on_signals(stop, log):
        log(f"scheduler running on {client.home} {until}; sandbox: {mode} ({_SANDBOX_NOTES[mode]})")
        try:
            if not (once or no_http):
                api = Server(
                    Services.open(client.home),
                    host=host,
                    port=port,
                    insecure=insecure,
                    tls=_tls(tls_cert, tls_key),
                    s3_port=None if no_s3 else s3_port,
                    s3_domain=s3_domain,
                    s3_optional=not _explicit(ctx, "s3_port"),
                    grpc_port=None if no_grpc else grpc_port,
                    grpc_optional=not _explicit(ctx, "grpc_port"),
                )
                server = _start_api(ctx, api, log)
            url = server.url if server is not None else None
            s3 = server.s3_url if server is not None else None
            client.run_scheduler(
                stop, once=once, sandbox=mode, log=log, executor=executor, api_url=url, s3_url=s3
            )
        finally:
            if server is not None:
                server.close()
    log("scheduler stopped")


@click.command("worker")
@click.option(
    "--sandbox",
    type=click.Choice(["auto", "bwrap", "none"]),
    default=None,
    help="How user code runs (as for tusk up).",
)
@click.option(
    "--pipeline",
    "pipelines",
    multiple=True,
    metavar="NAME",
    help="Run only these pipelines' datums (repeat for several; default: every pipeline; "
    "against a server (--address) at least one is needed).",
)
@click.option(
    "--handoff",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Hand each datum to the pipeline image's container through DIR (a Kubernetes pod's "
    "shared /tusk; see docs/kubernetes.md) instead of running it here.",
)
@click.option(
    "--pfs-mount",
    type=click.Path(file_okay=False),
    default="/pfs",
    show_default=True,
    help="With --handoff: the folder the user container sees as /pfs.",
)
@click.option(
    "--s3-endpoint",
    envvar="TUSK_S3_ENDPOINT",
    default=None,
    metavar="URL",
    help="The S3 gateway of the tusk up that manages the jobs (its 'S3 gateway on' line), for "
    "pipelines with S3 inputs or s3_out [env: TUSK_S3_ENDPOINT].",
)
@click.option("--once", is_flag=True, help="Exit when no job of its pipelines is left.")
@output_option
@click.pass_context
def worker(
    ctx: click.Context,
    sandbox: str | None,
    pipelines: tuple[str, ...],
    handoff: str | None,
    pfs_mount: str,
    s3_endpoint: str | None,
    once: bool,
) -> None:
    """Run datums only, for jobs that a tusk up elsewhere starts and finishes.

    Workers on several machines share a job through the metadata store: each claims datums
    with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL); a dead worker's datums return to
    the queue. Point it at the same stores (TUSK_METADATA_URL, TUSK_STORAGE_URL), or at the
    server with --address URL (or $TUSK_ADDRESS, $TUSK_TOKEN): then it opens no store, claims
    the datums of each --pipeline through the REST API, downloads their inputs and sends back
    /pfs/out; its token needs the pipelineWorker (or clusterAdmin) cluster role.
    """
    from tusk.cli.core import State
    from tusk.config import setting
    from tusk.sdk import Client

    state = ctx.find_root().ensure_object(State)
    remote = state.home is None and bool(ctx.meta.get(ADDRESS_KEY) or setting("address"))
    client = get_client(ctx) if remote else Client(state.home or default_home())
    if not remote:
        ctx.call_on_close(client.close)
    executor = None
    if handoff is not None:
        executor = f"handoff:{Path(handoff).absolute()},pfs={Path(pfs_mount).absolute()}"
        mode = f"handoff through {handoff}"
    elif not remote:
        mode = client.sandbox_mode(sandbox)
    else:  # chosen on this machine by the worker, which says which when it starts
        mode = "this machine's (below)"
    log = _logger(ctx)
    stop = threading.Event()
    which = f" for {', '.join(pipelines)}" if pipelines else ""
    until = "until its jobs are done" if once else "until Ctrl-C"
    where = getattr(client, "address", None) or client.home
    with _stop_on_signals(stop, log):
        log(f"worker{which} running on {where} {until}; sandbox: {mode}")
        client.run_scheduler(
            stop,
            once=once,
            sandbox=None if handoff else sandbox if remote else mode,
            log=log,
            role="worker",
            executor=executor,
            pipelines=list(pipelines) or None,
            s3_url=s3_endpoint,
        )
    log("worker stopped")


@click.command("serve")
@_http_options
@output_option
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    insecure: bool,
    tls_cert: str | None,
    tls_key: str | None,
) -> None:
    """Serve the REST API on a home without running jobs (tusk up does both).

    The API answers at http://HOST:PORT/api/v1, docs at /docs; point clients at it with
    --address or $TUSK_ADDRESS. Ctrl-C or SIGTERM stops.
    """
    from tusk.server import Server, Services

    home = _server_home(ctx, "serve") or default_home()
    log = _logger(ctx)
    stop = threading.Event()
    with _stop_on_signals(stop, log):
        server = Server(
            Services.open(home),
            host=host,
            port=port,
            insecure=insecure,
            tls=_tls(tls_cert, tls_key),
        )
        try:
            server.start()
            log(
                f"REST API on {server.url}/api/v1 for {server.services.home} until Ctrl-C "
                f"(docs: {server.url}/docs; no jobs run: tusk up runs them)"
            )
            server.run(stop, scheduler=False)
        finally:
            server.close()
    log("server stopped")


@click.command("console")
@_PORT
@output_option
@click.pass_context
def console(ctx: click.Context, port: int) -> None:
    """Serve the web console for a home on 127.0.0.1 (tusk up serves it too).

    The REST API answers under it (/api/v1). Open the address it prints in a browser: the
    DAG of repos and pipelines, commits, files, jobs, datums, logs and lineage. No job runs
    here (tusk up runs them). Ctrl-C or SIGTERM stops.
    """
    from tusk.server import Server, Services

    home = _server_home(ctx, "console") or default_home()
    log = _logger(ctx)
    stop = threading.Event()
    with _stop_on_signals(stop, log):
        server = Server(Services.open(home), host="127.0.0.1", port=port)
        try:
            server.start()
            log(f"web console on {server.url}/ for {server.services.home} until Ctrl-C")
            server.run(stop, scheduler=False)
        finally:
            server.close()
    log("console stopped")
