"""OCI images for pipelines, without a container engine (the first slice; see docs/images.md).

A ``transform.image`` is a reference spelled as skopeo spells it: ``docker://REGISTRY/NAME:TAG``
(or bare ``python:3.11``, meaning the same), ``oci:PATH[:TAG]`` (an OCI image layout) or
``docker-archive:PATH`` (a ``docker save`` tarball). :class:`ImageCache` copies the image with
Debian's ``skopeo`` into an OCI layout of its own, named by the manifest digest, reads its config
(Env, WorkingDir, Entrypoint, Cmd, architecture) and unpacks each of its layers once with
``umoci raw unpack --rootless`` into a layer cache named by the layer's diff_id, which every
image with that layer shares; an image's rootfs is composed of hard links to its layers' files.
Tusk writes no registry client and no tar unpacker: skopeo verifies every blob's digest while it
copies, umoci checks each layer's diff_id and keeps ``../`` paths and symlinks of a layer inside
it; composing applies each layer's whiteouts and opaque folders (read from its tar headers) to
the layers below it. Before a new image enters the cache Tusk
reads its layers' tar headers (:func:`_scan_layers`) and refuses one that names a path outside
the rootfs (absolute, ``..``, a hard link there, a file written through a symlink that leads
out): umoci would contain it, but such a layer is hostile or broken, and a refusal says so
where containment would quietly put its files elsewhere. A registry that asks for credentials
gets them from a Docker ``config.json`` (``authfile``) or a (user, password) pair, which Tusk
hands to skopeo in a private temporary auth file rather than on its command line, or a bearer
token (``registry_token``, or an auth file entry's ``registrytoken``), which skopeo 1.9 takes
only on its command line (``--src-registry-token``): visible in ``ps`` while it copies.

Everything lands in a temporary directory first and is renamed into place, so a failed copy or
unpack (a corrupt layer, a digest mismatch, a layer writing outside its rootfs) leaves the cache
as it was::

    <root>/oci/<manifest hex>/     OCI layout holding one image (tag "image")
    <root>/rootfs/<manifest hex>/  its rootfs: hard links to its layers' files (setuid/setgid
                                   bits dropped), folders and symlinks of its own
    <root>/layers/<diff_id hex>/   one unpacked layer (rootfs/) and what it deletes below it
                                   (layer.json), shared by every image that has the layer
    <root>/refs/<sha256 of ref>.json  the digest a reference last resolved to
    <root>/held/<manifest hex>     an image loaded by ``tusk image load``: gc keeps it
    <root>/blobs/<hex>             every blob once: the layouts' blobs are hard links to these
    <root>/files/<key>             every rootfs file once (by content and mode): hard links
    <root>/tmp/                    work in progress

Layers shared by several images are therefore stored and unpacked once: a blob already in
``blobs/`` (skopeo verified its digest when it first came) replaces the new copy by a hard
link, a layer already in ``layers/`` is not unpacked again, and each unpacked file whose
content and mode another layer already has becomes a hard link to it (the rootfs is mounted
read-only, so a shared file is never written through). ``prune`` (run by ``tusk gc``) removes
the images no pipeline version or job pins and no load holds, then the layers no image left
has, then every blob and file nothing links any more; ``remove`` (``tusk delete image``) takes
one image at once, with the layers, pooled blobs and files only it had. A removal renames
what it removes into ``tmp/`` first, so a killed one never leaves half a layer or rootfs.

:func:`image_argv` builds the bubblewrap command that runs a datum in a rootfs. Symlinks in the
rootfs, absolute or relative, are kept as the image has them: the rootfs is mounted read-only as
``/`` of a private mount namespace, so every symlink resolves inside it (``/..`` is ``/``), and
Tusk never follows a symlink of the rootfs on the host side (setuid bits are dropped with
``lstat``/no-follow calls; the mount points it adds replace a symlink rather than follow it).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from tusk.errors import (
    ImageCacheFull,
    ImageNotFound,
    ImagePullDenied,
    InvalidArgument,
    InvalidImage,
    ToolMissing,
)
from tusk.values import frozen

if TYPE_CHECKING:
    import tarfile

TAG = "image"  # the one tag in each layout of the cache
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Mount points image_argv needs; made as empty directories in every rootfs.
_MOUNT_POINTS = ("proc", "dev", "tmp", "pfs")
_NETWORK_FILES = ("resolv.conf", "hosts")

_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}
# platform.machine() -> the OCI (Go) architecture names
_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
_OTHER_TRANSPORTS = (
    "containers-storage",
    "dir",
    "docker-daemon",
    "oci-archive",
    "sif",
    "ostree",
    "tarball",
)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOCKER_NAME = re.compile(
    r"(?:(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?)/)?"
    rf"{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[a-f0-9]{64})?"
)
_PACKAGES = {"skopeo": "skopeo", "umoci": "umoci", "bwrap": "bubblewrap"}


def host_architecture() -> str:
    """This machine's architecture as OCI names it (amd64, arm64, ...)."""
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine)


@frozen
class Reference:
    """A parsed image reference: ``transport`` is docker, oci or docker-archive; ``name`` is
    the rest (registry name, layout path or archive path, with a tag where one was given)."""

    transport: str
    name: str
    text: str

    def source(self) -> str:
        """The reference as ``skopeo copy`` takes it."""
        if self.transport == "docker":
            return "docker://" + self.name
        return f"{self.transport}:{self.name}"

    @property
    def registry(self) -> str | None:
        """The registry host[:port] of a docker reference (None: Docker Hub)."""
        if self.transport != "docker":
            return None
        first, sep, _ = self.name.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            return first
        return None

    @property
    def insecure(self) -> bool:
        """True for a registry on this machine, spoken to without TLS verification."""
        host = (self.registry or "").rsplit(":", 1)[0] if self.registry else ""
        return host in ("localhost", "127.0.0.1", "[::1]")


def parse_reference(text: str) -> Reference:
    """Parse an image reference as skopeo spells it; a bare name means ``docker://``.

    ``oci:latest`` is the layout ``latest``: a Docker Hub image named ``oci`` is written
    ``docker://oci:latest``.
    """
    raw = text.strip() if isinstance(text, str) else ""
    if not raw or any(c.isspace() for c in raw):
        raise InvalidImage(f"image reference {text!r} is empty or has spaces")
    transport, sep, rest = raw.partition(":")
    if transport in ("oci", "docker-archive"):
        if not rest or rest.startswith(":"):
            raise InvalidImage(f"image reference {text!r} names no path ({transport}:PATH[:TAG])")
        return Reference(transport, rest, raw)
    if transport == "docker" and rest.startswith("//"):
        name = rest[2:]
    elif sep and transport in _OTHER_TRANSPORTS:
        raise InvalidImage(
            f"image reference {text!r}: transport {transport!r} is not supported "
            "(use docker://, oci: or docker-archive:)"
        )
    else:
        name = raw
    if not _DOCKER_NAME.fullmatch(name):
        raise InvalidImage(
            f"image reference {text!r} is not a valid image name "
            "(docker://REGISTRY/NAME[:TAG][@sha256:DIGEST], oci:PATH[:TAG] or docker-archive:PATH)"
        )
    return Reference("docker", name, raw)


@frozen
class ImageInfo:
    """An image in the cache: its manifest digest and what its config says about running it."""

    digest: str  # "sha256:<hex>" of the manifest
    layout: Path  # the OCI layout in the cache holding it (tag "image")
    architecture: str
    os: str
    env: list[str] = field(default_factory=list)  # "KEY=VALUE", in the image's order
    working_dir: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: str = ""
    references: list[str] = field(default_factory=list)  # references resolved to it here

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


