"""``tusk image load``, ``tusk list image``, ``tusk inspect image``, ``tusk delete image``:
the image cache that pipelines run in (``<home>/images``; a server's, through the server).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import click

from tusk.cli import progress, render
from tusk.cli.core import emit, get_client, output_option


@click.group("image")
def image() -> None:
    """The image cache pipelines run in: load docker save tarballs into it."""


@image.command("load")
@click.argument("source", metavar="TARBALL")
@output_option
@click.pass_context
def load(ctx: click.Context, source: str) -> None:
    """Load a docker save tarball into the image cache; print its digest.

    TARBALL is what docker save or podman save writes (also docker-archive:PATH). As after
    docker load, the repo tags it carries (myorg/tool:1.2) name the image in a pipeline's
    transform.image with no pull, and gc keeps it. Against a server (--address) the tarball
    is uploaded; loading needs clusterAdmin there when auth is on.
    """
    client = get_client(ctx)
    bar: AbstractContextManager[progress.ProgressFn | None] = nullcontext(None)
    if getattr(client, "address", None) is not None:  # only an upload has bytes to count
        bar = progress.progress_bar("load", None)
    with bar as cb:
        info = client.load_image(source, progress=cb)
    refs = ", ".join(info.references) or "no reference"
    emit(ctx, info, lambda: click.echo(f"loaded image {info.digest} ({refs})"))


@click.command("image")
@output_option
@click.pass_context
def list_image(ctx: click.Context) -> None:
    """List the cached images: digest, references, platform, size on disk, unpacked or not."""
    images = get_client(ctx).list_images()
    emit(ctx, images, lambda: render.image_table(images))


@click.command("image")
@click.argument("name", metavar="DIGEST|REF")
@output_option
@click.pass_context
def inspect_image(ctx: click.Context, name: str) -> None:
    """Show a cached image: by digest, a unique digest prefix, or a reference such as a tag."""
    info = get_client(ctx).inspect_image(name)
    emit(ctx, info, lambda: render.image_fields(info))


@click.command("image")
@click.argument("name", metavar="DIGEST|REF")
@output_option
@click.pass_context
def delete_image(ctx: click.Context, name: str) -> None:
    """Remove a cached image, as docker rmi does: by digest, unique prefix or reference.

    Its layout, rootfs and references go, and the space only it used comes back at once.
    Refused while a pipeline version or job pins it (delete the pipeline first). Against a
    server (--address) it needs clusterAdmin there when auth is on.
    """
    info = get_client(ctx).delete_image(name)
    refs = ", ".join(info.references) or "no reference"
    emit(ctx, info, lambda: click.echo(f"deleted image {info.digest} ({refs})"))
