"""Pipeline images resolved for Kubernetes: the manifest digest a registry serves for a
``transform.image``, and the Entrypoint and Cmd of its config, read with Debian's ``skopeo``.

References are parsed by :func:`tusk.pps.images.parse_reference` (the spellings every image of
Tusk takes) and pinned by :func:`tusk.pps.images.pinned_reference`. Only manifests and the
config are read (``skopeo inspect --raw``, then ``skopeo inspect --config`` of the chosen
manifest by digest, so a tag moved in between cannot mix two images); no layer is fetched and
nothing is cached: a cluster pulls the image, not this machine. :mod:`tusk.pps.images` has no
public inspect (its cache copies whole images, converts manifests to OCI, which changes their
digest, and refuses other architectures), hence this module.

The digest is the sha256 of the top manifest's bytes as the registry serves them, which is
the digest a cluster pulls by: for a multi-architecture index, the index's, so every node
still gets its own architecture. The config is read from the index's entry for this machine's
architecture, else its first linux one (a laptop on arm64 deploying amd64-only images).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import field
from pathlib import Path
from typing import Any

from tusk.errors import (
    ImageNotFound,
    ImagePullDenied,
    InvalidArgument,
    InvalidImage,
    ToolMissing,
    TuskError,
)
from tusk.pps.images import (
    Reference,
    host_architecture,
    parse_reference,
    pinned_reference,
    skopeo_failure,
    skopeo_reason,
)
from tusk.values import frozen

INSPECT_TIMEOUT = 120.0  # seconds for one skopeo inspect (a slow registry, not a hung one)
_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_PINNED = re.compile(r"@sha256:[a-f0-9]{64}$")


@frozen
class ResolvedImage:
    """A ``transform.image`` as a cluster pulls it: ``image`` names it by digest."""

    reference: str  # as the spec wrote it
    image: str  # NAME@sha256:<manifest digest>: what the Job names
    digest: str
    command: list[str] = field(default_factory=list)  # Entrypoint + Cmd, when asked for


def cluster_image(text: str) -> str:
    """The image field a pod takes for a ``transform.image``, unresolved: ``docker://``
    dropped. InvalidImage (one line) for a malformed reference, and for an OCI layout or a
    docker archive, which no cluster can pull."""
    ref = parse_reference(text)
    if ref.transport != "docker":
        what = "an OCI image layout" if ref.transport == "oci" else "a docker-archive tarball"
        raise InvalidImage(
            f"image {text} is {what} on this machine, which a cluster cannot pull; push it to a "
            f"registry (skopeo copy {ref.source()} docker://REGISTRY/NAME:TAG) and give that "
            "name as transform.image"
        )
    return ref.name


def _message(stderr: str) -> str:
    """skopeo's reason, without its log prefix and the reference it repeats."""
    return re.sub(r'^Error parsing image name "[^"]*": ', "", skopeo_reason(stderr))


class ImageResolver:
    """Resolves references with skopeo, each once per instance. ``authfile``: a Docker
    ``config.json`` for registries that ask for credentials (else skopeo's own search:
    ``$REGISTRY_AUTH_FILE``, ``$XDG_RUNTIME_DIR/containers/auth.json``,
    ``~/.docker/config.json``)."""

    def __init__(self, authfile: Path | None = None, timeout: float = INSPECT_TIMEOUT) -> None:
        if authfile is not None and not Path(authfile).is_file():
            raise InvalidArgument(f"auth file {authfile} does not exist")
        self.authfile = authfile
        self.timeout = timeout
        self._done: dict[tuple[str, bool], ResolvedImage] = {}

    def resolve(self, text: str, with_command: bool) -> ResolvedImage:
        """The image ``text`` names, pinned; ``with_command``: also its Entrypoint + Cmd.
        Raises InvalidImage, ImageNotFound, ImagePullDenied or ToolMissing (one line each,
        naming the reference)."""
        key = (text, with_command)
        if key not in self._done:
            self._done[key] = self._resolve(text, with_command)
        return self._done[key]

    def _resolve(self, text: str, with_command: bool) -> ResolvedImage:
        cluster_image(text)  # refuses what a cluster cannot pull
        ref = parse_reference(text)
        raw = self._inspect(ref, text, "--raw")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        name = ref.name if _PINNED.search(ref.name) else pinned_reference(ref, digest).name
        if not with_command:
            return ResolvedImage(text, name, digest)
        manifest = self._json(raw, text, "manifest")
        if manifest.get("mediaType") in _INDEX_TYPES or "manifests" in manifest:
            chosen = _platform_manifest(manifest, text)
            config = self._json(
                self._inspect(pinned_reference(ref, chosen), text, "--config"), text, "config"
            )
        else:
            config = self._json(
                self._inspect(pinned_reference(ref, digest), text, "--config"), text, "config"
            )
        c = config.get("config") or {}
        command = [str(x) for x in (c.get("Entrypoint") or [])]
        command += [str(x) for x in (c.get("Cmd") or [])]
        return ResolvedImage(text, name, digest, command)

    def _inspect(self, ref: Reference, text: str, what: str) -> bytes:
        skopeo = shutil.which("skopeo")
        if skopeo is None:
            raise ToolMissing(
                f"skopeo is not installed to resolve image {text} (install the Debian package "
                "skopeo, or give --no-resolve-images)"
            )
        args = [skopeo, "inspect", what]
        if ref.insecure:
            args.append("--tls-verify=false")
        if self.authfile is not None:
            args.append(f"--authfile={self.authfile}")
        args.append(ref.source())
        try:
            r = subprocess.run(args, capture_output=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise InvalidImage(
                f"image {text}: the registry did not answer within {self.timeout:g}s"
            ) from None
        if r.returncode == 0:
            return r.stdout
        stderr = r.stderr.decode("utf-8", "replace")
        reason, kind = _message(stderr), skopeo_failure(stderr)
        error: TuskError
        if kind == "denied":
            error = ImagePullDenied(
                f"pull denied for image {text}: {reason} (give registry credentials with "
                "--authfile, a Docker config.json)"
            )
        elif kind == "missing":
            error = ImageNotFound(f"image {text} not found: {reason}")
        else:
            error = InvalidImage(f"image {text} cannot be resolved: {reason}")
        raise error

    @staticmethod
    def _json(data: bytes, text: str, what: str) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise InvalidImage(f"image {text}: the registry's {what} is not a JSON object")
        return value


def _platform_manifest(index: dict[str, Any], text: str) -> str:
    """The digest of the index entry whose config to read: this machine's architecture on
    linux, else the first linux one (attestations, platform unknown, are skipped)."""
    linux = [
        m
        for m in index.get("manifests") or []
        if isinstance(m, dict)
        and (m.get("platform") or {}).get("os") == "linux"
        and re.fullmatch(r"sha256:[a-f0-9]{64}", str(m.get("digest", "")))
    ]
    if not linux:
        raise InvalidImage(f"image {text}: its index names no linux image")
    mine = [m for m in linux if m["platform"].get("architecture") == host_architecture()]
    return str((mine or linux)[0]["digest"])