def _tool(name: str, ref: str | None = None) -> str:
    exe = shutil.which(name)
    if exe is None:
        what = f" to use image {ref}" if ref else ""
        raise ToolMissing(
            f"{name} is not installed{what} (install the Debian package {_PACKAGES[name]})"
        )
    return exe


def skopeo_reason(stderr: str) -> str:
    """The reason a tool (skopeo, umoci) gave on its last line, without its log prefix."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return "no message"
    line = lines[-1]
    m = re.search(r'msg="(.*)"', line)
    return m.group(1).replace('\\"', '"') if m else line


def _rmtree(path: Path) -> None:
    """Remove a tree that may hold directories without write permission (umoci rootless)."""

    def fix(func: Any, p: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)

    if path.exists() or path.is_symlink():
        shutil.rmtree(path, onerror=fix)


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def cache_for(home: Path) -> ImageCache:
    """The image cache of a Tusk home, with the quota ``image_cache_quota`` sets (flag-less:
    ``TUSK_IMAGE_CACHE_QUOTA``, else the config file), if any."""
    from tusk.config import setting

    text = setting("image_cache_quota")
    quota = None
    if text:
        from tusk.pps.spec import parse_quantity

        try:
            quota = int(parse_quantity(text, "size"))
        except ValueError as exc:
            raise InvalidArgument(f"image_cache_quota: {exc}") from None
    return ImageCache(Path(home) / "images", quota)


class ImageCache:
    """Images copied and unpacked under ``root`` (``<tusk home>/images``).

    ``quota``: the most bytes the cache may hold (every file once, however many links it
    has). An image copy or unpack that would go over it is refused (ImageCacheFull) and leaves
    the cache as it was; ``tusk gc`` frees what no pipeline pins.
    """

    def __init__(self, root: Path, quota: int | None = None) -> None:
        self.root = Path(root)
        self.quota = quota

    def _dirs(self) -> None:
        for sub in ("oci", "rootfs", "layers", "refs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def resolve(
        self,
        ref: Reference | str,
        credentials: tuple[str, str] | None = None,
        authfile: Path | None = None,
        registry_token: str | None = None,
    ) -> ImageInfo:
        """Copy the image ``ref`` names into the cache and read its config.

        A registry pull uses ``credentials`` (user, password), ``authfile`` (a Docker
        ``config.json``: ``{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}``)
        or ``registry_token`` (a bearer token the registry's token server issued), else
        skopeo's default auth files. The credentials reach skopeo in a private temporary auth
        file, never on its command line; a token (given, or an auth file entry's
        ``registrytoken``, as Docker names it) reaches it as ``--src-registry-token``, the
        only way skopeo takes one: on its command line while it copies. A reference pinned by
        ``@sha256:`` that is already here is not fetched again. Raises ImageNotFound,
        ImagePullDenied (the registry refused the credentials or the token, or asked for
        some), InvalidArgument (two kinds of credentials, a token no registry would issue),
        InvalidImage (media type, architecture, digest mismatch, a layer writing outside its
        rootfs) or ToolMissing.
        """
        if isinstance(ref, str):
            ref = parse_reference(ref)
        given = [
            what
            for what, value in (
                ("credentials", credentials),
                ("an auth file", authfile),
                ("a registry token", registry_token),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise InvalidArgument(f"image {ref.text}: give {given[0]} or {given[1]}, not both")
        if authfile is not None and not Path(authfile).is_file():
            raise InvalidArgument(f"image {ref.text}: auth file {authfile} does not exist")
        if authfile is not None:
            registry_token = _authfile_token(Path(authfile), ref.registry or "docker.io")
        if registry_token is not None and not re.fullmatch(r"[\x21-\x7e]+", registry_token):
            raise InvalidArgument(
                f"image {ref.text}: the registry token is empty or has spaces or other "
                "characters no token has"
            )
        pinned = re.search(r"@(sha256:[a-f0-9]{64})$", ref.name)
        if pinned and (self.root / "oci" / pinned.group(1)[7:]).is_dir():
            return self._record(ref, self._info(pinned.group(1), ref.text))
        if ref.transport == "docker" and (loaded := self._loaded(ref)) is not None:
            return loaded
        skopeo = _tool("skopeo", ref.text)
        self._dirs()
        work = self.root / "tmp" / f"copy-{uuid.uuid4().hex}"
        auth = self.root / "tmp" / f"auth-{uuid.uuid4().hex}.json"
        try:
            args = [skopeo, "copy", "--quiet"]
            if ref.insecure:
                args.append("--src-tls-verify=false")
            if credentials is not None:
                _write_authfile(auth, ref.registry or "docker.io", credentials)
                args.append(f"--authfile={auth}")
            elif registry_token is not None:  # skopeo has no other way to take one
                args.append(f"--src-registry-token={registry_token}")
            elif authfile is not None:
                args.append(f"--authfile={authfile}")
            args += [ref.source(), f"oci:{work}:{TAG}"]
            try:
                r = subprocess.run(args, capture_output=True, text=True, timeout=3600)
            except subprocess.TimeoutExpired:
                raise InvalidImage(f"image {ref.text}: copying took more than an hour") from None
            if r.returncode != 0:
                raise _copy_error(ref.text, r.stderr)
            digest = self._check(work, ref.text)
            dest = self.root / "oci" / digest[7:]
            if dest.is_dir():
                _rmtree(work)
            else:
                records = _scan_layers(work, digest, ref.text)
                (work / _LAYER_RECORDS).write_text(json.dumps(records, sort_keys=True))
                pool = self.root / "blobs"
                folder = work / "blobs" / "sha256"
                new = sum(
                    b.stat().st_size for b in folder.iterdir() if not (pool / b.name).exists()
                )
                self._fits(new, f"image {ref.text}")
                self._share_blobs(work)
                try:
                    os.rename(work, dest)
                except OSError:  # another process put the same image there first
                    if not dest.is_dir():
                        raise
            return self._record(ref, self._info(digest, ref.text))
        finally:
            _rmtree(work)
            auth.unlink(missing_ok=True)

    def lookup(self, digest: str) -> ImageInfo:
        """The cached image of a manifest digest (a pipeline version pins it)."""
        if not re.fullmatch(r"sha256:[a-f0-9]{64}", digest):
            raise InvalidImage(f"image digest {digest!r} is not sha256:<64 hex digits>")
        if not (self.root / "oci" / digest[7:]).is_dir():
            raise ImageNotFound(f"image {digest} is not in the image cache {self.root}")
        return self._info(digest, digest)

    def list(self) -> list[ImageInfo]:
        """The images in the cache, each with the references that resolved to it."""
        refs: dict[str, list[str]] = {}
        folder = self.root / "refs"
        if folder.is_dir():
            for p in sorted(folder.glob("*.json")):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    rec = _read_json(p)
                    name = rec["reference"]
                    if rec.get("loaded"):  # a tag a loaded tarball carried
                        name = _familiar_name(name.removeprefix("loaded:"))
                    refs.setdefault(rec["digest"], []).append(name)
        out = []
        oci = self.root / "oci"
        for d in sorted(oci.iterdir()) if oci.is_dir() else []:
            digest = "sha256:" + d.name
            with contextlib.suppress(InvalidImage, OSError):
                info = self._info(digest, digest)
                out.append(_with_refs(info, sorted(refs.get(digest, []))))
        return out

    def rootfs(self, info: ImageInfo) -> Path:
        """The rootfs of ``info``, made on the first call only: each layer is unpacked once
        into ``layers/<diff_id hex>/`` (:meth:`_layer`), which every image having that layer
        shares, and the image's rootfs is composed of hard links to their files, lowest layer
        first (:func:`_compose`). An image with a layer that cannot stand alone (a hard link
        to a lower layer's file) is unpacked whole, as one."""
        dest = self.root / "rootfs" / info.hex
        if dest.is_dir():
            return dest
        umoci = _tool("umoci", info.digest)
        self._dirs()
        layers = _image_layers(info.layout, info.digest)
        known: list[Any] = []
        with contextlib.suppress(OSError, ValueError):
            known = list(_read_json(info.layout / _LAYER_RECORDS))
        metas: list[tuple[Path, dict[str, Any]]] = []
        for index, (desc, diff_id) in enumerate(layers or []):
            record = known[index] if index < len(known) else None
            found = self._layer(
                umoci, info, desc, diff_id, record if isinstance(record, dict) else None
            )
            if found is None:
                break
            metas.append(found)
        if layers is None or len(metas) < len(layers):
            return self._unpack_whole(umoci, info, dest)
        work = self.root / "tmp" / f"rootfs-{uuid.uuid4().hex}"
        try:
            work.mkdir(mode=0o700)
            _compose(work, metas)
            return self._finish(info, work, dest)
        finally:
            _rmtree(work)

    def _unpack_whole(self, umoci: str, info: ImageInfo, dest: Path) -> Path:
        """The rootfs of ``info`` unpacked by umoci in one go (no layer cache)."""
        work = self.root / "tmp" / f"rootfs-{uuid.uuid4().hex}"
        try:
            args = [umoci, "raw", "unpack", "--rootless", "--image", f"{info.layout}:{TAG}"]
            r = subprocess.run([*args, str(work)], capture_output=True, text=True, timeout=3600)
            if r.returncode != 0:
                line = skopeo_reason(r.stderr)
                raise InvalidImage(f"image {info.digest} cannot be unpacked: {line}")
            _drop_setid(work)
            return self._finish(info, work, dest)
        finally:
            _rmtree(work)

    def _finish(self, info: ImageInfo, work: Path, dest: Path) -> Path:
        """Make the mount points in the fresh rootfs ``work``, pool its new files and rename
        it to ``dest``."""
        _mount_points(work, info.working_dir)
        files = _file_keys(work)
        pool = self.root / "files"
        new = sum(size for _p, key, size in files if not (pool / key).exists())
        self._fits(new, f"the rootfs of image {info.digest}")
        self._share_files(files)
        try:
            os.rename(work, dest)
        except OSError:
            if not dest.is_dir():
                raise
        return dest

    def _layer(
        self,
        umoci: str,
        info: ImageInfo,
        desc: dict[str, Any],
        diff_id: str,
        known: dict[str, Any] | None,
    ) -> tuple[Path, dict[str, Any]] | None:
        """The unpacked layer ``diff_id`` of ``info`` (its files, and what it deletes below it:
        ``layer.json``), unpacked now if no image brought it before; None when it cannot be
        unpacked alone (a hard link to a lower layer's file, headers Python cannot read).

        umoci unpacks a one-layer image made of the layer's blob (checking its diff_id); the
        whiteouts, opaque folders and folder modes, which an unpack onto nothing applies to
        nothing, are ``known`` (read when the image came in) or read from its tar headers
        meanwhile. It happens in ``tmp/`` and is renamed to
        ``layers/<diff_id hex>``: a killed unpack leaves no half layer there."""
        dest = self.root / "layers" / diff_id[7:]
        meta_path = dest / "layer.json"
        if meta_path.is_file():
            with contextlib.suppress(OSError):
                os.utime(dest)  # gc's grace runs from the last use
            return dest / "rootfs", _read_json(meta_path)
        if known is not None and not known.get("alone"):
            return None
        blob = _blob(info.layout, str(desc.get("digest", "")))
        work = self.root / "tmp" / f"layer-{uuid.uuid4().hex}"
        try:
            layout = work / "layout"
            _one_layer_layout(layout, blob, desc, diff_id, info.architecture)
            args = [umoci, "raw", "unpack", "--rootless", "--image", f"{layout}:{TAG}"]
            with subprocess.Popen(
                [*args, str(work / "rootfs")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            ) as proc:
                try:
                    meta = known or _layer_headers(blob, str(desc.get("mediaType", "")))
                    _out, err = proc.communicate(timeout=3600)
                except BaseException:
                    proc.kill()
                    raise
            if proc.returncode != 0:
                if meta is None or not meta.get("alone"):  # the whole image may unpack
                    return None
                line = skopeo_reason(err)
                raise InvalidImage(f"image {info.digest} cannot be unpacked: {line}")
            if meta is None or not meta.get("alone"):
                return None
            _rmtree(layout)
            _drop_setid(work / "rootfs", owner_rwx=True)
            files = _file_keys(work / "rootfs")
            pool = self.root / "files"
            new = sum(size for _p, key, size in files if not (pool / key).exists())
            self._fits(new, f"the rootfs of image {info.digest}")
            self._share_files(files)
            meta = {"diff_id": diff_id, "digest": desc.get("digest"), **meta}
            (work / "layer.json").write_text(json.dumps(meta, sort_keys=True))
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(work, dest)
            except OSError:  # another process unpacked the same layer first
                if not meta_path.is_file():
                    raise
                return dest / "rootfs", _read_json(meta_path)
            return dest / "rootfs", meta
        finally:
            _rmtree(work)

    def load(self, archive: Path) -> ImageInfo:
        """Copy a ``docker save`` / ``podman save`` tarball into the cache and hold it (gc keeps
        it until ``release``); the repo tags it carries (``myorg/tool:1.2``) resolve to it
        from now on without a pull, as after ``docker load``."""
        path = Path(archive).absolute()
        text = f"docker-archive:{path}"
        info = self.resolve(Reference("docker-archive", str(path), text))
        (self.root / "held").mkdir(parents=True, exist_ok=True)
        (self.root / "held" / info.hex).touch()
        names = [info.references[0]] if info.references else []
        if path.is_relative_to(self.root / "tmp"):  # an upload, gone after this: no reference
            (self.root / "refs" / f"{hashlib.sha256(text.encode()).hexdigest()}.json").unlink(
                missing_ok=True
            )
            names = []
        for tag in _archive_tags(path):
            with contextlib.suppress(InvalidImage):
                ref = parse_reference(tag)
                if ref.transport == "docker":
                    key = "loaded:" + _normal_name(ref.name)
                    self._record(Reference("docker", ref.name, key), info, loaded=True)
                    names.append(_familiar_name(ref.name))
        return _with_refs(info, names)

    def release(self, digest: str) -> bool:
        """Let gc remove an image ``load`` held; False if it was not held."""
        held = self.root / "held" / digest.split(":", 1)[-1]
        if not held.exists():
            return False
        held.unlink()
        return True

    def remove(self, digest: str) -> None:
        """Remove one image now (``tusk delete image``), whatever holds it: its layout, its
        rootfs, its ``load`` hold and every reference that resolved to it, then the unpacked
        layers no other image has and the pooled blobs and files only it linked, so their
        space comes back at once.

        Order makes a crash harmless: what names the image goes first, then the layout (the
        image is gone from listings), the rootfs, its layers, the pool entries; ``prune``
        finishes any of
        it. Whether a pipeline pins the image is the caller's to check. Raises ImageNotFound
        when nothing of the image is here.
        """
        if not re.fullmatch(r"sha256:[a-f0-9]{64}", digest):
            raise InvalidImage(f"image digest {digest!r} is not sha256:<64 hex digits>")
        hexd = digest[7:]
        layout, rootfs, held = (self.root / sub / hexd for sub in ("oci", "rootfs", "held"))
        refs = self.root / "refs"
        naming = []
        for p in sorted(refs.glob("*.json")) if refs.is_dir() else []:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                if _read_json(p)["digest"] == digest:
                    naming.append(p)
        if not (layout.is_dir() or rootfs.is_dir() or held.exists() or naming):
            raise ImageNotFound(f"image {digest} is not in the image cache {self.root}")
        links: dict[int, list[int]] = {}  # inode -> [links under this image, nlink, size]
        own = self._layers_of(hexd) - self._layers_in_use(skip={hexd})
        layers = [self.root / "layers" / h for h in sorted(own)]
        for path in (layout, rootfs, *layers):
            _count_links(path, links)
        for p in naming:
            p.unlink(missing_ok=True)
        held.unlink(missing_ok=True)
        for path in (layout, rootfs, *layers):
            self._discard(path)
        for pool in ("blobs", "files"):
            folder = self.root / pool
            if not folder.is_dir():
                continue
            with os.scandir(folder) as entries:
                for entry in entries:
                    with contextlib.suppress(OSError):  # gone already (a gc running too)
                        st = entry.stat(follow_symlinks=False)
                        if st.st_ino in links and st.st_nlink == 1:
                            os.unlink(entry.path)

    def _loaded(self, ref: Reference) -> ImageInfo | None:
        """The image a registry reference names after ``load`` (None: pull it)."""
        key = "loaded:" + _normal_name(ref.name)
        path = self.root / "refs" / f"{hashlib.sha256(key.encode()).hexdigest()}.json"
        with contextlib.suppress(OSError, ValueError, KeyError, InvalidImage):
            rec = _read_json(path)
            if rec.get("loaded") and (self.root / "oci" / rec["digest"][7:]).is_dir():
                return _with_refs(self._info(rec["digest"], ref.text), [ref.text])
        return None

    def prune(self, keep: set[str], grace: float, dry_run: bool = False) -> tuple[int, int]:
        """Remove images that no digest in ``keep`` names, no ``load`` holds and nothing
        used within ``grace`` seconds, then the unpacked layers no image left has (unused as
        long), the blobs and files nothing links any more and old temporary work. Returns
        (images removed, bytes freed); ``dry_run`` only counts.
        """
        if not self.root.is_dir():
            return 0, 0
        cutoff = time.time() - grace
        held = {p.name for p in (self.root / "held").glob("*")}
        kept = {d.split(":", 1)[-1] for d in keep} | held
        removed, freed = 0, 0
        gone: set[str] = set()
        links: dict[int, list[int]] = {}  # inode -> [links under removed images, nlink, size]
        oci = self.root / "oci"
        for d in sorted(oci.iterdir()) if oci.is_dir() else []:
            if d.name in kept or _newest(d, self.root / "rootfs" / d.name) > cutoff:
                continue
            removed += 1
            gone.add(d.name)
            for path in (d, self.root / "rootfs" / d.name):
                _count_links(path, links)
                if not dry_run:
                    self._discard(path)
        # Unpacked layers no image left here has, unused for the grace period, go too.
        kept_layers: set[str] = set()
        for d in sorted(oci.iterdir()) if oci.is_dir() else []:
            if d.name not in gone:
                kept_layers |= self._layers_of(d.name)
        layers = self.root / "layers"
        for d in sorted(layers.iterdir()) if layers.is_dir() else []:
            if d.name in kept_layers or _newest(d) > cutoff:
                continue
            _count_links(d, links)
            if not dry_run:
                self._discard(d)
        # A file is freed when no link is left but (at most) its pool entry, which goes next.
        counted = {ino for ino, (n, nlink, _size) in links.items() if nlink - n <= 1}
        freed += sum(links[ino][2] for ino in counted)
        refs = self.root / "refs"
        for p in sorted(refs.glob("*.json")) if refs.is_dir() else []:
            with contextlib.suppress(OSError, ValueError, KeyError):
                if _read_json(p)["digest"][7:] in gone and not dry_run:
                    p.unlink()
        for pool in ("blobs", "files"):
            folder = self.root / pool
            for p in sorted(folder.iterdir()) if folder.is_dir() else []:
                st = p.lstat()
                left = st.st_nlink - (links[st.st_ino][0] if dry_run and st.st_ino in links else 0)
                if left == 1 and (st.st_mtime < cutoff or st.st_ino in links):
                    if st.st_ino not in counted:
                        freed += st.st_size
                    if not dry_run:
                        p.unlink()
        tmp = self.root / "tmp"
        for p in sorted(tmp.iterdir()) if tmp.is_dir() else []:
            if p.lstat().st_mtime < cutoff:
                if p.is_dir() and not p.is_symlink():
                    part: dict[int, list[int]] = {}
                    _count_links(p, part)
                    freed += sum(size for _n, _nlink, size in part.values())
                    if not dry_run:
                        _rmtree(p)
                else:
                    freed += p.lstat().st_size
                    if not dry_run:
                        p.unlink()
        return removed, freed

    def _discard(self, path: Path) -> None:
        """Remove a layout, rootfs or layer: renamed into ``tmp/`` first, so that a removal
        killed midway never leaves half of one where it would be used (gc finishes it)."""
        if not path.exists():
            return
        gone = self.root / "tmp" / f"gone-{uuid.uuid4().hex}"
        try:
            gone.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, gone)
        except FileNotFoundError:  # gone already (a gc running too)
            return
        _rmtree(gone)

    def _layers_of(self, hexd: str) -> set[str]:
        """The diff_id hex digits of the layers of the cached image ``hexd`` (none if its
        layout is gone or damaged)."""
        layers = _image_layers(self.root / "oci" / hexd, f"sha256:{hexd}")
        return {diff_id[7:] for _desc, diff_id in layers or []}

    def _layers_in_use(self, skip: set[str]) -> set[str]:
        """The layers of every cached image but those in ``skip``."""
        oci = self.root / "oci"
        used: set[str] = set()
        for d in sorted(oci.iterdir()) if oci.is_dir() else []:
            if d.name not in skip:
                used |= self._layers_of(d.name)
        return used

    def _share_blobs(self, layout: Path) -> None:
        """Make each blob of a fresh layout a hard link into ``blobs/`` (stored once)."""
        pool = self.root / "blobs"
        pool.mkdir(parents=True, exist_ok=True)
        folder = layout / "blobs" / "sha256"
        for blob in sorted(folder.iterdir()) if folder.is_dir() else []:
            _link_into(pool / blob.name, blob)

    def _share_files(self, files: Sequence[tuple[Path, str, int]]) -> None:
        """Make each regular file of a fresh rootfs (:func:`_file_keys`) a hard link into
        ``files/``, keyed by its content and mode, so a layer several images have is stored
        once."""
        pool = self.root / "files"
        pool.mkdir(parents=True, exist_ok=True)
        for path, key, _size in files:
            _link_into(pool / key, path)

    def usage(self) -> int:
        """Bytes the cache holds, each file once (hard links are one file)."""
        links: dict[int, list[int]] = {}
        for sub in ("oci", "rootfs", "layers", "blobs", "files", "refs", "held", "tmp"):
            _count_links(self.root / sub, links)
        return sum(size for _n, _nlink, size in links.values())

    def _fits(self, more: int, what: str) -> None:
        if self.quota is None or more <= 0:
            return
        used = self.usage()  # work in tmp/ counts: it is on the disk now
        if used > self.quota:
            raise ImageCacheFull(
                f"{what} needs {_size(more)} more and would take the image cache to "
                f"{_size(used)}, over its quota of {_size(self.quota)} (image_cache_quota); "
                "tusk gc frees the images no pipeline uses"
            )

    def _check(self, layout: Path, ref: str) -> str:
        """The manifest digest of a freshly copied layout, after checking what Tusk can run."""
        index = _read_json(layout / "index.json")
        manifests = index.get("manifests") or []
        if len(manifests) != 1:
            raise InvalidImage(f"image {ref}: expected one manifest, found {len(manifests)}")
        desc = manifests[0]
        if desc.get("mediaType") != _OCI_MANIFEST:
            raise InvalidImage(
                f"image {ref}: media type {desc.get('mediaType')!r} is not supported"
            )
        digest = str(desc.get("digest", ""))
        if not re.fullmatch(r"sha256:[a-f0-9]{64}", digest):
            raise InvalidImage(f"image {ref}: manifest digest {digest!r} is not sha256")
        manifest = _read_json(_blob(layout, digest))
        config_type = manifest.get("config", {}).get("mediaType")
        if config_type != _OCI_CONFIG:
            raise InvalidImage(f"image {ref}: config media type {config_type!r} is not supported")
        for layer in manifest.get("layers") or []:
            if layer.get("mediaType") not in _LAYER_TYPES:
                raise InvalidImage(
                    f"image {ref}: layer media type {layer.get('mediaType')!r} is not supported "
                    "(Tusk unpacks tar and tar+gzip layers; convert the image with skopeo copy "
                    "--dest-compress-format gzip)"
                )
        config = _read_json(_blob(layout, manifest["config"]["digest"]))
        arch, os_name = config.get("architecture", ""), config.get("os", "")
        if os_name != "linux":
            raise InvalidImage(f"image {ref} is built for {os_name or 'no'} OS, not linux")
        if arch != host_architecture():
            raise InvalidImage(
                f"image {ref} is built for {arch or 'no architecture'}, "
                f"this machine runs {host_architecture()}"
            )
        return digest

    def _info(self, digest: str, ref: str) -> ImageInfo:
        layout = self.root / "oci" / digest[7:]
        try:
            manifest = _read_json(_blob(layout, digest))
            config = _read_json(_blob(layout, manifest["config"]["digest"]))
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidImage(f"image {ref}: the cached copy is damaged ({exc})") from None
        c = config.get("config") or {}
        return ImageInfo(
            digest=digest,
            layout=layout,
            architecture=config.get("architecture", ""),
            os=config.get("os", ""),
            env=list(c.get("Env") or []),
            working_dir=c.get("WorkingDir") or "",
            entrypoint=list(c.get("Entrypoint") or []),
            cmd=list(c.get("Cmd") or []),
            user=c.get("User") or "",
        )

    def _record(self, ref: Reference, info: ImageInfo, loaded: bool = False) -> ImageInfo:
        self._dirs()
        name = hashlib.sha256(ref.text.encode()).hexdigest()
        path = self.root / "refs" / f"{name}.json"
        tmp = path.with_name(f".{name}.{uuid.uuid4().hex}")
        record: dict[str, Any] = {"reference": ref.text, "digest": info.digest}
        if loaded:
            record["loaded"] = True
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
        return _with_refs(info, [ref.text])


def _normal_name(name: str) -> str:
    """A registry name in full, as Docker reads it: ``tool:1`` is
    ``docker.io/library/tool:1``, ``org/tool`` is ``docker.io/org/tool:latest``."""
    first, sep, _rest = name.partition("/")
    if not (sep and ("." in first or ":" in first or first == "localhost")):
        name = "docker.io/" + (name if sep else "library/" + name)
    last = name.rsplit("/", 1)[-1]
    if "@" not in last and ":" not in last:
        name += ":latest"
    return name


def _familiar_name(name: str) -> str:
    """The short form of a registry name (``docker.io/library/tool:1`` is ``tool:1``)."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _link_into(pooled: Path, path: Path) -> None:
    """``path`` becomes a hard link to ``pooled`` (made from ``path`` if it is new)."""
    for _attempt in range(3):  # gc may remove an unused pool entry between the two links
        try:
            os.link(path, pooled)
            return
        except FileExistsError:
            pass
        spare = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        try:
            os.link(pooled, spare)
        except FileNotFoundError:
            continue
        os.replace(spare, path)
        return


def _newest(*paths: Path) -> float:
    """The latest mtime of these paths (0 if none exists): a layout's is when it came."""
    times = [p.lstat().st_mtime for p in paths if p.exists() or p.is_symlink()]
    return max(times, default=0.0)


def _file_keys(rootfs: Path) -> list[tuple[Path, str, int]]:
    """(path, content-and-mode key, size) of each regular file of a fresh rootfs that has no
    other link (symlinks, devices and the image's own hard links stay as they are)."""
    found = []
    for folder, _dirs, files in os.walk(rootfs, followlinks=False):
        for name in files:
            path = Path(folder, name)
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                continue
            h = blake3.blake3()
            with open(path, "rb", buffering=0) as f:  # a regular file: no symlink here
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            found.append((path, f"{h.hexdigest()}-{stat.S_IMODE(st.st_mode):o}", st.st_size))
    return found


def _size(n: int) -> str:
    from tusk.units import human_size

    return human_size(n)


def _count_links(path: Path, links: dict[int, list[int]]) -> None:
    """Count, per inode, the links to regular files under ``path`` ([found, nlink, size])."""
    if not path.is_dir() or path.is_symlink():
        return
    for folder, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(st.st_mode):
                entry = links.setdefault(st.st_ino, [0, st.st_nlink, st.st_size])
                entry[0] += 1


def _archive_tags(path: Path) -> list[str]:
    """The repo tags a ``docker save`` tarball names (its manifest.json's RepoTags)."""
    import tarfile

    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.load(member) if member is not None else []
    except (OSError, KeyError, ValueError, tarfile.TarError):
        return []
    tags = []
    for entry in manifest if isinstance(manifest, list) else []:
        for tag in entry.get("RepoTags") or [] if isinstance(entry, dict) else []:
            if isinstance(tag, str):
                tags.append(tag)
    return tags


def _with_refs(info: ImageInfo, refs: list[str]) -> ImageInfo:
    return ImageInfo(**{**info.__dict__, "references": refs})


def _blob(layout: Path, digest: str) -> Path:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or not re.fullmatch(r"[a-f0-9]{64}", hexd):
        raise InvalidImage(f"digest {digest!r} is not sha256")
    return layout / "blobs" / "sha256" / hexd


_LAYER_RECORDS = "tusk-layers.json"  # in a cached layout: _scan_layers' records
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_MAX_HOPS = 40  # symlinks followed in one path, as Linux allows (ELOOP after that)


def _scan_layers(layout: Path, digest: str, ref: str) -> list[dict[str, Any] | None]:
    """Refuse the image ``digest`` of a fresh ``layout`` if a layer could write outside its
    rootfs: a member named by an absolute path or with a ``..`` segment, a hard link to such
    a path, or a member below a symlink (made by this or an earlier layer) whose target is
    absolute or climbs above the root. Absolute symlinks themselves are normal in images
    (``/bin/sh -> /bin/busybox``) and stay: they resolve inside the rootfs in the sandbox.

    Only the tar headers matter, read as a stream by :func:`_layer_members` (~0.6 s for a
    160 MB layer, mostly gunzip); whiteouts and opaque directories drop the symlinks they
    delete, so a path a later layer makes a real folder again is not refused. A layer that
    Python's tarfile cannot read to its end is checked up to there, and umoci, which keeps
    every path inside the rootfs anyway, judges the rest when it unpacks.

    Returns what :func:`_compose` needs of each layer (:class:`_LayerHeaders`), None for one
    not read to its end (read again when it is unpacked), kept in the layout as
    ``tusk-layers.json`` so that unpacking a layer does not decompress it twice.
    """
    manifest = _read_json(_blob(layout, digest))
    links: dict[str, tuple[str, int]] = {}  # symlink path -> (its target, the layer made it)
    records: list[dict[str, Any] | None] = []
    for index, layer in enumerate(manifest.get("layers") or []):
        layer_digest = str(layer.get("digest", ""))
        blob = _blob(layout, layer_digest)
        records.append(None)
        if blob.stat().st_size == 0:
            continue
        headers = _LayerHeaders()
        with contextlib.suppress(*_unreadable()):
            for member in _layer_members(blob, str(layer.get("mediaType", ""))):
                why = _member_escapes(member, links, index)
                if why:
                    raise InvalidImage(
                        f"image {ref}: layer {layer_digest} is refused: {why}; rebuild the "
                        "image so that every path of its layers stays inside it"
                    )
                headers.add(member)
            records[-1] = headers.record()  # read to its end: what composing needs
    return records


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _outside(path: str) -> str | None:
    """Why the tar path ``path`` names a place outside the rootfs, or None."""
    if path.startswith("/"):
        return "is an absolute path"
    if ".." in path.split("/"):
        return "has a '..' segment"
    return None


def _member_escapes(
    member: tarfile.TarInfo, links: dict[str, tuple[str, int]], layer: int
) -> str | None:
    """Why ``member`` of layer ``layer`` would write outside the rootfs (None: it stays in),
    after recording what it does to the symlinks in ``links``."""
    name = member.name
    why = _outside(name)
    if why:
        return f"member {name!r} {why}"
    parts = _parts(name)
    if not parts:  # the root itself ("./")
        return None
    through = _escaping_link(parts[:-1], links)
    if through:
        return f"member {name!r} is written through {through}"
    path, base = "/".join(parts), parts[-1]
    if base == _OPAQUE:  # the folder hides what lower layers put in it
        folder = "/".join(parts[:-1])
        for key in [k for k, (_t, n) in links.items() if n < layer and _below(k, folder)]:
            del links[key]
    elif base.startswith(_WHITEOUT):
        gone = "/".join([*parts[:-1], base[len(_WHITEOUT) :]])
        for key in [k for k in links if k == gone or _below(k, gone)]:
            del links[key]
    elif member.issym():
        links[path] = (member.linkname, layer)
    else:
        links.pop(path, None)
        if member.islnk():
            target = member.linkname
            why = _outside(target)
            if why:
                return f"member {name!r} is a hard link to {target!r}, which {why}"
            through = _escaping_link(_parts(target)[:-1], links)
            if through:
                return f"member {name!r} is a hard link to {target!r}, reached through {through}"
            if "/".join(_parts(target)) in links:  # a hard link to a symlink is one too
                links[path] = links["/".join(_parts(target))]
    return None


def _below(path: str, folder: str) -> bool:
    return not folder or path.startswith(folder + "/")


def _escaping_link(parts: list[str], links: dict[str, tuple[str, int]]) -> str | None:
    """The symlink through which the folder ``parts`` leads outside the rootfs (its target is
    absolute, or climbs above the root), as ``'PATH' -> 'TARGET'``; None when it stays in."""
    resolved: list[str] = []
    todo = parts[::-1]  # a stack: the next part last
    hops, last = 0, ""
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":  # only a symlink's target has these (member names do not)
            if not resolved:
                return f"the symlink {last}, which climbs above the root"
            resolved.pop()
            continue
        here = "/".join([*resolved, part])
        link = links.get(here)
        if link is None:
            resolved.append(part)
            continue
        target = link[0]
        last = f"{here!r} -> {target!r}"
        if target.startswith("/"):
            return f"the symlink {last}, whose target is absolute"
        hops += 1
        if hops > _MAX_HOPS:
            return f"more than {_MAX_HOPS} symlinks (the last {last})"
        todo.extend(target.split("/")[::-1])
    return None


def _write_authfile(path: Path, registry: str, credentials: tuple[str, str]) -> None:
    """A Docker config.json for one registry, readable by this user only."""
    user, password = credentials
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"auths": {registry: {"auth": token}}}, f)


