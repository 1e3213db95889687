"""OCI images without a container engine (tusk.pps.images): references, the cache, the sandbox.

The images are built offline, FROM scratch, with Debian's busybox-static binary: umoci writes an
OCI layout, skopeo turns it into a docker-archive tarball. Without skopeo, umoci, busybox-static
or a working bubblewrap these tests skip here, and fail in CI (CI=true).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tusk.errors import ImageNotFound, InvalidImage
from tusk.pps.executor import bwrap_works
from tusk.pps.images import ImageCache, ImageInfo, host_architecture, image_argv, parse_reference

CI = os.environ.get("CI") == "true"
HAVE_TOOLS = bool(shutil.which("skopeo") and shutil.which("umoci")) and os.path.exists(
    "/bin/busybox"
)
needs_tools = pytest.mark.skipif(
    not HAVE_TOOLS and not CI, reason="skopeo, umoci or busybox-static is not installed"
)
needs_bwrap = pytest.mark.skipif(
    not (HAVE_TOOLS and bwrap_works()) and not CI, reason="bubblewrap does not work here"
)


def _run(*args: str | Path) -> None:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == 0, f"{args}: {r.stderr}"


def _layer(path: Path, entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for entry in entries:
            if isinstance(entry, tuple):
                tar.addfile(entry[0], io.BytesIO(entry[1]))
            else:
                tar.addfile(entry)
    return path


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def _entry(name: str, kind: bytes, link: str = "", mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


@dataclass
class Images:
    layout: Path  # tags: v1 (busybox), arm (v1 claiming arm64), evil (v1 + a malicious layer)
    archive: Path  # docker-archive of v1
    outside: Path  # a host directory the evil layer aims at


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    if not HAVE_TOOLS:
        pytest.fail("skopeo, umoci and busybox-static are needed (./dev.sh installs them)")
    base = tmp_path_factory.mktemp("images")
    layout = base / "layout"
    _run("umoci", "init", "--layout", layout)
    _run("umoci", "new", "--image", f"{layout}:base")
    _run(
        "umoci", "insert", "--rootless", "--image", f"{layout}:base", "/bin/busybox", "/bin/busybox"
    )
    extra = _layer(
        base / "extra.tar",
        [
            _entry("bin/sh", tarfile.SYMTYPE, "busybox"),
            _entry("home", tarfile.DIRTYPE),
            _file("home/image-home", b"from the image\n"),
            _file("bin/suid", b"#!/bin/sh\n", mode=0o6755),
            _entry("leak", tarfile.SYMTYPE, "/home"),  # absolute: resolves in the rootfs
            _entry("up", tarfile.SYMTYPE, "../../../../../home"),  # relative, climbing out
        ],
    )
    _run("umoci", "raw", "add-layer", "--image", f"{layout}:base", "--tag", "v1", extra)
    _run(
        "umoci", "config", "--image", f"{layout}:v1",
        "--config.env", "FOO=from-image", "--config.env", "BAR=image-bar",
        "--config.workingdir", "/work",
        "--config.entrypoint", "/bin/busybox",
        "--config.cmd", "echo", "--config.cmd", "from-entrypoint",
    )  # fmt: skip
    _run("umoci", "config", "--image", f"{layout}:v1", "--architecture", "arm64", "--tag", "arm")
    outside = base / "outside"
    outside.mkdir()
    evil = _layer(
        base / "evil.tar",
        [
            _file("../escape", b"x"),
            _file("../../../../../../" + str(outside).lstrip("/") + "/escaped", b"x"),
            _entry("link", tarfile.SYMTYPE, str(outside)),
            _file("link/through", b"x"),
        ],
    )
    _run("umoci", "raw", "add-layer", "--image", f"{layout}:v1", "--tag", "evil", evil)
    archive = base / "busybox.tar"
    _run("skopeo", "copy", "--quiet", f"oci:{layout}:v1", f"docker-archive:{archive}:busybox:v1")
    return Images(layout, archive, outside)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# -- references --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "transport", "name"),
    [
        ("python:3.11", "docker", "python:3.11"),
        ("docker://python:3.11", "docker", "python:3.11"),
        ("ghcr.io/org/app:v2", "docker", "ghcr.io/org/app:v2"),
        ("localhost:5000/app", "docker", "localhost:5000/app"),
        ("busybox@sha256:" + "a" * 64, "docker", "busybox@sha256:" + "a" * 64),
        ("oci:/srv/layout:v1", "oci", "/srv/layout:v1"),
        ("oci:layout", "oci", "layout"),
        ("docker-archive:/tmp/img.tar", "docker-archive", "/tmp/img.tar"),
    ],
)
def test_parse_reference(text: str, transport: str, name: str) -> None:
    ref = parse_reference(text)
    assert (ref.transport, ref.name, ref.text) == (transport, name, text)


def test_reference_source_and_tls() -> None:
    assert parse_reference("python:3.11").source() == "docker://python:3.11"
    assert parse_reference("oci:/x:v1").source() == "oci:/x:v1"
    assert parse_reference("localhost:5000/app:1").insecure
    assert parse_reference("127.0.0.1:5000/app").insecure
    assert not parse_reference("ghcr.io/org/app").insecure
    assert parse_reference("localhost/app").registry == "localhost"
    assert parse_reference("library/python").registry is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("python 3.11", "spaces"),
        ("Python:3.11", "not a valid image name"),
        ("oci:", "names no path"),
        ("docker-archive:", "names no path"),
        ("docker-daemon:busybox:latest", "not supported"),
        ("app@sha256:abc", "not a valid image name"),
    ],
)
def test_parse_reference_refuses(text: str, words: str) -> None:
    with pytest.raises(InvalidImage) as info:
        parse_reference(text)
    message = info.value.message
    assert words in message and repr(text) in message and "\n" not in message


# -- the cache ---------------------------------------------------------------------------------


@needs_tools
def test_resolve_oci_and_docker_archive(images: Images, tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images")
    a = cache.resolve(f"oci:{images.layout}:v1")
    again = cache.resolve(f"oci:{images.layout}:v1")
    b = cache.resolve(f"docker-archive:{images.archive}")
    assert a.digest == again.digest and a.digest.startswith("sha256:")
    assert b.digest == cache.resolve(f"docker-archive:{images.archive}").digest
    for info in (a, b):
        assert info.env == ["FOO=from-image", "BAR=image-bar"]
        assert info.working_dir == "/work"
        assert info.entrypoint == ["/bin/busybox"]
        assert info.cmd == ["echo", "from-entrypoint"]
        assert (info.architecture, info.os) == (host_architecture(), "linux")
    assert sorted(os.listdir(cache.root / "oci")) == sorted({a.hex, b.hex})
    listed = {i.digest: i.references for i in cache.list()}
    assert listed[a.digest] == [f"oci:{images.layout}:v1"]
    assert listed[b.digest] == [f"docker-archive:{images.archive}"]
    assert cache.lookup(a.digest).cmd == a.cmd
    assert os.listdir(cache.root / "tmp") == []


@needs_tools
def test_missing_image_and_other_architecture(images: Images, tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images")
    with pytest.raises(ImageNotFound, match="not found") as nf:
        cache.resolve(f"oci:{images.layout}:nope")
    assert f"oci:{images.layout}:nope" in nf.value.message
    with pytest.raises(ImageNotFound):
        cache.resolve(f"docker-archive:{tmp_path}/none.tar")
    with pytest.raises(InvalidImage, match="built for arm64, this machine runs") as arch:
        cache.resolve(f"oci:{images.layout}:arm")
    assert "\n" not in arch.value.message
    assert _tree(cache.root / "oci") == [] and os.listdir(cache.root / "tmp") == []


@needs_tools
def test_rootfs_unpacked_once(images: Images, tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images")
    info = cache.resolve(f"oci:{images.layout}:v1")
    root = cache.rootfs(info)
    assert root == cache.root / "rootfs" / info.hex
    assert (root / "bin" / "busybox").is_file() and (root / "work").is_dir()
    for mount in ("proc", "dev", "tmp", "pfs"):
        assert (root / mount).is_dir()
    assert os.readlink(root / "leak") == "/home"  # kept: it resolves inside under bwrap
    assert not os.stat(root / "bin" / "suid").st_mode & 0o6000  # setuid/setgid dropped
    (root / "marker").write_text("kept")
    assert cache.rootfs(info) == root and (root / "marker").exists()  # not unpacked again
    assert os.listdir(cache.root / "rootfs") == [info.hex]
    assert os.listdir(cache.root / "tmp") == []


@needs_tools
def test_corrupt_layer_is_refused_cache_untouched(images: Images, tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images")
    cache.rootfs(cache.resolve(f"oci:{images.layout}:v1"))
    before = _tree(cache.root)
    bad = tmp_path / "bad"
    shutil.copytree(images.layout, bad)
    biggest = max((bad / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))
    with pytest.raises(InvalidImage, match="digest does not match") as err:
        cache.resolve(f"oci:{bad}:v1")
    assert f"oci:{bad}:v1" in err.value.message
    assert _tree(cache.root) == before


@needs_tools
def test_malicious_layer_cannot_escape(images: Images, tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images")
    info = cache.resolve(f"oci:{images.layout}:evil")
    try:
        root = cache.rootfs(info)
    except InvalidImage:  # refusing the layer is as good as containing it
        assert os.listdir(cache.root / "rootfs") == []
    else:
        assert (root / "escape").is_file()  # "../escape" landed inside
        inside = root / str(images.outside).lstrip("/")  # where the symlink points, in the rootfs
        assert (inside / "escaped").is_file() and (inside / "through").is_file()
        assert os.listdir(images.outside) == []  # nothing through the symlink or by ../
    assert not (cache.root / "escape").exists() and not (cache.root / "rootfs" / "escape").exists()
    assert os.listdir(images.outside) == []


# -- running in the image ----------------------------------------------------------------------


def _pfs(tmp_path: Path) -> tuple[Path, Path, list[tuple[Path, str, bool]]]:
    inp, out = tmp_path / "pfs" / "in", tmp_path / "pfs" / "out"
    inp.mkdir(parents=True)
    out.mkdir()
    (inp / "a.txt").write_text("input\n")
    return inp, out, [(inp, "/pfs/in", False), (out, "/pfs/out", True)]


@needs_bwrap
def test_run_in_image(images: Images, tmp_path: Path) -> None:
    if not bwrap_works():
        pytest.fail("bubblewrap does not work here")
    cache = ImageCache(tmp_path / "images")
    info = cache.resolve(f"oci:{images.layout}:v1")
    root = cache.rootfs(info)
    inp, out, binds = _pfs(tmp_path)
    script = (
        "echo hi > /pfs/out/x; ls /home; echo leak: $(ls /leak) up: $(ls /up); "
        "cat /pfs/in/a.txt; echo nope > /pfs/in/y || echo input-read-only; "
        "echo nope > /bin/new || echo root-read-only; echo t > /tmp/t && echo tmp-ok; "
        'echo "pwd=$(pwd) FOO=$FOO BAR=$BAR HOSTVAR=${HOSTVAR:-unset} PATH=$PATH"'
    )
    argv = image_argv(root, info, ["sh", "-c", script], binds, {"FOO": "from-spec"}, False)
    assert "--share-net" not in argv
    r = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "HOSTVAR": "x"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert (out / "x").read_text() == "hi\n"
    assert lines[0] == "image-home"  # the image's /home, not the host's
    host_home = set(os.listdir("/home"))
    assert not host_home & set(lines)
    assert lines[1] == "leak: image-home up: image-home"  # symlinks resolve inside the rootfs
    assert "input" in lines and "input-read-only" in lines and "root-read-only" in lines
    assert "tmp-ok" in lines
    assert not (inp / "y").exists() and not (root / "bin" / "new").exists()
    assert not (root / "tmp" / "t").exists()  # /tmp was private
    assert lines[-1].startswith("pwd=/work FOO=from-spec BAR=image-bar HOSTVAR=unset PATH=/usr")


@needs_bwrap
def test_entrypoint_and_cmd(images: Images, tmp_path: Path) -> None:
    if not bwrap_works():
        pytest.fail("bubblewrap does not work here")
    cache = ImageCache(tmp_path / "images")
    info = cache.resolve(f"docker-archive:{images.archive}")
    root = cache.rootfs(info)
    _, _, binds = _pfs(tmp_path)
    r = subprocess.run(image_argv(root, info, None, binds, {}, False), capture_output=True)
    assert (r.returncode, r.stdout) == (0, b"from-entrypoint\n"), r.stderr
    # transform.cmd replaces Entrypoint and Cmd (as in Pachyderm)
    argv = image_argv(root, info, ["/bin/busybox", "echo", "override"], binds, {}, True)
    assert "--share-net" in argv
    r = subprocess.run(argv, capture_output=True)
    assert (r.returncode, r.stdout) == (0, b"override\n"), r.stderr


def test_no_command_is_refused(tmp_path: Path) -> None:
    info = ImageInfo(digest="sha256:" + "0" * 64, layout=tmp_path, architecture="amd64", os="linux")
    with pytest.raises(InvalidImage, match="no Entrypoint or Cmd"):
        image_argv(tmp_path, info, None, [], {}, False)


@needs_tools
def test_local_registry_without_tls(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images")
    with pytest.raises(InvalidImage) as err:  # nothing listens on port 1
        cache.resolve("localhost:1/app:1")
    assert "http://localhost:1/" in err.value.message  # plain HTTP: TLS not verified locally
    assert "localhost:1/app:1" in err.value.message and "\n" not in err.value.message
    assert os.listdir(cache.root / "tmp") == [] and os.listdir(cache.root / "oci") == []
