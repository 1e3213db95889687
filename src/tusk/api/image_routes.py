"""Image routes: ``tusk image load`` and ``tusk list image`` against a server.

``POST /images`` takes a ``docker save``/``podman save`` tarball as its raw body: streamed to a
temporary file under the server's image cache (``<home>/images/tmp``), checked, copied into the
cache by skopeo, and removed whatever happens. Loading writes to the server's disk and decides
what pipelines run, so with auth on it is clusterAdmin's; listing is any caller's.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
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

    return r


def is_image_upload(method: str, path: str) -> bool:
    """``POST /images``: its body is a tarball of any size, not JSON."""
    return method == "POST" and path.rstrip("/") == f"{API_PREFIX}/images"