_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def _authfile_token(path: Path, registry: str) -> str | None:
    """The bearer token (``registrytoken``) a Docker config.json holds for ``registry``, if
    any (keys as Docker writes them: ``HOST[:PORT]``, with or without a scheme and a path)."""
    try:
        auths = _read_json(path).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        return None  # skopeo says what is wrong with the file
    hub = registry in _DOCKER_HUB
    for key, entry in auths.items() if isinstance(auths, dict) else []:
        host = re.sub(r"^[a-z]+://", "", str(key)).split("/", 1)[0]
        if (host == registry or (hub and host in _DOCKER_HUB)) and isinstance(entry, dict):
            token = entry.get("registrytoken")
            if isinstance(token, str):
                return token
    return None


# What skopeo's stderr says went wrong, in the words registries and skopeo use; the first
# kind that matches wins (a denied pull can also say "not found").
_SKOPEO_FAILURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("digest", ("digest did not match",)),
    ("denied", (
        "unauthorized",
        "authentication required",
        "incorrect username or password",
        "invalid username/password",
        "denied: access forbidden",
        "forbidden",
    )),
    ("missing", (
        "manifest unknown",
        "no descriptor found",
        "no such file",
        "not found",
        "does not exist",
        "requested access to the resource is denied",
        "name unknown",
        "no such host",
    )),
    ("unsupported", ("unsupported", "not supported")),
)  # fmt: skip


