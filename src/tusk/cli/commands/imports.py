"""``import`` and ``materialize``: data where it already lives, referred to or copied in."""

from __future__ import annotations

import click

from tusk.cli.core import emit, get_client, output_option


@click.command("import")
@click.argument("address", metavar="REPO@BRANCH:/PATH")
@click.argument("url", metavar="s3://BUCKET/PREFIX")
@click.option(
    "--exclude", "exclude", multiple=True, metavar="GLOB",
    help="Leave out keys (below the prefix) that match GLOB; repeatable.",
)  # fmt: skip
@click.option(
    "--endpoint-url", default=None, metavar="URL",
    help="An S3-compatible endpoint (MinIO, Ceph, ...); default: AWS_ENDPOINT_URL, else AWS.",
)  # fmt: skip
@click.option("-d", "--description", default="", help="The commit's description.")
@output_option
@click.pass_context
def import_objects(
    ctx: click.Context,
    address: str,
    url: str,
    exclude: tuple[str, ...],
    endpoint_url: str | None,
    description: str,
) -> None:
    """Commit every object below s3://BUCKET/PREFIX as a file under PATH, by reference.

    The objects are listed, not copied: each file records the object's URL, size and ETag,
    and reads fetch its bytes from where it is (only the ranges read), refusing an object
    that changed or vanished since. tusk materialize copies them in; tusk fsck --references
    checks them. Credentials come from the usual AWS environment and files.
    """
    r = get_client(ctx).import_objects(
        address, url, exclude=exclude, endpoint_url=endpoint_url, description=description
    )
    cid = r.commit.id if r.commit is not None else "-"
    emit(ctx, r, lambda: click.echo(
        f"imported {r.files} object(s) from {url} by reference: commit {cid}"
    ))  # fmt: skip


@click.command("materialize")
@click.argument("address", metavar="REPO@BRANCH[:/PATH]")
@click.option("-d", "--description", default="", help="The commit's description.")
@output_option
@click.pass_context
def materialize(ctx: click.Context, address: str, description: str) -> None:
    """Copy the files imported by reference at or below PATH into the store, in a new commit.

    The copies no longer depend on their source: reads and pipelines use the store only."""
    r = get_client(ctx).materialize(address, description=description)

    def show() -> None:
        if r.commit is None:
            click.echo(f"nothing to materialize: no file at {address} is a reference")
        else:
            click.echo(f"materialized {r.files} file(s): commit {r.commit.id}")

    emit(ctx, r, show)
