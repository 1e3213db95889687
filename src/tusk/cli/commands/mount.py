"""``tusk mount`` and ``tusk unmount``: commits as a read-only folder (see tusk.sdk.mount)."""

from __future__ import annotations

from pathlib import Path

import click

from tusk.cli.core import fail, get_client
from tusk.units import parse_size


def _size(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        return 0 if value.strip() == "0" else parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("mount")
@click.argument("refs", nargs=-1, required=True, metavar="REPO@REF [REPO@REF ...]")
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
@click.option("--debug", is_flag=True, hidden=True, help="libfuse's debug output (very verbose).")
@click.pass_context
def mount(
    ctx: click.Context,
    refs: tuple[str, ...],
    mountpoint: Path,
    cache_size: int,
    stats_path: Path | None,
    debug: bool,
) -> None:
    """Mount commits as a read-only folder with FUSE, read lazily, until unmounted.

    Each REPO@REF (a branch, tag, commit id or REPO@BRANCH^2) is pinned to its commit when the
    mount starts and shown at MOUNTPOINT/REPO; a repo given twice is shown as
    MOUNTPOINT/REPO@REF for each. MOUNTPOINT must be an empty folder. Only the bytes read are
    fetched. Runs in the foreground: stop it with tusk unmount MOUNTPOINT, Ctrl-C or SIGTERM
    (each unmounts cleanly). Needs FUSE 3: apt-get install fuse3 and
    pip install 'tusk-data[mount]'.
    """
    from tusk.sdk import mount as m

    if mountpoint.exists() and not mountpoint.is_dir():
        fail(f"mount point {mountpoint.absolute()} is not a folder")
    mp = m.check_mountpoint(mountpoint)
    client = get_client(ctx)
    sources = m.plan_mounts(client, list(refs))  # a missing repo or ref: exit 3, before FUSE
    m.load_fuse()
    stats = stats_path.absolute() if stats_path is not None else None

    def ready() -> None:
        for s in sources:
            click.echo(f"mounted {s.given} (commit {s.commit}) at {mp / s.name}", err=True)
        click.echo(f"read-only; stop with: tusk unmount {mp} (or Ctrl-C)", err=True)

    counts = m.mount(
        client,
        sources,
        mp,
        cache_size=cache_size,
        stats_path=stats,
        on_ready=ready,
        debug=debug,
    )
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
    """
    from tusk.sdk import mount as m

    m.unmount(mountpoint)