def skopeo_failure(stderr: str) -> str:
    """Why a skopeo copy or inspect failed: digest, denied, missing, unsupported or other."""
    low = stderr.lower()
    for kind, words in _SKOPEO_FAILURES:
        if any(word in low for word in words):
            return kind
    return "other"


def _copy_error(ref: str, stderr: str) -> Exception:
    line = skopeo_reason(stderr)
    kind = skopeo_failure(stderr)
    if kind == "digest":
        return InvalidImage(f"image {ref}: a blob's digest does not match ({line})")
    if kind == "denied":
        return ImagePullDenied(f"pull denied for {ref}: {line}")
    if kind == "missing":
        return ImageNotFound(f"image {ref} not found: {line}")
    if kind == "unsupported":
        return InvalidImage(f"image {ref}: media type not supported: {line}")
    return InvalidImage(f"image {ref} cannot be copied: {line}")


def _drop_setid(root: Path, owner_rwx: bool = False) -> None:
    """Clear setuid/setgid bits below ``root`` without following any symlink; with
    ``owner_rwx`` also give every folder (``root`` too) its owner's rwx, so that a layer's
    files can be linked from it whatever modes the image gives its folders (the rootfs made
    of them gets the image's modes back from ``layer.json``)."""
    if owner_rwx:
        os.chmod(root, stat.S_IMODE(os.lstat(root).st_mode) | stat.S_IRWXU)
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            new = mode & ~(stat.S_ISUID | stat.S_ISGID)
            if owner_rwx and stat.S_ISDIR(st.st_mode):
                new |= stat.S_IRWXU
            if new != mode:
                os.chmod(path, new)


