"""OCI images without a container engine (tusk.pps.images): references, the cache, the sandbox.

The images are built offline, FROM scratch, with Debian's busybox-static binary: umoci writes an
OCI layout, skopeo turns it into a docker-archive tarball. Registry pulls go to Debian's
``docker-registry``, started by the tests on 127.0.0.1 (one without auth, one with an htpasswd
file made by ``htpasswd -B``). Without skopeo, umoci, busybox-static, docker-registry, htpasswd
or a working bubblewrap these tests skip here, and fail in CI (CI=true).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from imagekit import layer_digests, local_registry, push

from tusk.errors import ImageNotFound, ImagePullDenied, InvalidArgument, InvalidImage
from tusk.pps.executor import bwrap_works
from tusk.pps.images import ImageCache, ImageInfo, host_architecture, image_argv, parse_reference

CI = os.environ.get("CI") == "true"
HAVE_TOOLS = bool(shutil.which("skopeo") and shutil.which("umoci")) and os.path.exists(
    "/bin/busybox"
)
needs_tools = pytest.mark.skipif(
    not HAVE_TOOLS and not CI, reason="skopeo, umoci or busybox-static is not installed"
)
HAVE_REGISTRY = HAVE_TOOLS and bool(shutil.which("docker-registry") and shutil.which("htpasswd"))
needs_registry = pytest.mark.skipif(
    not HAVE_REGISTRY and not CI, reason="docker-registry or htpasswd (apache2-utils) is missing"
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
    layout: Path  # tags: v1 (busybox), arm (v1 claiming arm64), HOSTILE's (v1 + a layer each),
    # distro (v1 + absolute symlinks and a file through an inside one, then a whiteout)
    archive: Path  # docker-archive of v1
    outside: Path  # a host directory the hostile layers aim at


# Each hostile layer on v1, by tag: the member refused and why (OUTSIDE: Images.outside).
HOSTILE = {
    "abs": ("OUTSIDE/abs", "is an absolute path"),
    "dotdot": ("../../../../../..OUTSIDE/escaped", "has a '..' segment"),
    "hardlink": ("hard", "is a hard link to '../x', which has a '..' segment"),
    "through": (
        "link/through",
        "is written through the symlink 'link' -> 'OUTSIDE', whose target is absolute",
    ),
    "up": (  # v1's own symlink, written through by the next layer
        "up/x",
        "is written through the symlink 'up' -> '../../../../../home', which climbs above the root",
    ),
}


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
    hostile: dict[str, list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]] = {
        "abs": [_file(f"{outside}/abs", b"x")],
        "dotdot": [_file(f"../../../../../..{outside}/escaped", b"x")],
        "hardlink": [_entry("hard", tarfile.LNKTYPE, "../x")],
        "through": [_entry("link", tarfile.SYMTYPE, str(outside)), _file("link/through", b"x")],
        "up": [_file("up/x", b"x")],
    }
    assert set(hostile) == set(HOSTILE)
    for tag, entries in hostile.items():
        layer = _layer(base / f"{tag}.tar", entries)
        _run("umoci", "raw", "add-layer", "--image", f"{layout}:v1", "--tag", tag, layer)
    # What distributions' images have: absolute symlinks (kept), a file written through a
    # symlink that stays inside, an absolute symlink a later layer deletes and makes a folder.
    distro = _layer(
        base / "distro.tar",
        [
            _entry("bin/sh", tarfile.SYMTYPE, "/bin/busybox"),
            _entry("etc", tarfile.DIRTYPE),
            _entry("etc/alternatives", tarfile.DIRTYPE),
            _entry("etc/alternatives/pager", tarfile.SYMTYPE, "/bin/less"),
            _entry("usr", tarfile.DIRTYPE),
            _entry("usr/lib", tarfile.DIRTYPE),
            _entry("lib", tarfile.SYMTYPE, "usr/lib"),
            _file("lib/marker", b"through lib\n"),
            _entry("opt", tarfile.SYMTYPE, str(outside)),
        ],
    )
    _run("umoci", "raw", "add-layer", "--image", f"{layout}:v1", "--tag", "distro-1", distro)
    upper = _layer(
        base / "upper.tar",
        [_file(".wh.opt", b""), _entry("opt", tarfile.DIRTYPE), _file("opt/tool", b"tool\n")],
    )
    _run("umoci", "raw", "add-layer", "--image", f"{layout}:distro-1", "--tag", "distro", upper)
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
    assert len(os.listdir(cache.root / "layers")) == 2  # v1's two layers, each unpacked once
    assert os.listdir(cache.root / "tmp") == []


@needs_tools
def test_a_killed_layer_unpack_leaves_no_half_layer(images: Images, tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images")
    info = cache.resolve(f"oci:{images.layout}:v1")
    script = (  # killed once umoci has unpacked the first layer, before it is renamed
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "import tusk.pps.images as im\n"
        "im._drop_setid = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        "cache = im.ImageCache(Path(sys.argv[1]))\n"
        "cache.rootfs(cache.lookup(sys.argv[2]))\n"
    )
    r = subprocess.run([sys.executable, "-c", script, str(cache.root), info.digest])
    assert r.returncode == -signal.SIGKILL
    assert [p.name.split("-")[0] for p in (cache.root / "tmp").iterdir()] == ["layer"]
    assert list((cache.root / "layers").iterdir()) == []  # no half layer where it is used
    assert (cache.rootfs(info) / "bin" / "busybox").is_file()
    assert len(os.listdir(cache.root / "layers")) == 2
    assert cache.prune({info.digest}, grace=0)[0] == 0
    assert os.listdir(cache.root / "tmp") == []  # gc took the leftover


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
@pytest.mark.parametrize("tag", sorted(HOSTILE))
def test_malicious_layer_cannot_escape(images: Images, tag: str, tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images")
    cache.rootfs(cache.resolve(f"oci:{images.layout}:v1"))
    before = _tree(cache.root)
    ref = f"oci:{images.layout}:{tag}"
    member, why = (text.replace("OUTSIDE", str(images.outside)) for text in HOSTILE[tag])
    with pytest.raises(InvalidImage) as err:
        cache.resolve(ref)
    layer = layer_digests(ref)[-1]
    assert err.value.message == (
        f"image {ref}: layer {layer} is refused: member {member!r} {why}; "
        "rebuild the image so that every path of its layers stays inside it"
    )
    assert _tree(cache.root) == before  # no layout, no blobs, no rootfs, no reference
    assert os.listdir(images.outside) == []


@needs_bwrap
def test_absolute_symlinks_of_an_image_are_kept(images: Images, tmp_path: Path) -> None:
    if not bwrap_works():
        pytest.fail("bubblewrap does not work here")
    cache = ImageCache(tmp_path / "images")
    info = cache.resolve(f"oci:{images.layout}:distro")
    root = cache.rootfs(info)
    assert os.readlink(root / "bin" / "sh") == "/bin/busybox"
    assert os.readlink(root / "etc" / "alternatives" / "pager") == "/bin/less"
    assert (root / "usr" / "lib" / "marker").read_text() == "through lib\n"
    assert (root / "opt" / "tool").is_file() and not (root / "opt").is_symlink()
    assert os.listdir(images.outside) == []
    _, _, binds = _pfs(tmp_path)
    script = "cat /lib/marker /opt/tool; readlink /bin/sh"
    argv = image_argv(root, info, ["/bin/sh", "-c", script], binds, {}, False)
    r = subprocess.run(argv, capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "through lib\ntool\n/bin/busybox\n"), r.stderr


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


# -- registry pulls ----------------------------------------------------------------------------

USER, PASSWORD = "alice", "s3cret-pw"


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT, holding busybox:1 (the layout's v1)
    log: Path


def _push(images: Images, reg: Registry, creds: bool) -> None:
    push(f"oci:{images.layout}:v1", f"{reg.host}/busybox:1", (USER, PASSWORD) if creds else None)


@pytest.fixture(scope="module")
def registry(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if not HAVE_REGISTRY:
        pytest.fail("docker-registry and htpasswd are needed (./dev.sh installs them)")
    base = tmp_path_factory.mktemp("registry") / "open"
    with local_registry(base) as host:
        reg = Registry(host, base / "registry.log")
        _push(images, reg, creds=False)
        yield reg


@pytest.fixture(scope="module")
def auth_registry(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if not HAVE_REGISTRY:
        pytest.fail("docker-registry and htpasswd are needed (./dev.sh installs them)")
    base = tmp_path_factory.mktemp("registry") / "auth"
    with local_registry(base, (USER, PASSWORD)) as host:
        reg = Registry(host, base / "registry.log")
        _push(images, reg, creds=True)
        yield reg


def _same_config(a: ImageInfo, b: ImageInfo) -> None:
    assert a.digest == b.digest  # skopeo keeps the OCI manifest through the registry
    assert (a.env, a.working_dir, a.entrypoint, a.cmd) == (
        b.env,
        b.working_dir,
        b.entrypoint,
        b.cmd,
    )
    assert (a.architecture, a.os) == (b.architecture, b.os)


@needs_registry
def test_registry_pull_without_auth(images: Images, registry: Registry, tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images")
    local = cache.resolve(f"oci:{images.layout}:v1")
    ref = f"docker://{registry.host}/busybox:1"
    pulled = cache.resolve(ref)
    _same_config(pulled, local)
    assert (cache.rootfs(pulled) / "bin" / "busybox").is_file()
    assert {i.digest: i.references for i in cache.list()}[pulled.digest] == sorted(
        [f"oci:{images.layout}:v1", ref]
    )
    with pytest.raises(ImageNotFound, match="not found") as nf:
        cache.resolve(f"{registry.host}/busybox:nope")
    assert f"{registry.host}/busybox:nope" in nf.value.message
    assert os.listdir(cache.root / "tmp") == []


@needs_registry
def test_registry_pull_pinned_digest(images: Images, registry: Registry, tmp_path: Path) -> None:
    digest = ImageCache(tmp_path / "local").resolve(f"oci:{images.layout}:v1").digest
    cache = ImageCache(tmp_path / "images")
    ref = f"{registry.host}/busybox@{digest}"
    info = cache.resolve(ref)
    assert info.digest == digest and info.references == [ref]
    assert os.listdir(cache.root / "oci") == [info.hex]
    other = "sha256:" + "0" * 64  # pinned to a digest the registry does not have
    with pytest.raises(ImageNotFound):
        cache.resolve(f"{registry.host}/busybox@{other}")
    assert os.listdir(cache.root / "oci") == [info.hex] and os.listdir(cache.root / "tmp") == []


@needs_registry
def test_registry_pull_with_credentials(
    images: Images, auth_registry: Registry, tmp_path: Path
) -> None:
    local = ImageCache(tmp_path / "local").resolve(f"oci:{images.layout}:v1")
    ref = f"docker://{auth_registry.host}/busybox:1"
    cache = ImageCache(tmp_path / "images")
    _same_config(cache.resolve(ref, credentials=(USER, PASSWORD)), local)
    assert os.listdir(cache.root / "tmp") == []  # the temporary auth file is gone
    # a Docker config.json, as ~/.docker/config.json holds them
    authfile = tmp_path / "config.json"
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    authfile.write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    other = ImageCache(tmp_path / "other")
    _same_config(other.resolve(ref, authfile=authfile), local)


@needs_registry
def test_registry_pull_denied_cache_untouched(
    images: Images, auth_registry: Registry, tmp_path: Path
) -> None:
    cache = ImageCache(tmp_path / "images")
    cache.rootfs(cache.resolve(f"oci:{images.layout}:v1"))
    before = _tree(cache.root)
    ref = f"docker://{auth_registry.host}/busybox:1"
    wrong = tmp_path / "config.json"
    token = base64.b64encode(f"{USER}:wrong".encode()).decode()
    wrong.write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    cases: list[dict[str, Any]] = [{}, {"credentials": (USER, "wrong")}, {"authfile": wrong}]
    for kwargs in cases:  # no credentials, a wrong password, a config.json with a wrong one
        with pytest.raises(ImagePullDenied) as err:
            cache.resolve(ref, **kwargs)
        message = err.value.message
        assert message.startswith(f"pull denied for {ref}: ") and "\n" not in message
        assert PASSWORD not in message and "wrong" not in message
        assert err.value.code == "image_pull_denied" and err.value.status == 403
        assert _tree(cache.root) == before


def test_credentials_and_authfile_are_exclusive(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images")
    with pytest.raises(InvalidArgument, match="not both"):
        cache.resolve("127.0.0.1:1/app:1", credentials=("u", "p"), authfile=tmp_path / "a.json")
    with pytest.raises(InvalidArgument, match="does not exist"):
        cache.resolve("127.0.0.1:1/app:1", authfile=tmp_path / "a.json")
    with pytest.raises(InvalidArgument) as err:
        cache.resolve("127.0.0.1:1/app:1", credentials=("u", "p"), registry_token="t")
    assert err.value.message == (
        "image 127.0.0.1:1/app:1: give credentials or a registry token, not both"
    )
    for bad in ("", "two words", "line\nbreak"):
        with pytest.raises(InvalidArgument, match="the registry token is empty or has spaces"):
            cache.resolve("127.0.0.1:1/app:1", registry_token=bad)
    assert not cache.root.exists()


# -- a registry with token auth ----------------------------------------------------------------

SERVICE, ISSUER = "tusk-test-registry", "tusk-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenIssuer:
    """A Docker registry token server (the JWS with an ``access`` claim that docker/
    distribution checks against ``rootcertbundle``), signing with an EC P-256 key."""

    url: str
    key: Any  # cryptography's EllipticCurvePrivateKey
    kid: str  # the key's libtrust ID, as distribution 2.8 finds it in the bundle

    def token(
        self,
        repository: str = "busybox",
        actions: tuple[str, ...] = ("pull",),
        expires_in: float = 300,
        key: Any = None,
    ) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "kid": self.kid}
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": SERVICE,
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + int(expires_in),
            "jti": os.urandom(8).hex(),
            "access": [{"type": "repository", "name": repository, "actions": list(actions)}],
        }
        signing = ".".join(_b64url(json.dumps(x).encode()) for x in (header, claims))
        der = (key or self.key).sign(signing.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _libtrust_kid(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


def _start_issuer(base: Path) -> tuple[Any, TokenIssuer, Path]:
    """The token server on 127.0.0.1 (port 0, a thread): a GET with USER/PASSWORD by basic
    auth gets a token for the scopes it asks, anything else 401. Returns it, the issuer and
    the root certificate bundle the registry trusts."""
    import datetime
    import http.server
    import threading
    import urllib.parse

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    bundle = base / "root.pem"
    base.mkdir(parents=True, exist_ok=True)
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    issuer = TokenIssuer("", key, _libtrust_kid(key.public_key()))
    good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            if self.headers.get("Authorization") != good or query.get("service") != [SERVICE]:
                self.send_response(401)
                self.end_headers()
                return
            scopes = [s.split(":") for s in query.get("scope", [])]
            tokens = [issuer.token(s[1], tuple(s[2].split(","))) for s in scopes if len(s) == 3]
            body = json.dumps({"token": tokens[0] if tokens else issuer.token(actions=())})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}/token"
    return server, issuer, bundle


@dataclass
class TokenRegistry:
    registry: Registry
    issuer: TokenIssuer


@pytest.fixture(scope="module")
def token_registry(
    images: Images, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TokenRegistry]:
    if not HAVE_REGISTRY:
        pytest.fail("docker-registry and htpasswd are needed (./dev.sh installs them)")
    base = tmp_path_factory.mktemp("registry") / "token"
    server, issuer, bundle = _start_issuer(base)
    lines = [
        f"realm: {issuer.url}",
        f"service: {SERVICE}",
        f"issuer: {ISSUER}",
        f"rootcertbundle: {bundle}",
    ]
    try:
        with local_registry(base, token=lines) as host:
            reg = Registry(host, base / "registry.log")
            _push(images, reg, creds=True)  # skopeo's own token flow, with push scope
            yield TokenRegistry(reg, issuer)
    finally:
        server.shutdown()
        server.server_close()


@needs_registry
def test_registry_pull_with_a_bearer_token(
    images: Images, token_registry: TokenRegistry, tmp_path: Path
) -> None:
    local = ImageCache(tmp_path / "local").resolve(f"oci:{images.layout}:v1")
    host = token_registry.registry.host
    ref = f"docker://{host}/busybox:1"
    token = token_registry.issuer.token()
    cache = ImageCache(tmp_path / "images")
    _same_config(cache.resolve(ref, registry_token=token), local)
    assert os.listdir(cache.root / "tmp") == []
    # a Docker config.json entry carrying the token (``registrytoken``, as Docker names it)
    authfile = tmp_path / "config.json"
    authfile.write_text(json.dumps({"auths": {f"http://{host}": {"registrytoken": token}}}))
    _same_config(ImageCache(tmp_path / "by-file").resolve(ref, authfile=authfile), local)
    # user and password: skopeo asks the token server itself
    by_creds = ImageCache(tmp_path / "by-creds")
    _same_config(by_creds.resolve(ref, credentials=(USER, PASSWORD)), local)


@needs_registry
def test_registry_token_denied_cache_untouched(
    images: Images, token_registry: TokenRegistry, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    cache = ImageCache(tmp_path / "images")
    cache.rootfs(cache.resolve(f"oci:{images.layout}:v1"))
    before = _tree(cache.root)
    ref = f"docker://{token_registry.registry.host}/busybox:1"
    issuer = token_registry.issuer
    tokens = {
        "expired": issuer.token(expires_in=-120),
        "signed by another key": issuer.token(key=ec.generate_private_key(ec.SECP256R1())),
        "for another repository": issuer.token(repository="other"),
        "not a token": "not-a-token",
    }
    for why, token in tokens.items():
        with pytest.raises(ImagePullDenied) as err:
            cache.resolve(ref, registry_token=token)
        message = err.value.message
        assert message.startswith(f"pull denied for {ref}: "), why
        assert "\n" not in message and token not in message, why
        assert _tree(cache.root) == before, why
    with pytest.raises(ImagePullDenied):  # a wrong password: the token server says no
        cache.resolve(ref, credentials=(USER, "wrong"))
    assert _tree(cache.root) == before


@needs_registry
@needs_bwrap
def test_a_pipeline_pulls_with_its_image_pull_secrets(
    auth_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tusk

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.docker/config.json of this machine
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config = json.dumps({"auths": {auth_registry.host: {"auth": token}}})
    spec: dict[str, Any] = {
        "pipeline": {"name": "pulled"},
        "input": {"pfs": {"repo": "in", "glob": "/*"}},
        "transform": {
            "image": f"{auth_registry.host}/busybox:1",
            "cmd": ["sh", "-c", "cp /pfs/in/* /pfs/out/"],
        },
    }
    with tusk.Client(tmp_path / "home") as c:
        c.create_repo("in")
        c.put_file("in@master:/a", b"a")
        c.create_pipeline(spec)  # no credentials: the registry refuses the pull
        c.run_scheduler(once=True)
        [denied] = c.list_jobs("pulled")
        assert denied.state == "failure" and "pull denied for" in denied.reason
        c.create_secret(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "regcred"},
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": config},
            }
        )
        spec["transform"]["image_pull_secrets"] = ["regcred"]
        c.update_pipeline(spec)
        c.put_file("in@master:/b", b"b")
        c.run_scheduler(once=True)
        job = c.list_jobs("pulled")[0]
        assert job.state == "success", job.reason
        assert c.get_file("pulled@master:/b") == b"b"
        assert os.listdir(c.home / "images" / "tmp") == []  # the merged auth file is gone


@needs_registry
@needs_bwrap
def test_a_pipeline_pulls_with_a_registry_token_in_its_pull_secret(
    token_registry: TokenRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tusk

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.docker/config.json of this machine
    host = token_registry.registry.host
    token = token_registry.issuer.token()
    config = json.dumps({"auths": {host: {"registrytoken": token}}})
    spec: dict[str, Any] = {
        "pipeline": {"name": "pulled"},
        "input": {"pfs": {"repo": "in", "glob": "/*"}},
        "transform": {
            "image": f"{host}/busybox:1",
            "cmd": ["sh", "-c", "cp /pfs/in/* /pfs/out/"],
            "image_pull_secrets": ["regtoken"],
        },
    }
    with tusk.Client(tmp_path / "home") as c:
        c.create_repo("in")
        c.put_file("in@master:/a", b"a")
        c.create_secret(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "regtoken"},
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": config},
            }
        )
        c.create_pipeline(spec)
        c.run_scheduler(once=True)
        job = c.list_jobs("pulled")[0]
        assert job.state == "success", job.reason
        assert c.get_file("pulled@master:/a") == b"a"
