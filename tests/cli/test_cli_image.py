"""``tusk image load``, ``tusk list image`` and ``tusk inspect image`` on a home in-process.

A busybox image built offline (tests/imagebuild.py) is loaded from its ``docker save``
tarball (tagged busybox:v1); listings show digest, references (the tarball and its tag),
platform, size on disk (the unpacked rootfs too, its hard-linked files once) and whether the
rootfs is unpacked. A damaged or wrong tarball is one ``error:`` line, exit 2, and leaves the
cache as it was.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from clihelpers import Tusk

from imagebuild import BUSYBOX, Built, build, layout_bytes, needs_tools
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