def _image_layers(layout: Path, digest: str) -> list[tuple[dict[str, Any], str]] | None:
    """(layer descriptor, diff_id) of each layer of the image ``digest``, lowest first; None
    when its config does not name one sha256 diff_id per layer (umoci then says why)."""
    try:
        manifest = _read_json(_blob(layout, digest))
        config = _read_json(_blob(layout, manifest["config"]["digest"]))
        layers = list(manifest.get("layers") or [])
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, InvalidImage):
        return None
    if len(layers) != len(diff_ids) or not all(
        isinstance(d, str) and re.fullmatch(r"sha256:[a-f0-9]{64}", d) for d in diff_ids
    ):
        return None
    return list(zip(layers, diff_ids, strict=True))


def _one_layer_layout(
    layout: Path, blob: Path, desc: dict[str, Any], diff_id: str, arch: str
) -> None:
    """An OCI layout (tag ``TAG``) whose image is the one layer ``blob`` (a hard link to it)."""
    folder = layout / "blobs" / "sha256"
    folder.mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    os.link(blob, folder / blob.name)

    def put(data: dict[str, Any], media_type: str) -> dict[str, Any]:
        raw = json.dumps(data, sort_keys=True).encode()
        hexd = hashlib.sha256(raw).hexdigest()
        (folder / hexd).write_bytes(raw)
        return {"mediaType": media_type, "digest": f"sha256:{hexd}", "size": len(raw)}

    config = {
        "architecture": arch,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    layer = {k: desc[k] for k in ("mediaType", "digest", "size") if k in desc}
    manifest = {
        "schemaVersion": 2,
        "mediaType": _OCI_MANIFEST,
        "config": put(config, _OCI_CONFIG),
        "layers": [layer],
    }
    entry = {
        **put(manifest, _OCI_MANIFEST),
        "annotations": {"org.opencontainers.image.ref.name": TAG},
    }
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))


