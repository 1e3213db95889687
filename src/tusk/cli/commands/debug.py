"""``debug datum``: one datum's exact inputs in a folder, then a shell there or a rerun."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tusk.cli.core import CliError, emit, fail, get_client, output_option

if TYPE_CHECKING:
    from tusk.sdk.debugging import DatumRerun, DebugFolder

_SHOWN_FILES = 20  # input files listed one by one; the rest are counted


@click.command("datum")
@click.argument("pipeline", metavar="PIPELINE")
@click.argument("job", metavar="JOB")
@click.argument("datum", metavar="DATUM")
@click.argument("command", nargs=-1, metavar="[-- COMMAND...]")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Where to write the datum (default: ./datum-<first 12 digits of its id>).",
)
@click.option("--force", is_flag=True, help="Write into --dir even if it is not empty.")
@click.option("--shell", is_flag=True, help="Then open $SHELL there with the datum's env.")
@click.option(
    "--run", "rerun", is_flag=True, help="Then rerun its command and compare the two logs."
)
@click.option(
    "--working-dir",
    default=None,
    metavar="DIR",
    help="Run the command in DIR (your copy of the code), not where the datum ran.",
)
@output_option
@click.pass_context
def debug_datum(
    ctx: click.Context,
    pipeline: str,
    job: str,
    datum: str,
    command: tuple[str, ...],
    folder: Path | None,
    force: bool,
    shell: bool,
    rerun: bool,
    working_dir: str | None,
) -> None:
    """Write a datum's exact inputs to a folder, then rerun it or open a shell there.

    The datum's files, read from the commits its job read (not the branch heads), go to
    DIR/pfs/<input>; DIR/datum.json records the pipeline version, code commit, image or
    host, and environment it ran with (secrets by name only), DIR/env.sh that environment,
    and DIR/run.sh reruns it. A DIR that already holds this datum is used as it is.

    --run reruns the command as the scheduler does (on the host, in bubblewrap where it
    works, or in the job's image), /pfs/<input> being DIR/pfs/<input> and /pfs/out
    DIR/pfs/out, and prints its log after the original run's; exit 1 if it fails. A COMMAND
    after -- replaces transform.cmd and stdin for the rerun. Env-var secrets come from your
    environment (export them); mounted secrets are not given.
    """
    if shell and rerun:
        fail("give --shell or --run, not both")
    if command and not rerun:
        fail("a COMMAND after -- is for --run")
    client = get_client(ctx)
    address = f"{pipeline}@{job}"
    debug = client.debug_datum(address, datum, folder, force=force)
    if shell:
        _show_written(debug)
        code = debug.shell(working_dir)
        if code:
            raise CliError(f"the shell exited with code {code}", 1)
        return
    if not rerun:
        emit(ctx, debug, lambda: _show_next(debug))
        return
    result = debug.rerun(command or None, working_dir)
    emit(ctx, {**debug.to_dict(), "rerun": result.to_dict()}, lambda: _show_rerun(debug, result))
    if not result.ok:
        raise CliError(_failure(debug, result), 1)


def _show_written(debug: DebugFolder) -> None:
    run = debug.run
    if debug.reused:
        click.echo(f"using {debug.path}: it holds datum {run.datum[:12]} already", err=True)
        return
    click.echo(f"datum {run.datum} of job {run.pipeline}@{run.job} ({run.state})", err=True)
    by_input: dict[str, str] = {}
    for f in run.files:
        by_input.setdefault(f["input_name"], f"{f['repo']}@{f['commit']}")
    for name, source in sorted(by_input.items()):
        click.echo(f"  input {name}: {source}", err=True)


def _show_next(debug: DebugFolder) -> None:
    run = debug.run
    click.echo(f"datum {run.datum} of job {run.pipeline}@{run.job}: {run.state}")
    if run.error:
        click.echo(f"  error: {run.error}")
    code = run.code.get("sha") or run.code.get("spec_file") or "-"
    click.echo(f"  pipeline version {run.version} (spec {run.spec_hash[:12]}), code {code}")
    click.echo(f"  executor: {debug.executor()}")
    if debug.reused:
        click.echo(f"{debug.path} holds this datum already: nothing written")
    else:
        inputs = [w for w in debug.written if w.startswith("pfs/")]
        for rel in inputs[:_SHOWN_FILES]:
            click.echo(f"wrote {debug.path / rel}")
        if len(inputs) > _SHOWN_FILES:
            click.echo(f"wrote {len(inputs) - _SHOWN_FILES} more files under {debug.pfs}")
        others = [w for w in debug.written if not w.startswith("pfs/")]
        click.echo(f"wrote {', '.join(str(debug.path / w) for w in others)}")
    args = f"{run.pipeline} {run.job} {run.datum[:12]} --dir {debug.path}"
    click.echo("next:")
    click.echo(f"  {debug.path / 'run.sh'}    rerun it, its log next to the original's")
    click.echo(f"  tusk debug datum {args} --shell    a shell with its inputs and env")


def _show_rerun(debug: DebugFolder, result: DatumRerun) -> None:
    run = debug.run
    _show_written(debug)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    code = "-" if result.original_exit_code is None else result.original_exit_code
    click.echo(f"== original run: job {run.pipeline}@{run.job}, {run.state}, exit code {code} ==")
    for ln in result.original:
        click.echo(f"[{ln['stream']}] {ln['line']}")
    code = "-" if result.exit_code is None else result.exit_code
    state = "success" if result.ok else "failed"
    click.echo(f"== this run: {result.executor}, {state}, exit code {code} ==")
    for ln in result.logs:
        click.echo(f"[{ln['stream']}] {ln['line']}")
    if result.ok:
        n = len(result.outputs)
        click.echo(f"wrote {n} output file{'s' if n != 1 else ''} under {debug.pfs / 'out'}")
    logs = debug.path / "logs"
    click.echo(f"(both logs: {logs / 'original.txt'}, {logs / 'rerun.txt'})")


def _failure(debug: DebugFolder, result: DatumRerun) -> str:
    what = result.error or f"exit code {result.exit_code}"
    return f"the rerun of datum {debug.run.datum[:12]} failed: {what}"
