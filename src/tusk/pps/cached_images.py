"""The image cache as its users see it: ``tusk image load``, ``tusk list image``, and
``GET``/``POST /api/v1/images``.

:class:`CachedImage` is one image of a home's cache (``tusk.pps.images.ImageCache``) with what
a person asks about it: digest, references, platform, size on disk, whether its rootfs is
unpacked. The REST routes and the SDK's in-process transport both build it here, beside the
cache, so that a listing reads the same in-process and over HTTP; the SDK's HTTP client decodes
it (importing this module costs no SQLAlchemy). No web framework here, nothing of storage.

A tarball is checked here before skopeo sees it: skopeo says "file does not exist" of an
empty file or of a tar without ``manifest.json``, which would read as image_not_found.
"""

from __future__ import annotations

import os
import stat
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

from tusk.errors import ImageNotFound, InvalidArgument, InvalidImage, SourceError
from tusk.pfs.models import _Dict
from tusk.values import frozen

if TYPE_CHECKING:
    from tusk.pps.images import ImageCache, ImageInfo

SHORT = 12  # hex digits of a digest that tables show (docker's IMAGE ID)
# zstd-compressed tarballs are skopeo's to read: Python's tarfile (3.11) cannot.
_ZSTD = b"\x28\xb5\x2f\xfd"


@frozen
class CachedImage(_Dict):
    """An image in the image cache, as ``tusk list image`` and ``inspect image`` show it."""

    digest: str  # "sha256:<hex>" of the manifest
    # What resolves to it here: tarballs and layouts it came from, the repo tags a loaded
    # tarball carried (busybox:1.36), registry references pulled
    references: list[str] = field(default_factory=list)
    architecture: str = ""
    os: str = ""
    size: int = 0  # bytes of its OCI layout and unpacked rootfs (a hard-linked file once)
    unpacked: bool = False  # its rootfs is unpacked (pipelines run in it)
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: str = ""

    @property
    def short(self) -> str:
        """The first hex digits of the digest, as tables show it."""
        return self.digest.partition(":")[2][:SHORT]


def disk_size(*roots: Path) -> int:
    """Bytes of the regular files under ``roots``, each hard-linked file counted once.

    Symlinks are never followed (a rootfs holds the image's own, absolute ones too); a folder
    that cannot be read (umoci --rootless keeps an image's modes) is left out.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    for root in roots:
        for folder, _dirs, files in os.walk(root, followlinks=False):
            for name in files:
                try:
                    st = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                    continue
                if st.st_nlink > 1:
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _cached(cache: ImageCache, info: ImageInfo) -> CachedImage:
    rootfs = cache.root / "rootfs" / info.hex
    unpacked = rootfs.is_dir()
    # A tarball uploaded to a server was loaded from a temporary file that is gone by now.
    upload = f"docker-archive:{cache.root.absolute() / 'tmp'}/"
    return CachedImage(
        digest=info.digest,
        references=[r for r in info.references if not r.startswith(upload)],
        architecture=info.architecture,
        os=info.os,
        size=disk_size(info.layout, *([rootfs] if unpacked else [])),
        unpacked=unpacked,
        env=list(info.env),
        working_dir=info.working_dir,
        entrypoint=list(info.entrypoint),
        cmd=list(info.cmd),
        user=info.user,
    )


def cached_images(cache: ImageCache) -> list[CachedImage]:
    """Every image of the cache, by digest, with the references that resolved to it."""
    return [_cached(cache, info) for info in cache.list()]


def cached_image(cache: ImageCache, digest: str) -> CachedImage:
    """The image of one manifest digest, with every reference that resolved to it."""
    for image in cache.list():
        if image.digest == digest:
            return _cached(cache, image)
    raise ImageNotFound(f"image {digest} is not in the image cache")


def find_image(images: list[CachedImage], name: str) -> CachedImage:
    """The image ``name`` means: its digest (``sha256:`` optional), a unique prefix of it (at
    least 4 hex digits, as tables show it), or a reference that resolved to it here."""
    text = name.strip()
    if not text:
        raise InvalidArgument("name an image: a digest, a digest prefix or a reference")
    by_ref = [i for i in images if text in i.references]
    if by_ref:
        return by_ref[0]
    hexd = text[7:] if text.startswith("sha256:") else text
    if len(hexd) >= 4 and all(c in "0123456789abcdef" for c in hexd):
        hits = [i for i in images if i.digest[7:].startswith(hexd)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            shorts = ", ".join(i.short for i in hits)
            raise InvalidArgument(f"image {name!r} is ambiguous: it starts {shorts}")
    raise ImageNotFound(
        f"no image {name!r} in the image cache (tusk list image shows the digests and "
        "references; tusk image load adds one)"
    )


def check_archive(path: Path, label: str) -> None:
    """Refuse, in one line, a file that is not a ``docker save``/``podman save`` tarball.

    ``label`` names the file in the message. Plain and gzip, bzip2 or xz compressed tars are
    read through (zstd ones are left to skopeo): a file that is not a tar, a tar cut short,
    and a tar without the ``manifest.json`` of such a tarball are InvalidImage.
    """
    import tarfile

    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except IsADirectoryError:
        raise SourceError(f"{label} is a directory, not a tarball") from None
    except FileNotFoundError:
        raise SourceError(f"{label} does not exist") from None
    except OSError as exc:
        raise SourceError(f"cannot read {label}: {exc.strerror}") from exc
    if not head:
        raise InvalidImage(f"{label} is empty, not an image tarball (docker save, podman save)")
    if head == _ZSTD:
        return
    found = False
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                found = found or member.name.removeprefix("./") == "manifest.json"
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "could not be opened" in first:
            raise InvalidImage(f"{label} is not a tar archive (docker save, podman save)") from None
        raise InvalidImage(f"{label} is a damaged tar archive ({first})") from None
    if not found:
        raise InvalidImage(
            f"{label} has no manifest.json: not a docker save or podman save tarball"
        )