class _Padded:
    """A tar stream ending in the end-of-archive blocks even when its writer left them out
    (``umoci insert`` stops short of them), so that every header of it is read."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.n = 0
        self.tail: bytes | None = None

    def read(self, size: int = -1) -> bytes:
        if self.tail is None:
            try:
                data = self.f.read(size)
            except EOFError:  # a gzip stream cut short: its end is judged as the tar's
                data = b""
            if data:
                self.n += len(data)
                return data
            self.tail = b"\0" * ((-self.n) % 512 + 1024)
        size = len(self.tail) if size < 0 else size
        data, self.tail = self.tail[:size], self.tail[size:]
        return data


class _LayerHeaders:
    """What one layer does besides adding files, from its tar headers, as :func:`_compose`
    needs it: ``whiteouts`` (paths it deletes below it), ``opaque`` (folders whose lower
    entries it hides), ``dirs`` (the folders it names, with their modes) and ``alone``
    (False when a hard link of it names a file it does not hold: it cannot be unpacked by
    itself)."""

    def __init__(self) -> None:
        self.whiteouts: list[str] = []
        self.opaque: list[str] = []
        self.dirs: dict[str, int] = {}
        self.seen: set[str] = set()
        self.alone = True

    def add(self, member: tarfile.TarInfo) -> None:
        parts = _parts(member.name)
        path = "/".join(parts)
        base = parts[-1] if parts else ""
        if base == _OPAQUE:
            self.opaque.append("/".join(parts[:-1]))
        elif base.startswith(_WHITEOUT):
            self.whiteouts.append("/".join([*parts[:-1], base[len(_WHITEOUT) :]]))
        else:
            if member.islnk() and "/".join(_parts(member.linkname)) not in self.seen:
                self.alone = False
            self.seen.add(path)
            if member.isdir():
                self.dirs[path] = member.mode & 0o7777
            else:
                self.dirs.pop(path, None)

    def record(self) -> dict[str, Any]:
        return {
            "alone": self.alone,
            "whiteouts": self.whiteouts,
            "opaque": self.opaque,
            "dirs": self.dirs,
        }


def _unreadable() -> tuple[type[BaseException], ...]:
    """What reading a layer's headers raises where Python cannot read on (tarfile and zlib
    load with the first image)."""
    import tarfile
    import zlib

    return (OSError, EOFError, zlib.error, tarfile.TarError)


def _layer_members(blob: Path, media_type: str) -> Iterator[tarfile.TarInfo]:
    """The tar headers of a layer blob (plain tar, or tar+gzip by its media type: the only
    kinds :meth:`ImageCache._check` lets in), read as a stream, padded to the end-of-archive
    blocks its writer may have left out (:class:`_Padded`). Raises one of
    :func:`_unreadable` where Python cannot read on."""
    import gzip
    import tarfile

    with open(blob, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw) if media_type.endswith("+gzip") else raw
        padded: Any = _Padded(stream)
        with tarfile.open(fileobj=padded, mode="r|", bufsize=1 << 16) as tar:
            yield from tar


def _layer_headers(blob: Path, media_type: str) -> dict[str, Any] | None:
    """The :class:`_LayerHeaders` record of a layer blob; None when Python cannot read its
    headers to the end."""
    headers = _LayerHeaders()
    try:
        for member in _layer_members(blob, media_type):
            headers.add(member)
    except _unreadable():
        return None
    return headers.record()


def _inside(root: str, parts: list[str]) -> str | None:
    """The host path that ``parts`` (a path inside the rootfs ``root``) names, every symlink
    on the way resolved inside ``root`` as the sandbox would (an absolute target from
    ``root``, ``..`` stopping there); None when a part is missing or not a folder."""
    resolved: list[str] = []
    todo = parts[::-1]
    hops = 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        here = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(here)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_HOPS:
                return None
            target = os.readlink(here)
            if target.startswith("/"):
                resolved = []
            todo.extend(target.split("/")[::-1])
            continue
        if todo and not stat.S_ISDIR(st.st_mode):
            return None
        resolved.append(part)
    return os.path.join(root, *resolved)


def _remove(path: str) -> None:
    """Remove what ``path`` names (a folder with what is in it), never following a symlink."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        _rmtree(Path(path))
    else:
        os.unlink(path)


