"""Image routes: ``tusk image load``, ``tusk list image`` and ``tusk delete image`` against a
server.

``POST /images`` takes a ``docker save``/``podman save`` tarball as its raw body: streamed to a
temporary file under the server's image cache (``<home>/images/tmp``), checked, copied into the
cache by skopeo, and removed whatever happens. Loading and deleting write to the server's disk
and decide what pipelines run, so with auth on they are clusterAdmin's (audited); listing is
any caller's.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from tusk.api.docs import operation_id, returns
from tusk.api.pfs_routes import ok
from tusk.api.streams import BodyPipe, ClientGone, content_length, reader
from tusk.api.wire import API_PREFIX, BLOCK
from tusk.errors import InvalidArgument, TuskError
from tusk.pps.cached_images import CachedImage, cached_image, cached_images, check_archive
from tusk.pps.service import PpsService

TARBALL = {
    "requestBody": {
        "required": True,
        "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
    }
}
TarballName = Annotated[
    str,
    Query(
        min_length=1,
        max_length=4096,
        description="The tarball's path as the client names it, for error messages.",
    ),
]

ImageName = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=4096,
        description="A digest (sha256: optional), a unique digest prefix of at least 4 hex "
        "digits, or a reference that resolved to the image (busybox:1.36).",
    ),
]


def image_router(pps: PpsService, route_class: type[APIRoute]) -> APIRouter:
    r = APIRouter(
        prefix=API_PREFIX,
        tags=["images"],
        generate_unique_id_function=operation_id,
        route_class=route_class,
    )

    def load(body: BodyPipe, length: int | None, name: str) -> CachedImage:
        if not name.isprintable():
            raise InvalidArgument(f"image tarball name {name[:80]!r} has unprintable characters")
        cache = pps.images
        folder = cache.root / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
        tarball = folder / f"upload-{uuid.uuid4().hex}.tar"
        try:
            with open(tarball, "xb") as f:
                shutil.copyfileobj(reader(body, length), f, BLOCK)
            try:
                check_archive(tarball, f"image tarball {name}")
                digest = cache.load(tarball).digest
            except TuskError as exc:  # skopeo's line names the temporary file
                raise type(exc)(exc.message.replace(str(tarball.absolute()), name)) from None
            return cached_image(cache, digest)
        finally:
            tarball.unlink(missing_ok=True)

    @r.post("/images", status_code=201, openapi_extra=TARBALL)
    @returns(CachedImage)
    async def load_image(request: Request, name: TarballName = "image.tar") -> Response:
        """Load a ``docker save``/``podman save`` tarball (the raw body) into the image cache,
        as ``docker load`` does: the repo tags it carries resolve to it, and gc keeps it.

        400 (invalid_image) for a body that is not such a tarball or whose blobs do not match
        their digests; the cache is left as it was.
        """
        body = BodyPipe(request.receive)
        filling = asyncio.ensure_future(body.fill())
        try:
            length = content_length(request.headers)
            image = await run_in_threadpool(load, body, length, name)
        except ClientGone:
            return Response(status_code=499)  # nobody is listening; nothing was loaded
        finally:
            body.discard()
            await filling  # the rest of the body, dropped: the client then reads the answer
        return ok(image, 201)

    @r.get("/images")
    @returns(list[CachedImage])
    def list_images() -> Response:
        """Every image in the server's image cache: digest, references, platform, size on
        disk, and whether its rootfs is unpacked."""
        return ok(cached_images(pps.images))

    # {name:path}: a reference may hold '/' and ':' (myorg/tool:1.2, docker-archive:/x.tar);
    # clients percent-encode it as one segment, which servers decode before routing.
    @r.delete("/images/{name:path}")
    @returns(CachedImage)
    def delete_image(name: ImageName) -> Response:
        """Remove a cached image, named by its digest, a unique digest prefix or a reference
        that resolved to it (a tag it was loaded with), as ``docker rmi`` does; answer what it
        was. Its space, less what other images share, comes back at once.

        404 (image_not_found) when no image has that name; 409 (in_use), naming them, while
        a pipeline version or job pins it.
        """
        return ok(pps.delete_image(name))

    return r


def is_image_upload(method: str, path: str) -> bool:
    """``POST /images``: its body is a tarball of any size, not JSON."""
    return method == "POST" and path.rstrip("/") == f"{API_PREFIX}/images"
