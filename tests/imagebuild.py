"""A tiny image built offline for the image cache's CLI and API tests, and damaged copies of it.

As tests/pps/test_images.py builds its own: umoci writes an OCI layout FROM scratch holding
Debian's busybox-static, plus a layer whose ``bin/sh`` is a hard link to ``bin/busybox``;
skopeo turns it into a ``docker save`` tarball. Without skopeo, umoci or busybox-static the
tests that use it skip here, and fail in CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")
CI = os.environ.get("CI") == "true"
HAVE_TOOLS = bool(shutil.which("skopeo") and shutil.which("umoci")) and BUSYBOX.exists()
needs_tools = pytest.mark.skipif(
    not HAVE_TOOLS and not CI, reason="skopeo, umoci or busybox-static is not installed"
)


@dataclass(frozen=True)
class Built:
    layout: Path  # OCI layout, tag v1
    archive: Path  # docker save tarball of v1 (busybox:v1)
    bad: dict[str, Path]  # damaged or wrong files, by what is wrong with them


def _run(*args: str | Path) -> None:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == 0, f"{args}: {r.stderr}"


def build(base: Path) -> Built:
    if not HAVE_TOOLS:
        pytest.fail("skopeo, umoci and busybox-static are needed (./dev.sh installs them)")
    layout = base / "layout"
    _run("umoci", "init", "--layout", layout)
    _run("umoci", "new", "--image", f"{layout}:base")
    _run("umoci", "insert", "--rootless", "--image", f"{layout}:base", BUSYBOX, "/bin/busybox")
    link = base / "link.tar"
    with tarfile.open(link, "w") as tar:
        sh = tarfile.TarInfo("bin/sh")
        sh.type, sh.linkname = tarfile.LNKTYPE, "bin/busybox"
        tar.addfile(sh)
    _run("umoci", "raw", "add-layer", "--image", f"{layout}:base", "--tag", "v1", link)
    _run("umoci", "config", "--image", f"{layout}:v1", "--config.cmd", "/bin/sh")
    archive = base / "busybox.tar"
    _run("skopeo", "copy", "--quiet", f"oci:{layout}:v1", f"docker-archive:{archive}:busybox:v1")

    data = archive.read_bytes()
    bad = {name: base / f"{name}.tar" for name in ("junk", "cut", "empty", "flipped", "plain")}
    bad["junk"].write_bytes(b"not a tarball at all\n" * 100)
    bad["cut"].write_bytes(data[: len(data) // 2])
    bad["empty"].write_bytes(b"")
    with tarfile.open(archive) as tar:
        blob = max(tar.getmembers(), key=lambda m: m.size)  # the busybox layer
    flipped = bytearray(data)
    flipped[blob.offset_data + blob.size // 2] ^= 0xFF
    bad["flipped"].write_bytes(bytes(flipped))
    with tarfile.open(bad["plain"], "w") as tar:
        tar.add(link, "some/file.tar")
    return Built(layout, archive, bad)


def layout_bytes(folder: Path) -> int:
    """The bytes of the files under ``folder`` (no hard links there)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