def _compose(root: Path, layers: Sequence[tuple[Path, dict[str, Any]]]) -> None:
    """Build a rootfs in the empty folder ``root`` from unpacked layers, lowest first, as
    umoci would unpack them one upon another: each layer's whiteouts and opaque folders first
    remove what lower layers put there, then its entries are added (files as hard links to
    the layer's, so a hard link inside a layer stays one; symlinks as they are; a folder the
    layer names replaces a symlink there, a parent folder it only implies follows it inside
    the rootfs). Folders get their modes (setuid/setgid cleared) once all layers are in."""
    top = str(root)
    modes: dict[str, int] = {}
    for layer, meta in layers:
        for folder in meta.get("opaque") or []:
            where = _inside(top, _parts(folder))
            if where is not None and os.path.isdir(where) and not os.path.islink(where):
                with os.scandir(where) as entries:
                    for entry in list(entries):
                        _remove(entry.path)
        for gone in meta.get("whiteouts") or []:
            parts = _parts(gone)
            parent = _inside(top, parts[:-1]) if parts else None
            if parent is not None and os.path.isdir(parent):
                _remove(os.path.join(parent, parts[-1]))
        named: dict[str, int] = meta.get("dirs") or {}
        if "" in named:
            modes[top] = named[""]
        _overlay(top, str(layer), top, "", named, modes, not os.listdir(top))
    for path in sorted(modes, key=len, reverse=True):  # deepest first
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(path).st_mode):
                os.chmod(path, modes[path] & ~(stat.S_ISUID | stat.S_ISGID))


