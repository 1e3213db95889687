"""``tusk image load``, ``tusk list image``, ``tusk inspect image`` and ``tusk delete image`` on
a home in-process.

A busybox image built offline (tests/imagebuild.py) is loaded from its ``docker save``
tarball (tagged busybox:v1); listings show digest, references (the tarball and its tag),
platform, size on disk (the unpacked rootfs too, its hard-linked files once) and whether the
rootfs is unpacked. A damaged or wrong tarball is one ``error:`` line, exit 2, and leaves the
cache as it was. Deleting an image frees what only it linked in the pools at once (two images
sharing their layers show it) and refuses, changing nothing, while a pipeline's job pins it.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from clihelpers import Tusk

from imagebuild import BUSYBOX, Built, build, layout_bytes, needs_tools
from tusk import Client
from tusk.pps.cached_images import disk_size
from tusk.pps.images import ImageCache, host_architecture

pytestmark = needs_tools
LOADED = re.compile(r"loaded image (sha256:[0-9a-f]{64}) \((.+)\)")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("images"))


def _load(tusk: Tusk, source: str) -> tuple[str, str]:
    m = LOADED.fullmatch(tusk("image", "load", source).stdout.strip())
    assert m, source
    return m[1], m[2]


def test_load_list_and_inspect(tusk: Tusk, built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tusk.json("list", "image") == []
    digest, refs = _load(tusk, str(built.archive))
    tarball = f"docker-archive:{built.archive}"
    assert refs == f"busybox:v1, {tarball}"
    header, row = tusk("list", "image").lines
    assert header.split() == ["DIGEST", "REFERENCES", "ARCH", "SIZE", "UNPACKED"]
    assert row.split()[:4] == [digest[7:19], "busybox:v1,", tarball, host_architecture()]
    assert row.split()[-1] == "no"

    [image] = tusk.json("list", "image")
    layout = tusk.home / "images" / "oci" / digest[7:]
    assert image == {
        "digest": digest,
        "references": ["busybox:v1", tarball],
        "architecture": host_architecture(),
        "os": "linux",
        "size": layout_bytes(layout),
        "unpacked": False,
        "env": [],
        "working_dir": "",
        "entrypoint": [],
        "cmd": ["/bin/sh"],
        "user": "",
    }
    for name in (digest, digest[7:19], digest[:11], tarball, "busybox:v1"):
        assert tusk.json("inspect", "image", name) == image, name
    fields = tusk("inspect", "image", digest[7:19]).stdout
    assert f"Digest:      {digest}" in fields and "Cmd:         /bin/sh" in fields

    # A relative path is recorded absolute; the same tarball is the same image.
    monkeypatch.chdir(built.archive.parent)
    assert _load(tusk, f"docker-archive:{built.archive.name}") == (digest, refs)
    assert tusk.json("image", "load", str(built.archive)) == image
    # As after docker load: the tag names it with no pull, and gc keeps it.
    assert ImageCache(tusk.home / "images").resolve("busybox:v1").digest == digest
    tusk("gc", "--grace", "0")
    assert tusk.json("list", "images") == [image]


def test_an_unpacked_rootfs_counts_its_hard_links_once(tusk: Tusk, built: Built) -> None:
    digest, _ = _load(tusk, str(built.archive))
    [before] = tusk.json("list", "image")
    cache = ImageCache(tusk.home / "images")
    rootfs = cache.rootfs(cache.lookup(digest))  # what the first datum in the image does
    assert (rootfs / "bin" / "sh").stat().st_ino == (rootfs / "bin" / "busybox").stat().st_ino
    [after] = tusk.json("list", "image")
    assert after["unpacked"] is True
    busybox = BUSYBOX.stat().st_size
    assert busybox <= after["size"] - before["size"] < busybox + 64 * 1024
    assert tusk("list", "image").lines[1].split()[-1] == "yes"
    assert "Unpacked:    yes" in tusk("inspect", "image", digest).stdout


BAD = {
    "junk": r"image tarball .*/junk\.tar is not a tar archive \(docker save, podman save\)$",
    "cut": r"image tarball .*/cut\.tar is a damaged tar archive \(unexpected end of data\)$",
    "empty": r"image tarball .*/empty\.tar is empty, not an image tarball",
    "flipped": r"image docker-archive:.*/flipped\.tar: a blob's digest does not match",
    "plain": r"image tarball .*/plain\.tar has no manifest\.json: not a docker save",
}


def test_a_bad_tarball_is_one_line_and_changes_nothing(tusk: Tusk, built: Built) -> None:
    _load(tusk, str(built.archive))
    before = tusk.json("list", "image")
    oci = sorted((tusk.home / "images" / "oci").iterdir())
    for name, message in BAD.items():
        error = tusk.fails("image", "load", str(built.bad[name]), code=2)
        assert re.match(message, error), (name, error)
        assert tusk.json("list", "image") == before, name
        assert sorted((tusk.home / "images" / "oci").iterdir()) == oci, name
        assert list((tusk.home / "images" / "tmp").iterdir()) == [], name


def test_what_is_not_a_tarball(tusk: Tusk, tmp_path: Path) -> None:
    missing = tmp_path / "nosuch.tar"
    assert tusk.fails("image", "load", str(missing), code=6) == (
        f"image tarball {missing} does not exist"
    )
    error = tusk.fails("image", "load", str(tmp_path), code=6)
    assert error == f"image tarball {tmp_path} is a directory, not a tarball"
    error = tusk.fails("image", "load", "busybox:latest", code=2)
    assert "give a tarball (docker save, podman save) whose path has no ':'" in error
    error = tusk.fails("image", "load", f"oci:{tmp_path}:v1", code=2)
    assert "tusk image load takes a tarball; make one of the OCI layout first" in error
    error = tusk.fails("inspect", "image", "0123abcd", code=3)
    assert error.startswith("no image '0123abcd' in the image cache")
    assert not (tusk.home / "images" / "oci").exists()


MOTD = 100 * 1024  # bytes of the file two test images share through the files/ pool


def _twins(built: Built, base: Path) -> tuple[Path, Path]:
    """Tarballs of two images (shared:a, shared:b) with the same layers, busybox's and one
    adding /etc/motd, and their own configs: their layer blobs and /etc/motd are pooled."""
    layout = base / "layout"
    shutil.copytree(built.layout, layout)
    motd = base / "motd.tar"
    with tarfile.open(motd, "w") as tar:
        info = tarfile.TarInfo("etc/motd")
        info.size, info.mode = MOTD, 0o644
        tar.addfile(info, io.BytesIO(b"m" * MOTD))
    _tool("umoci", "raw", "add-layer", "--image", f"{layout}:v1", "--tag", "motd", motd)
    for name in ("a", "b"):
        _tool(
            "umoci",
            "config",
            "--image",
            f"{layout}:motd",
            "--tag",
            name,
            "--config.env",
            f"N={name}",
        )
        target = f"docker-archive:{base / name}.tar:shared:{name}"
        _tool("skopeo", "copy", "--quiet", f"oci:{layout}:{name}", target)
    return base / "a.tar", base / "b.tar"


def _tool(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True)


def _entries(cache: Path, hexd: str) -> list[str]:
    """What of one image is in the cache: its layout, rootfs, hold and reference records."""
    found = [sub for sub in ("oci", "rootfs", "held") if (cache / sub / hexd).exists()]
    refs = [p.name for p in (cache / "refs").glob("*.json") if hexd in p.read_text()]
    return found + refs


def test_delete_image_takes_it_and_the_space_only_it_used(
    tusk: Tusk, built: Built, tmp_path: Path
) -> None:
    one, two = (_load(tusk, str(t))[0] for t in _twins(built, tmp_path))
    root = tusk.home / "images"
    cache = ImageCache(root)
    for digest in (one, two):  # unpacked: both rootfs link /etc/motd from the files/ pool
        cache.rootfs(cache.lookup(digest))
    assert len(_entries(root, one[7:])) == 5 and len(_entries(root, two[7:])) == 5
    full = disk_size(root)

    # By tag: what the other image links stays (layer blobs, /etc/motd); its own rootfs
    # copy of busybox (a hard link in the image, so never pooled) and config go.
    out = tusk("delete", "image", "shared:a").stdout.strip()
    assert out == f"deleted image {one} (docker-archive:{tmp_path / 'a.tar'}, shared:a)"
    assert [i["digest"] for i in tusk.json("list", "image")] == [two]
    assert _entries(root, one[7:]) == []
    assert MOTD in [p.stat().st_size for p in (root / "files").iterdir()]
    assert all(
        p.stat().st_nlink >= 2 for pool in ("blobs", "files") for p in (root / pool).iterdir()
    )
    busybox = BUSYBOX.stat().st_size
    assert busybox <= full - disk_size(root) < busybox + 64 * 1024
    assert (cache.rootfs(cache.lookup(two)) / "etc" / "motd").stat().st_size == MOTD

    # The last image: its pool entries go with it, nothing is left.
    gone = tusk.json("delete", "image", two[7:19])
    assert gone["digest"] == two and "shared:b" in gone["references"]
    assert _entries(root, two[7:]) == []
    assert [p for pool in ("blobs", "files") for p in (root / pool).iterdir()] == []
    assert disk_size(root) == 0

    error = tusk.fails("delete", "image", "shared:a", code=3)
    assert error.startswith("no image 'shared:a' in the image cache")


def test_a_pinned_image_is_not_deleted(tusk: Tusk, built: Built) -> None:
    digest, _ = _load(tusk, str(built.archive))
    with Client(tusk.home) as c:
        c.create_repo("in")
        c.put_files("in@master", [("/a.txt", b"alpha")])
        spec = {
            "pipeline": {"name": "edges"},
            "input": {"pfs": {"repo": "in", "glob": "/*"}},
            "transform": {"image": "busybox:v1", "cmd": ["sh", "-c", "cp /pfs/in/* /pfs/out/"]},
        }
        c.create_pipeline(spec)
        c.run_scheduler(once=True)
        assert [j.image_digest for j in c.list_jobs("edges")] == [digest]
    before = tusk.json("list", "image"), _entries(tusk.home / "images", digest[7:])

    error = tusk.fails("delete", "image", "busybox:v1", code=4)
    assert error.startswith(f"image {digest} is pinned by pipeline edges v1: delete the pipeline")
    assert (tusk.json("list", "image"), _entries(tusk.home / "images", digest[7:])) == before

    tusk("delete", "pipeline", "edges")
    assert tusk.json("delete", "image", digest)["digest"] == digest
    assert tusk.json("list", "image") == []
