"""``put|get|list|glob|inspect|diff|copy|delete file``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from tusk.cli import progress, render
from tusk.cli.core import (
    binary_stdin,
    binary_stdout,
    emit,
    fail,
    get_client,
    note_unscheduled,
    output_option,
    print_json,
    source_failure,
    text_stdin,
    wants_json,
)
from tusk.cli.parse import STDIN, PutPlan, local_total, plan_put, read_source_list

if TYPE_CHECKING:
    from tusk.sdk import Client, PutResult


# put file


def _read_lists(lists: tuple[str, ...]) -> list[str]:
    sources: list[str] = []
    for name in lists:
        if name == STDIN:
            text = text_stdin().read()
        else:
            try:
                with open(name, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
                source_failure(f"cannot read list file {name!r}: {reason}")
        sources.extend(read_source_list(text))
    return sources


def _run_put(
    client: Client, plan: PutPlan, append: bool, description: str, cb: progress.ProgressFn | None
) -> PutResult:
    stdin = binary_stdin()

    def source(src: str) -> str | BinaryIO:
        return stdin if src == STDIN else src

    if plan.kind == "objects":
        return client.copy_objects(
            plan.address, plan.items[0][1], append=append, description=description, progress=cb
        )
    if plan.kind == "dir":
        return client.put_dir(
            plan.address, plan.items[0][1], append=append, description=description, progress=cb
        )
    if plan.kind == "file":
        return client.put_file(
            plan.address,
            source(plan.items[0][1]),
            append=append,
            description=description,
            progress=cb,
        )
    pairs = [(name, source(src)) for name, src in plan.items]
    return client.put_files(
        plan.address, pairs, append=append, description=description, progress=cb
    )


@click.command("file")
@click.argument("address", metavar="REPO@BRANCH[:/PATH]")
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    metavar="SRC",
    help="A local file, '-' for stdin, an http(s) URL or an s3:// object (repeatable).",
)
@click.option(
    "-i",
    "--input-file",
    "lists",
    multiple=True,
    metavar="LISTFILE",
    help="A file listing one source per line ('-' reads the list from stdin).",
)
@click.option(
    "-r",
    "--recursive",
    is_flag=True,
    help="Put a local directory (-f DIR), or every object below an s3:// prefix.",
)
@click.option(
    "--endpoint-url",
    default=None,
    metavar="URL",
    help="The S3-compatible endpoint of s3:// sources (sets AWS_ENDPOINT_URL_S3).",
)
@click.option("-a", "--append", is_flag=True, help="Append to existing files, don't overwrite.")
@click.option("-d", "--description", default="", help="Description of the commit made.")
@output_option
@click.pass_context
def put_file(
    ctx: click.Context,
    address: str,
    files: tuple[str, ...],
    lists: tuple[str, ...],
    recursive: bool,
    endpoint_url: str | None,
    append: bool,
    description: str,
) -> None:
    """Put files into a branch (a new commit) or into its open commit.

    One -f goes to PATH (or keeps its name under REPO@BRANCH or a PATH ending in '/');
    several -f or -i go under PATH as a directory, all in one commit.
    """
    plan = plan_put(address, files, _read_lists(lists), recursive)
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint_url  # for s3:// sources, read here
    client = get_client(ctx)
    total = local_total(plan) if progress.enabled() else None
    with progress.progress_bar("put", total) as cb:
        result = _run_put(client, plan, append, description, cb)
    emit(ctx, result)
    if result.commit.subvenance:  # the commit feeds pipelines
        note_unscheduled(client, "the jobs it starts")


# get file


def _write_atomically(local: Path, write: Callable[[BinaryIO], int]) -> int:
    """Write through a temp file renamed into place, so a failure leaves ``local`` untouched."""
    tmp = local.with_name(f".{local.name}.tusk-{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            n = write(f)
        os.replace(tmp, local)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


@click.command("file")
@click.argument("address", metavar="REPO@REF:/PATH")
@click.option(
    "-o",
    "--output",
    "local",
    type=click.Path(path_type=Path),
    default=None,
    help="Write to this local file (or directory, with -r) instead of stdout.",
)
@click.option("-r", "--recursive", is_flag=True, help="Get a directory (needs -o DIR).")
@click.option("--tar", is_flag=True, help="Write every file at or below PATH as a tar stream.")
@click.pass_context
def get_file(
    ctx: click.Context, address: str, local: Path | None, recursive: bool, tar: bool
) -> None:
    """Print a file to stdout, or write it, a directory or a tar stream locally.

    Here -o names the local target (as in pachctl); use 'tusk -o json get file ... -o LOCAL'
    for a JSON summary.
    """
    client = get_client(ctx)
    stdout = binary_stdout()
    if tar:
        if local is None:
            files = client.get_tar(address, stdout)
        else:

            def write_tar(f: BinaryIO) -> int:
                return client.get_tar(address, f)

            files = _write_atomically(local, write_tar)
        summary = {"address": address, "tar": True, "files": files}
    elif recursive:
        if local is None:
            fail("get file -r needs a local directory: -o DIR (or use --tar)")
        total = client.inspect_file(address).size if progress.enabled() else None
        with progress.progress_bar("get", total) as cb:
            files = client.get_dir(address, local, progress=cb)
        summary = {"address": address, "path": str(local), "files": files}
    else:
        total = client.inspect_file(address).size if progress.enabled() else None
        with progress.progress_bar("get", total) as cb:
            if local is None:
                size = client.get_file_to(address, stdout, progress=cb)
                return
            if local.is_dir():
                local = local / (address.rstrip("/").rsplit("/", 1)[-1] or "file")
            size = _write_atomically(
                local,
                lambda f: client.get_file_to(address, f, progress=cb),
            )
        summary = {"address": address, "path": str(local), "files": 1, "bytes": size}
    if local is not None and wants_json(ctx):
        print_json(summary)


# reading


@click.command("file")
@click.argument("address", metavar="REPO@REF[:/DIR]")
@output_option
@click.pass_context
def list_file(ctx: click.Context, address: str) -> None:
    """List the files and directories in a directory (default: the root)."""
    files = get_client(ctx).list_files(address)
    emit(ctx, files, lambda: render.file_table(files))


@click.command("file")
@click.argument("pattern", metavar="REPO@REF:GLOB")
@output_option
@click.pass_context
def glob_file(ctx: click.Context, pattern: str) -> None:
    """List files matching a glob: *, ?, [..] within a name, ** across directories.

    Quote the pattern so your shell leaves it alone: tusk glob file 'data@master:/**/*.csv'
    """
    files = get_client(ctx).glob_files(pattern)
    emit(ctx, files, lambda: render.file_table(files))


@click.command("file")
@click.argument("address", metavar="REPO@REF:/PATH")
@output_option
@click.pass_context
def inspect_file(ctx: click.Context, address: str) -> None:
    """Show a file's or directory's type, size, hash and chunk count."""
    info = get_client(ctx).inspect_file(address)
    emit(ctx, info, lambda: render.file_fields(info))


@click.command("file")
@click.argument("new", metavar="NEW")
@click.argument("old", metavar="[OLD]", required=False)
@output_option
@click.pass_context
def diff_file(ctx: click.Context, new: str, old: str | None) -> None:
    """Show files added, removed or changed from OLD (default: NEW's parent) to NEW.

    NEW and OLD are REPO@REF[:/PATH]; the path of NEW limits the diff.
    """
    entries = get_client(ctx).diff_file(new, old)
    emit(ctx, entries, lambda: render.diff_table(entries))


# writing


@click.command("file")
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
@output_option
@click.pass_context
def copy_file(ctx: click.Context, src: str, dst: str) -> None:
    """Copy a file or directory (REPO@REF:/PATH) to REPO@BRANCH:/PATH without copying data."""
    info = get_client(ctx).copy_file(src, dst)
    emit(ctx, info)


@click.command("file")
@click.argument("address", metavar="REPO@BRANCH:/PATH")
@click.option("-d", "--description", default="", help="Description of the commit made.")
@output_option
@click.pass_context
def delete_file(ctx: click.Context, address: str, description: str) -> None:
    """Delete a file or a whole directory."""
    info = get_client(ctx).delete_file(address, description=description)
    emit(ctx, info)