def _overlay(
    top: str,
    src: str,
    dst: str,
    rel: str,
    named: dict[str, int],
    modes: dict[str, int],
    fresh: bool,
) -> None:
    """Add the entries of the layer folder ``src`` (``rel`` inside the layer) to the real
    rootfs folder ``dst`` (``fresh``: made empty by this layer, nothing to replace). Every
    folder of the rootfs is made here with mode 0700, its own mode being set at the end."""
    with os.scandir(src) as entries:
        items = sorted(entries, key=lambda e: e.name)
    for entry in items:
        path = f"{rel}/{entry.name}" if rel else entry.name
        there = os.path.join(dst, entry.name)
        if entry.is_dir(follow_symlinks=False):
            target: str | None = None
            if fresh:
                pass
            elif os.path.isdir(there) and not os.path.islink(there):
                target = there
            elif os.path.islink(there) and path not in named:  # a parent it implies
                target = _inside(top, _parts(os.path.relpath(there, top)))
                if target is not None and not os.path.isdir(target):
                    target = None
            if target is None:
                if not fresh:
                    _remove(there)
                os.mkdir(there, 0o700)
                modes[there] = named.get(path, 0o755)
                _overlay(top, entry.path, there, path, named, modes, True)
                continue
            if path in named:
                modes[target] = named[path]
            _overlay(top, entry.path, target, path, named, modes, False)
            continue
        if not fresh:
            _remove(there)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), there)
            continue
        try:
            os.link(entry.path, there, follow_symlinks=False)
        except OSError as exc:
            if exc.errno != errno.EMLINK:
                raise
            shutil.copy2(entry.path, there, follow_symlinks=False)


def _mount_points(root: Path, working_dir: str) -> None:
    """Make the directories bubblewrap mounts on (a symlink there is replaced, never followed),
    and the image's WorkingDir when no part of it is a symlink (Docker makes it too)."""
    for name in _MOUNT_POINTS:
        path = root / name
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
        path.mkdir(mode=0o755, exist_ok=True)
    make_mount_point(root, working_dir)
    etc = root / "etc"
    if etc.is_dir() and not etc.is_symlink():
        for name in _NETWORK_FILES:  # where the host's are bound when the network is shared
            if not (etc / name).exists() and not (etc / name).is_symlink():
                (etc / name).touch(mode=0o644)


def make_mount_point(root: Path, inside: str) -> bool:
    """Make the directory ``inside`` (absolute) in the rootfs ``root`` for bubblewrap to mount
    on; False when a part of it is a symlink or not a directory (never followed)."""
    parts = [p for p in inside.split("/") if p not in ("", ".")]
    if ".." in parts:
        return False
    here = root
    for part in parts:
        here = here / part
        if here.is_symlink():
            return False
        if not here.exists():
            here.mkdir(mode=0o755)
        elif not here.is_dir():
            return False
    return True


def _rootfs_file(root: Path, inside: str) -> bytes | None:
    """A small file of the rootfs, read without following any symlink (None if absent)."""
    here = root
    for part in [p for p in inside.split("/") if p]:
        here = here / part
        if here.is_symlink():
            return None
    try:
        fd = os.open(here, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(1 << 20)


def _id_table(root: Path, name: str) -> dict[str, list[str]]:
    data = _rootfs_file(root, f"/etc/{name}") or b""
    rows: dict[str, list[str]] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] and fields[2].isdigit():
            rows.setdefault(fields[0], fields)
    return rows


def image_user(root: Path, user: str, ref: str) -> tuple[int, int, str]:
    """(uid, gid, home) of ``user`` as Docker reads it: ``""`` (root), a name or a number,
    optionally ``:group``; names are looked up in the rootfs's /etc/passwd and /etc/group."""
    name, _, group = (user or "0").partition(":")
    passwd = _id_table(root, "passwd")
    home = "/"
    if name.isdigit():
        uid = int(name)
        row = next((r for r in passwd.values() if r[2] == name), None)
        gid = int(row[3]) if row and len(row) > 3 and row[3].isdigit() else uid
        home = row[5] if row and len(row) > 5 and row[5] else home
    elif name in passwd:
        row = passwd[name]
        uid = int(row[2])
        gid = int(row[3]) if len(row) > 3 and row[3].isdigit() else uid
        home = row[5] if len(row) > 5 and row[5] else home
    else:
        raise InvalidImage(f"user {name!r} is not in /etc/passwd of image {ref}")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            groups = _id_table(root, "group")
            if group not in groups:
                raise InvalidImage(f"group {group!r} is not in /etc/group of image {ref}")
            gid = int(groups[group][2])
    if uid == 0 and home == "/":
        home = "/root"
    return uid, gid, home


def pinned_reference(ref: Reference | str, digest: str) -> Reference:
    """The reference that fetches exactly ``digest``: ``NAME@DIGEST`` for a registry (a tag
    dropped), the reference itself for a layout or an archive (checked after the copy)."""
    if isinstance(ref, str):
        ref = parse_reference(ref)
    if ref.transport != "docker":
        return ref
    name = ref.name.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: len(name) - len(last[-1])] + last[-1].split(":", 1)[0]
    return Reference("docker", f"{name}@{digest}", ref.text)


def image_argv(
    rootfs: Path,
    info: ImageInfo,
    cmd: list[str] | None,
    binds: list[tuple[Path, str, bool]],
    env: dict[str, str],
    network: bool,
    user: tuple[int, int] | None = None,
    working_dir: str | None = None,
) -> list[str]:
    """The bubblewrap command that runs ``cmd`` (or the image's Entrypoint + Cmd) in ``rootfs``.

    The rootfs is ``/``, read-only; ``binds`` are (host path, path inside, writable), read-only
    unless writable (``/pfs/<input>`` read-only, ``/pfs/out`` writable; ``/pfs`` itself is a
    tmpfs so any path below it can be a mount point). ``/tmp`` is a private tmpfs, ``/proc`` and
    ``/dev`` are fresh; every namespace is unshared, the network too unless ``network``. The
    environment is the image's Env, then ``env``, and nothing of the caller's (PATH defaults to
    the usual one when the image sets none). ``cmd`` replaces Entrypoint and Cmd, as a
    Pachyderm ``transform.cmd`` does. ``user`` (uid, gid) is who the command is inside its user
    namespace (the files it writes belong to the user running Tusk); ``working_dir`` replaces
    the image's WorkingDir.
    """
    argv = list(cmd) if cmd else [*info.entrypoint, *info.cmd]
    if not argv:
        raise InvalidImage(
            f"image {info.digest} has no Entrypoint or Cmd and the pipeline gives no cmd"
        )
    args = [_tool("bwrap", info.digest), "--ro-bind", str(rootfs), "/"]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/pfs"]
    for host, inside, writable in binds:
        if not inside.startswith("/"):
            raise InvalidImage(f"mount point {inside!r} is not an absolute path")
        args += ["--bind" if writable else "--ro-bind", str(host), inside]
    args += ["--unshare-all"]
    if network:
        args.append("--share-net")
        for name in _NETWORK_FILES:  # name resolution as on the host, as Docker does
            there = rootfs / "etc" / name
            on_host = Path("/etc") / name
            if on_host.is_file() and there.is_file() and not there.is_symlink():
                args += ["--ro-bind", str(on_host), f"/etc/{name}"]
    if user is not None:
        args += ["--uid", str(user[0]), "--gid", str(user[1])]
    args += ["--die-with-parent", "--cap-drop", "ALL", "--clearenv"]
    merged: dict[str, str] = {"PATH": DEFAULT_PATH}
    for item in info.env:
        key, _, value = item.partition("=")
        if key:
            merged[key] = value
    merged.update(env)
    for key, value in merged.items():
        args += ["--setenv", key, value]
    args += ["--chdir", working_dir or info.working_dir or "/", "--", *argv]
    return args
