"""``tusk mount`` and ``tusk unmount``: commits as a folder, read-only or staging writes into
one commit per branch (see tusk.sdk.mount)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click

from tusk.cli.core import fail, get_client
from tusk.units import parse_size


def _size(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        return 0 if value.strip() == "0" else parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("mount")
@click.argument("refs", nargs=-1, metavar="REPO@REF [REPO@REF ...]")
@click.argument("mountpoint", type=click.Path(path_type=Path))
@click.option(
    "--cache-size",
    default="256MiB",
    show_default=True,
    metavar="SIZE",
    callback=_size,
    help="Keep up to SIZE of the blocks read in memory, so repeated and random reads do not "
    "fetch again (0: keep none; the kernel's page cache comes on top).",
)
@click.option(
    "--stats",
    "stats_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="When the mount ends, write what it fetched and served to FILE as JSON.",
)
@click.option(
    "--write",
    is_flag=True,
    help="Writable: every REPO@REF must be a branch; changes are staged locally and become one "
    "commit on each branch when the mount ends (tusk unmount, Ctrl-C, SIGTERM).",
)
@click.option(
    "--staging",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="With --write: stage changes in a new folder below DIR (default: "
    "$XDG_CACHE_HOME/tusk/mounts, i.e. ~/.cache/tusk/mounts).",
)
@click.option(
    "--commit",
    "commit_now",
    is_flag=True,
    help="Do not mount: make the --write mount at MOUNTPOINT commit what it staged so far, "
    "one commit per branch, and stay mounted (tusk mount --commit MOUNTPOINT).",
)
@click.option("--debug", is_flag=True, hidden=True, help="libfuse's debug output (very verbose).")
@click.pass_context
def mount(
    ctx: click.Context,
    refs: tuple[str, ...],
    mountpoint: Path,
    cache_size: int,
    stats_path: Path | None,
    write: bool,
    staging: Path | None,
    commit_now: bool,
    debug: bool,
) -> None:
    """Mount commits as a folder with FUSE, read lazily; with --write, one commit on unmount.

    Each REPO@REF (a branch, tag, commit id or REPO@BRANCH^2) is pinned to its commit when the
    mount starts and shown at MOUNTPOINT/REPO; a repo given twice is shown as
    MOUNTPOINT/REPO@REF for each. MOUNTPOINT must be an empty folder. Only the bytes read are
    fetched. Runs in the foreground: stop it with tusk unmount MOUNTPOINT, Ctrl-C or SIGTERM
    (each unmounts cleanly). Needs FUSE 3: apt-get install fuse3 and
    pip install 'tusk-data[mount]'.

    With --write (branches only), files can be created, written, renamed and deleted, and
    folders made and removed. Nothing reaches the branch while mounted: changes are staged
    in a local folder (its path is printed) and, when the mount ends, become one commit on
    each branch, on top of its head then (no changes: no commit). A killed mount commits
    nothing and leaves its staged files in that folder. tusk mount --commit MOUNTPOINT
    commits what is staged so far without unmounting (refused while a file is open for
    writing in it, exit 4).
    """
    from tusk.sdk import mount as m

    if commit_now:
        if refs or write or staging is not None or stats_path is not None:
            fail("tusk mount --commit takes only the MOUNTPOINT of a running --write mount")
        _print_results(m.commit_mount(mountpoint))
        return
    if not refs:
        fail("give what to mount: tusk mount REPO@REF [REPO@REF ...] MOUNTPOINT")

    if mountpoint.exists() and not mountpoint.is_dir():
        fail(f"mount point {mountpoint.absolute()} is not a folder")
    if staging is not None and not write:
        fail("--staging goes with --write")
    mp = m.check_mountpoint(mountpoint)
    client = get_client(ctx)
    # a missing repo or ref: exit 3, a ref that is not a branch with --write: exit 2; before FUSE
    sources = m.plan_mounts(client, list(refs), write=write)
    m.load_fuse()
    stats = stats_path.absolute() if stats_path is not None else None
    folder = m.make_staging(staging) if write else None

    def ready() -> None:
        for s in sources:
            click.echo(f"mounted {s.given} (commit {s.commit}) at {mp / s.name}", err=True)
        if folder is None:
            click.echo(f"read-only; stop with: tusk unmount {mp} (or Ctrl-C)", err=True)
        else:
            click.echo(f"read-write: changes are staged in {folder}", err=True)
            click.echo(
                f"commit them and stop with: tusk unmount {mp} (or Ctrl-C); kill -9 commits "
                "nothing",
                err=True,
            )

    def committed(done: m.StagedCommit) -> None:
        where = f"{done.source.repo}@{done.source.branch}"
        if done.commit is None:
            click.echo(f"{where}: no changes, nothing committed", err=True)
        else:
            click.echo(
                f"{where}: committed {done.commit.id} ({done.written} file(s) written, "
                f"{done.deleted} deleted, {done.moved} moved)",
                err=True,
            )

    try:
        counts = m.mount(
            client,
            sources,
            mp,
            cache_size=cache_size,
            stats_path=stats,
            on_ready=ready,
            debug=debug,
            staging=folder,
            on_commit=committed,
        )
    except BaseException:
        if folder is not None and folder.exists():
            if any(p.is_file() for p in (folder / "files").rglob("*")):
                click.echo(f"staged changes kept in {folder}", err=True)
            else:  # the mount never came up, or nothing was written
                shutil.rmtree(folder, ignore_errors=True)
        raise
    click.echo(
        f"unmounted {mp}: {counts['bytes_read']:,} bytes read, {counts['blocks_fetched']:,} "
        f"blocks ({counts['bytes_fetched']:,} bytes) fetched",
        err=True,
    )


@click.command("unmount")
@click.argument("mountpoint", type=click.Path(path_type=Path))
def unmount(mountpoint: Path) -> None:
    """Unmount a folder that tusk mount serves (fusermount3 -u); the mount then exits.

    Refused while a program has a file or folder open in it (exit 4): close it, or cd out.
    A --write mount commits its changes as it exits: this waits for that and prints each
    branch's new commit; if a commit failed it says why and where the staged changes are
    (exit 1).
    """
    from tusk.errors import TuskError
    from tusk.sdk import mount as m

    done = m.unmount(mountpoint)
    if done is None:
        return
    if done.get("dead"):
        click.echo(
            f"the mount process had been killed: nothing was committed; its staged changes "
            f"are in {done['staging']}",
            err=True,
        )
        return
    _print_results(done.get("results", []))
    if done.get("error"):
        raise TuskError(
            f"unmounted, but not committed: {done['error']} (the staged changes are in "
            f"{done['staging']})"
        )


def _print_results(results: list[dict[str, Any]]) -> None:
    for r in results:
        where = f"{r['repo']}@{r['branch']}"
        if r["commit"] is None:
            click.echo(f"{where}: no changes, nothing committed")
        else:
            click.echo(f"{where}: committed {r['commit']}")
