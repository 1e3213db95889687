"""What an image's layers do to the rootfs a datum sees (issue 14), through the public SDK.

Whiteouts and opaque folders of an upper layer, a layer media type Tusk does not unpack, a layer
that would write outside its rootfs, and the python image run from a ``docker-archive:``
tarball. The images are built offline by ``imagekit`` (busybox FROM scratch, this machine's
Python); the datums run on an embedded home under bubblewrap. Without skopeo, umoci,
busybox-static or a working bubblewrap these tests skip here, and fail in CI (CI=true).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imagekit import add_layer, busybox_image, layer_digests, python_image

import tusk
from tusk.pps.executor import bwrap_works

CI = os.environ.get("CI") == "true"
READY = all(shutil.which(t) for t in ("skopeo", "umoci", "ldd")) and os.path.exists("/bin/busybox")
pytestmark = pytest.mark.skipif(
    not (READY and bwrap_works()) and not CI,
    reason="skopeo, umoci, busybox-static or a working bubblewrap is missing",
)
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not READY:
        pytest.fail("skopeo, umoci and busybox-static are needed (./dev.sh installs them)")
    return tmp_path_factory.mktemp("layers")


@pytest.fixture(scope="module")
def busybox(base: Path) -> str:
    return busybox_image(base / "bb", "v1")


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tusk.Client]:
    monkeypatch.delenv("TUSK_EXECUTOR", raising=False)
    c = tusk.Client(tmp_path / "home")
    c.create_repo("in")
    c.put_file("in@master:/a.txt", b"alpha")
    yield c
    c.close()


def pipeline(name: str, image: str, cmd: list[str]) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": "in", "glob": "/*"}},
        "transform": {"image": image, "cmd": cmd},
    }


COPY = ["sh", "-c", "cp /pfs/in/* /pfs/out/"]


def layer_diff_ids(layout: Path) -> list[str]:
    """The diff_id hex digits of the one image of a cached layout, lowest layer first."""
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
    return [d[7:] for d in config["rootfs"]["diff_ids"]]


def cache_tree(c: tusk.Client) -> list[str]:
    root = c.home / "images"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_whiteouts_and_opaque_folders_of_an_upper_layer(client: tusk.Client, busybox: str) -> None:
    lower = add_layer(
        busybox,
        "lower",
        files={
            "/data/keep": b"keep",
            "/data/gone": b"gone",
            "/data/old/inner": b"inner",
            "/opaque/old": b"old",
            "/opaque/sub/deep": b"deep",
        },
    )
    upper = add_layer(
        lower,
        "upper",
        files={"/opaque/new": b"new"},
        deleted=["/data/gone", "/data/old"],  # a file and a whole folder
        opaque=["/opaque"],
    )
    show = ["sh", "-c", "find /data /opaque | sort > /pfs/out/seen"]
    client.create_pipeline(pipeline("seen", upper, show))
    client.run_scheduler(once=True)
    job = client.list_jobs("seen")[0]
    assert job.state == "success", job.reason
    assert client.get_file("seen@master:/seen").decode().split() == [
        "/data",
        "/data/keep",
        "/opaque",
        "/opaque/new",  # the lower layer's old and sub are hidden; no .wh. file shows
    ]


def _tar_layer(base: Path, ref: str, tag: str, entries: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    """``ref`` with one more layer holding ``entries`` as they are (hard links, setuid bits)."""
    layout, lower = ref[4:].rsplit(":", 1)
    tar = base / f"{tag}.tar"
    with tarfile.open(tar, "w") as out:
        for info, data in entries:
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    subprocess.run(
        ["umoci", "raw", "add-layer", "--image", f"{layout}:{lower}", "--tag", tag, str(tar)],
        check=True,
        capture_output=True,
    )
    return f"oci:{layout}:{tag}"


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def test_two_images_share_their_unpacked_base_layers_and_keep_their_own_changes(
    client: tusk.Client, busybox: str, base: Path
) -> None:
    lower = add_layer(
        busybox,
        "shared",
        files={"/data/keep": b"keep", "/data/gone": b"gone", "/etc/conf/a": b"a"},
    )
    image_a = add_layer(lower, "image-a", files={"/data/a": b"a"})
    image_b = _tar_layer(  # deletes a lower file, hides a lower folder, has a hard link
        base,
        lower,
        "image-b",
        [
            (_member("data/.wh.gone"), b""),
            (_member("etc/conf/.wh..wh..opq"), b""),
            (_member("data/b", mode=0o4755), b"b"),  # setuid: dropped
            (_member("data/b2", tarfile.LNKTYPE, "data/b"), b""),
        ],
    )
    show = ["sh", "-c", "find /data /etc/conf | sort > /pfs/out/seen"]
    client.create_pipeline(pipeline("a", image_a, show))
    client.create_pipeline(pipeline("b", image_b, show))
    client.run_scheduler(once=True)
    seen = {}
    for name in ("a", "b"):
        job = client.list_jobs(name)[0]
        assert job.state == "success", job.reason
        seen[name] = client.get_file(f"{name}@master:/seen").decode().split()
    assert seen["a"] == ["/data", "/data/a", "/data/gone", "/data/keep", "/etc/conf", "/etc/conf/a"]
    assert seen["b"] == ["/data", "/data/b", "/data/b2", "/data/keep", "/etc/conf"]

    cache = client.home / "images"
    digests = {name: client.list_jobs(name)[0].image_digest[7:] for name in ("a", "b")}
    rootfs = {name: cache / "rootfs" / hexd for name, hexd in digests.items()}
    diff_ids = {name: layer_diff_ids(cache / "oci" / hexd) for name, hexd in digests.items()}
    assert diff_ids["a"][:2] == diff_ids["b"][:2]  # busybox and the shared layer
    # each layer unpacked once: busybox, the shared one and one upper layer each
    assert sorted(p.name for p in (cache / "layers").iterdir()) == sorted(
        {*diff_ids["a"], *diff_ids["b"]}
    )
    shared = cache / "layers" / diff_ids["a"][1] / "rootfs" / "data" / "keep"
    keep = {(r / "data" / "keep").stat().st_ino for r in rootfs.values()}
    assert keep == {shared.stat().st_ino}  # one file for both images: hard links
    assert (rootfs["b"] / "data" / "b").samefile(rootfs["b"] / "data" / "b2")
    assert not (rootfs["b"] / "data" / "b").stat().st_mode & 0o6000
    assert os.readlink(rootfs["a"] / "bin" / "sh") == os.readlink(rootfs["b"] / "bin" / "sh")
    assert os.listdir(cache / "tmp") == []

    # gc reclaims a layer once no image left in the cache has it
    client.delete_pipeline("a")
    assert client.gc(grace=0).images_deleted == 1
    assert sorted(p.name for p in (cache / "layers").iterdir()) == sorted(diff_ids["b"])
    assert (rootfs["b"] / "data" / "keep").read_bytes() == b"keep"
    client.delete_pipeline("b")
    assert client.gc(grace=0).images_deleted == 1
    for pool in ("layers", "rootfs", "files", "blobs"):
        assert list((cache / pool).iterdir()) == [], pool


def test_a_hard_link_to_a_lower_layer_unpacks_the_image_whole(
    busybox: str, base: Path, tmp_path: Path
) -> None:
    from tusk.pps.images import ImageCache

    lower = add_layer(busybox, "linked-lower", files={"/data/keep": b"keep"})
    ref = _tar_layer(
        base, lower, "linked", [(_member("data/again", tarfile.LNKTYPE, "data/keep"), b"")]
    )
    cache = ImageCache(tmp_path / "images")
    root = cache.rootfs(cache.resolve(ref))
    assert (root / "data" / "again").samefile(root / "data" / "keep")
    assert (root / "data" / "again").read_bytes() == b"keep"
    upper = layer_diff_ids(cache.lookup(cache.resolve(ref).digest).layout)[-1]
    assert not (cache.root / "layers" / upper).exists()  # that layer cannot stand alone
    assert os.listdir(cache.root / "tmp") == []


def test_a_zstd_layer_is_refused_and_leaves_the_cache_as_it_was(
    client: tusk.Client, busybox: str, base: Path
) -> None:
    zstd = f"oci:{base / 'zstd'}:z"
    subprocess.run(  # the same image, its layers compressed with zstd
        ["skopeo", "copy", "--quiet", "--dest-compress-format", "zstd", busybox, zstd],
        check=True,
        capture_output=True,
    )
    client.create_pipeline(pipeline("fine", busybox, COPY))
    client.run_scheduler(once=True)
    assert client.list_jobs("fine")[0].state == "success"
    before = cache_tree(client)
    client.create_pipeline(pipeline("zstd", zstd, COPY))
    client.run_scheduler(once=True)
    job = client.list_jobs("zstd")[0]
    assert job.state == "failure"
    assert (
        f"image {zstd}: layer media type {ZSTD!r} is not supported (Tusk unpacks tar and "
        "tar+gzip layers; convert the image with skopeo copy --dest-compress-format gzip)"
    ) in job.reason
    assert "\n" not in job.reason
    assert cache_tree(client) == before


def test_a_layer_writing_through_an_escaping_symlink_fails_the_job(
    client: tusk.Client, busybox: str, base: Path
) -> None:
    layout, _ = busybox[4:].rsplit(":", 1)
    tar = base / "through.tar"
    with tarfile.open(tar, "w") as out:
        link = tarfile.TarInfo("srv")
        link.type, link.linkname = tarfile.SYMTYPE, "/tmp"  # fine by itself
        inner = tarfile.TarInfo("srv/dropped")
        inner.size = 1
        out.addfile(link)
        out.addfile(inner, io.BytesIO(b"x"))  # written through it: refused
    subprocess.run(
        ["umoci", "raw", "add-layer", "--image", f"{layout}:v1", "--tag", "through", str(tar)],
        check=True,
        capture_output=True,
    )
    ref = f"oci:{layout}:through"
    client.create_pipeline(pipeline("through", ref, COPY))
    client.run_scheduler(once=True)
    job = client.list_jobs("through")[0]
    assert job.state == "failure"
    assert (
        f"image {ref}: layer {layer_digests(ref)[-1]} is refused: member 'srv/dropped' is "
        "written through the symlink 'srv' -> '/tmp', whose target is absolute" in job.reason
    )
    assert "\n" not in job.reason
    files = [p for p in (client.home / "images").rglob("*") if not p.is_dir()]
    assert files == []  # nothing of the image came in: no blob, no rootfs, no reference


def test_the_python_image_runs_from_a_docker_archive(
    client: tusk.Client, base: Path, tmp_path: Path
) -> None:
    script = tmp_path / "main.py"
    script.write_text(
        "import json, os, sys\n"
        "name = os.listdir('/pfs/in')[0]\n"
        "data = open(f'/pfs/in/{name}').read()\n"
        "json.dump({'upper': data.upper(), 'python': sys.version_info[:2]},"
        " open(f'/pfs/out/{name}', 'w'))\n"
    )
    # No packages: the standard library and busybox are enough here (~1 s to build).
    oci = python_image(base / "py", files={"/app/main.py": script}, packages=())
    archive = base / "python.tar"
    subprocess.run(
        ["skopeo", "copy", "--quiet", oci, f"docker-archive:{archive}:tool/python:1"],
        check=True,
        capture_output=True,
    )
    # main.py is found in the image's WorkingDir, /app
    client.create_pipeline(pipeline("py", f"docker-archive:{archive}", ["python3", "main.py"]))
    client.run_scheduler(once=True)
    job = client.list_jobs("py")[0]
    assert job.state == "success", job.reason
    assert json.loads(client.get_file("py@master:/a.txt")) == {
        "upper": "ALPHA",
        "python": list(sys.version_info[:2]),  # the interpreter running these tests
    }
