"""OCI images built offline for tests and benchmarks: busybox alone, and this machine's Python.

Nothing is downloaded. :func:`busybox_image` is Debian's static ``/bin/busybox`` FROM scratch
with a symlink in ``/bin`` for each of its applets; :func:`add_layer` puts one more layer on an
image (files, whiteouts, opaque folders), for what only a second layer shows.
:func:`python_image` is the interpreter that runs this process, copied with its standard
library, chosen packages of this venv and every shared library ``ldd`` names (the dynamic loader
too), each at the path the host has it, so the loader finds them without an ``ld.so.cache``; the
host's symlinks on the way (``/lib -> usr/lib``) are kept as symlinks. Its base (Python,
libraries, busybox) is one layer and the ``files`` another, so images that differ in their files
share the base layer's blob. :func:`local_registry` runs Debian's ``docker-registry`` on
127.0.0.1 (with htpasswd credentials if asked) and :func:`push` copies an image into it.

``dest`` is a folder; the OCI layout is ``dest/layout``, one tag per image. The python base is
built once per process: collected and tarred in ~1 s while umoci gzips it from a pipe (~160 MB
to ~57 MB; 3.5-5 s in all on two busy cores), and kept as a tag of its own, ``base-<key>``. A
second image in the same layout adds only its files layer (~0.03 s); one in another layout
gets the compressed base by ``skopeo copy`` (~0.4 s). The base's bytes depend only on the
host's files, so its digest is the same in every process. umoci writes the layouts
(``init``, ``new``, ``raw add-layer``, ``config``); the layers are tarballs made here with
:mod:`tarfile`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BUSYBOX = Path("/bin/busybox")
PATH = "/usr/local/bin:/usr/bin:/bin"
# Parts of the standard library no datum needs: GUIs, pip's bootstrap, the host's own packages
# (test and tests folders are left out everywhere, and the static libpython).
_STDLIB_SKIP = {"idlelib", "tkinter", "turtledemo", "ensurepip", "site-packages", "venv"}
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
_LDD_LINE = re.compile(r"^\s*(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$")

# key of a python base -> a layout holding it as tag base-<key>, built once per process
_BASES: dict[str, Path] = {}


class ImageKitError(RuntimeError):
    """A tool failed or something the image needs is missing on this machine."""


def _run(*args: str | Path) -> str:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        raise ImageKitError(f"{' '.join(map(str, args))}: {r.stderr.strip()}")
    return r.stdout


@dataclass(frozen=True)
class _Entry:
    kind: str  # "dir", "file" or "link"
    source: str = ""  # host file (file) or link target (link)


class _Tree:
    """The entries of one layer, by path inside the image (no leading slash)."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}

    def dir(self, inside: str) -> None:
        parts = [p for p in inside.strip("/").split("/") if p]
        for i in range(1, len(parts) + 1):
            path = "/".join(parts[:i])
            found = self.entries.get(path)
            if found is None:
                self.entries[path] = _Entry("dir")
            elif found.kind != "dir":
                raise ImageKitError(f"/{path} is a {found.kind} in the image, not a folder")

    def file(self, inside: str, host: str | Path) -> None:
        inside = inside.strip("/")
        self.dir(os.path.dirname(inside))
        self.entries.setdefault(inside, _Entry("file", str(host)))

    def link(self, inside: str, target: str) -> None:
        inside = inside.strip("/")
        self.dir(os.path.dirname(inside))
        self.entries.setdefault(inside, _Entry("link", target))

    def host_path(self, path: str, depth: int = 0) -> None:
        """Add the host file ``path`` at the same path, each symlink on the way kept as one and
        followed to a real file, which is added too."""
        if depth > 40:
            raise ImageKitError(f"too many symlinks resolving {path}")
        parts = [p for p in os.path.normpath(path).split("/") if p]
        for i in range(1, len(parts) + 1):
            here = "/" + "/".join(parts[:i])
            if os.path.islink(here):
                target = os.readlink(here)
                self.link(here, target)
                resolved = os.path.normpath(os.path.join(os.path.dirname(here), target))
                rest = parts[i:]
                self.host_path(os.path.join(resolved, *rest), depth + 1)
                return
        if os.path.isdir(path):
            self.dir(path)
        else:
            self.file(path, path)

    def write(self, tar_path: Path) -> None:
        """An uncompressed layer tarball: sorted, owned by root, setuid/setgid bits dropped."""
        tmp = tar_path.with_name(tar_path.name + ".part")
        with open(tmp, "wb") as f:
            self.stream(f)
        os.replace(tmp, tar_path)

    def stream(self, out: BinaryIO) -> None:
        """Write the layer tarball to ``out`` (a file or a pipe)."""
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for inside in sorted(self.entries, key=lambda p: p.split("/")):
                entry = self.entries[inside]
                info = tarfile.TarInfo(inside)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                if entry.kind == "dir":
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif entry.kind == "link":
                    info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.source, 0o777
                    tar.addfile(info)
                else:
                    st = os.stat(entry.source)
                    info.size, info.mtime = st.st_size, int(st.st_mtime)
                    info.mode = stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID)
                    with open(entry.source, "rb") as f:
                        tar.addfile(info, f)


def _busybox(tree: _Tree) -> None:
    if not BUSYBOX.is_file():
        raise ImageKitError(f"{BUSYBOX} is missing (install the Debian package busybox-static)")
    tree.file("bin/busybox", os.path.realpath(BUSYBOX))
    for applet in _run(BUSYBOX, "--list").split():
        if applet != "busybox":
            tree.link(f"bin/{applet}", "busybox")
    # mount points as in any distribution's image (and /pfs, where Pachyderm's datums are)
    for folder in ("proc", "dev", "sys", "tmp", "pfs", "root", "etc", "usr/local/bin"):
        tree.dir(folder)


def _small_files(tree: _Tree, folder: Path) -> None:
    """/etc/passwd and /etc/group naming root and nobody (``id``, ``whoami``, Python's pwd)."""
    for name, text in (("passwd", _PASSWD), ("group", _GROUP)):
        path = folder / name
        path.write_text(text)
        os.utime(path, (0, 0))  # the same bytes in every build: the same layer digest
        tree.file(f"etc/{name}", path)


def _layout(dest: Path) -> Path:
    layout = dest / "layout"
    if not (layout / "index.json").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        _run("umoci", "init", "--layout", layout)
    return layout


def _tags(layout: Path) -> set[str]:
    return set(_run("umoci", "ls", "--layout", layout).split())


def _config(
    image: str,
    env: Iterable[str],
    workdir: str | None,
    entrypoint: Sequence[str] | None,
    cmd: Sequence[str] | None,
    user: str | None = None,
) -> None:
    args: list[str | Path] = ["umoci", "config", "--no-history", "--image", image]
    if user:
        args += ["--config.user", user]
    for item in env:
        args += ["--config.env", item]
    if workdir:
        args += ["--config.workingdir", workdir]
    for part in entrypoint or ():
        args += ["--config.entrypoint", part]
    for part in cmd or ():
        args += ["--config.cmd", part]
    _run(*args)


def busybox_image(
    dest: Path,
    tag: str = "v1",
    env: Iterable[str] = (),
    workdir: str | None = None,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    user: str | None = None,
) -> str:
    """Busybox FROM scratch in ``dest/layout`` under ``tag``; returns ``oci:<layout>:<tag>``.

    ``env`` holds ``KEY=VALUE`` items (``PATH`` is ``/usr/local/bin:/usr/bin:/bin`` unless one
    of them sets it); ``workdir``, ``entrypoint``, ``cmd`` and ``user`` (Docker's ``USER``:
    ``name`` or ``uid[:gid]``) go into the image config as given.
    """
    dest = Path(dest).absolute()
    layout = _layout(dest)
    tree = _Tree()
    _busybox(tree)
    work = dest / f"busybox-{tag}"
    work.mkdir(parents=True, exist_ok=True)
    _small_files(tree, work)
    if workdir:
        tree.dir(workdir)
    layer = work / "layer.tar"
    tree.write(layer)
    _run("umoci", "new", "--image", f"{layout}:{tag}")
    _run("umoci", "raw", "add-layer", "--image", f"{layout}:{tag}", layer)
    shutil.rmtree(work)
    _config(f"{layout}:{tag}", _with_path(env), workdir, entrypoint, cmd, user)
    return f"oci:{layout}:{tag}"


def _split_ref(ref: str) -> tuple[Path, str]:
    """(layout, tag) of ``oci:<layout>:<tag>``."""
    if not ref.startswith("oci:") or ref.count(":") < 2:
        raise ImageKitError(f"{ref} is not oci:<layout>:<tag>")
    layout, tag = ref[4:].rsplit(":", 1)
    return Path(layout), tag


def add_layer(
    ref: str,
    tag: str,
    files: Mapping[str, bytes] | None = None,
    deleted: Iterable[str] = (),
    opaque: Iterable[str] = (),
) -> str:
    """The image ``ref`` (``oci:<layout>:<tag>``) with one more layer, as tag ``tag`` of the
    same layout; returns ``oci:<layout>:<tag>``. The config stays as it was.

    The layer holds ``files`` (path inside the image -> content), a whiteout ``.wh.<name>``
    for each path of ``deleted`` (the lower layers' file or folder is gone) and an opaque
    marker ``.wh..wh..opq`` in each folder of ``opaque`` (the lower layers' entries in it are
    hidden; only this layer's show), as ``docker build`` writes them.
    """
    layout, base = _split_ref(ref)
    work = layout.parent / f"layer-{tag}"
    work.mkdir(parents=True, exist_ok=True)
    tree = _Tree()
    empty = work / "empty"
    empty.write_bytes(b"")
    os.utime(empty, (0, 0))
    for n, (inside, data) in enumerate(sorted((files or {}).items())):
        host = work / f"file-{n}"
        host.write_bytes(data)
        os.utime(host, (0, 0))  # the same bytes in every build: the same layer digest
        tree.file(inside, host)
    for path in deleted:
        folder, name = os.path.split(path.strip("/"))
        tree.file(os.path.join(folder, f".wh.{name}"), empty)
    for folder in opaque:
        tree.file(os.path.join(folder.strip("/"), ".wh..wh..opq"), empty)
    layer = work / "layer.tar"
    tree.write(layer)
    _run("umoci", "raw", "add-layer", "--image", f"{layout}:{base}", "--tag", tag, layer)
    shutil.rmtree(work)
    return f"oci:{layout}:{tag}"


def _with_path(env: Iterable[str]) -> list[str]:
    items = list(env)
    if not any(item.startswith("PATH=") for item in items):
        items.insert(0, f"PATH={PATH}")
    return items


# -- the host's Python -----------------------------------------------------------------------


def _interpreter() -> Path:
    return Path(os.path.realpath(sys.executable))


def _image_site_packages() -> str:
    """The interpreter's own site-packages (found without a venv), where packages go."""
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    return sysconfig.get_paths(vars=base)["platlib"]


def _distributions(name: str, site: Path) -> list[importlib.metadata.Distribution]:
    """The distributions that provide the import name ``name``: one named like it, else one
    whose top_level.txt lists it, else (slow: every RECORD is read) importlib's full map."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        if any(f.parts[0] in (name, f"{name}.py") for f in dist.files or []):
            return [dist]
    for top_level in site.glob("*.dist-info/top_level.txt"):
        if name in top_level.read_text().split():
            return [importlib.metadata.Distribution.at(top_level.parent)]
    names = importlib.metadata.packages_distributions().get(name, [])
    return [importlib.metadata.distribution(n) for n in names]


def _package_roots(names: Sequence[str]) -> list[Path]:
    """Top-level folders and modules of the distributions that provide ``names`` (the package,
    its bundled ``*.libs`` folder, its ``.dist-info``), in this venv's site-packages."""
    site = Path(sysconfig.get_paths()["platlib"])
    roots: dict[Path, None] = {}
    for name in names:
        dists = _distributions(name, site)
        if not dists:
            raise ImageKitError(f"package {name!r} is not installed in {site}")
        for dist in dists:
            for item in dist.files or []:
                top = item.parts[0]
                if top == ".." or top.endswith(".pth"):
                    continue
                path = site / top
                if path.exists():
                    roots[path] = None
    return list(roots)


def _walk(root: Path, skip_top: Iterable[str] = (), skip: Iterable[str] = ()) -> Iterable[Path]:
    """Files below ``root`` but not in folders named ``skip_top`` (at the top) or ``skip``
    (anywhere); a ``__pycache__`` keeps this interpreter's unoptimised .pyc files only."""
    top, anywhere = set(skip_top), set(skip)
    suffix = f".{sys.implementation.cache_tag}.pyc"
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if d not in anywhere and (here != root or d not in top)]
        in_cache = here.name == "__pycache__"
        for name in files:
            if not in_cache or name.endswith(suffix):
                yield here / name


def _ldd(paths: Sequence[Path]) -> set[str]:
    """Every shared library (and loader) the ELF files ``paths`` need, as ldd resolves it."""
    jobs = max(1, min(4, os.cpu_count() or 1))
    procs = [
        subprocess.Popen(
            ["ldd", *map(str, paths[i::jobs])], stdout=subprocess.PIPE, text=True
        )  # ldd exits 1 when one file is not dynamic; its other files are still listed
        for i in range(jobs)
        if paths[i::jobs]
    ]
    found: set[str] = set()
    for proc in procs:
        out, _ = proc.communicate()
        for line in out.splitlines():
            m = _LDD_LINE.match(line)
            if not m:
                continue
            lib = m.group(1)
            if "/../" in lib:  # "$ORIGIN/../../numpy.libs/x.so": the folder the loader sees
                lib = os.path.join(os.path.realpath(os.path.dirname(lib)), os.path.basename(lib))
            found.add(lib)  # else as named, symlinks and all (/lib64/ld-linux-x86-64.so.2)
    return found


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def _base_key(packages: Sequence[str]) -> str:
    text = "\n".join([str(_interpreter()), sys.version, *packages])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _base_tree(packages: Sequence[str], scratch: Path) -> _Tree:
    tree = _Tree()
    python = _interpreter()
    stdlib = Path(sysconfig.get_paths(vars={"installed_base": sys.base_prefix})["stdlib"])
    venv_site = Path(sysconfig.get_paths()["platlib"])
    image_site = _image_site_packages()
    tree.host_path(str(python))
    tree.link("usr/bin/python3", str(python))
    tree.link("usr/bin/python", str(python))
    elves: list[Path] = [python]
    static = os.path.basename(sysconfig.get_config_var("LIBPL") or "config")  # libpython.a
    for path in _walk(stdlib, {*_STDLIB_SKIP, static}, skip=("test", "tests")):
        if path.name.startswith("_tkinter"):  # tkinter is left out, and Tk is not here
            continue
        tree.host_path(str(path))
        if path.suffix == ".so":
            elves.append(path)
    tree.dir(image_site)
    for root in _package_roots(packages):
        files = _walk(root, skip=("tests",)) if root.is_dir() else [root]
        for path in files:
            tree.file(os.path.join(image_site, path.relative_to(venv_site)), path)
            if ".so" in path.suffixes and _is_elf(path):
                elves.append(path)
    for lib in sorted(_ldd(elves)):
        if Path(lib).is_relative_to(venv_site):  # a package's bundled *.libs, copied above
            rel = Path(lib).relative_to(venv_site)
            tree.file(os.path.join(image_site, rel), os.path.realpath(lib))
        else:
            tree.host_path(lib)
    _busybox(tree)
    _small_files(tree, scratch)
    return tree


def _add_layer_streamed(image: str, tree: _Tree, fifo: Path) -> None:
    """``umoci raw add-layer`` reading the tarball from a pipe while it is written, so the tar
    and umoci's gzip run at the same time (5.3 s -> 3.4 s for the python base, loaded box)."""
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        ["umoci", "raw", "add-layer", "--no-history", "--image", image, str(fifo)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fd = None
        while fd is None and proc.poll() is None:  # umoci may fail before it opens the pipe
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:  # ENXIO: no reader yet
                if exc.errno != errno.ENXIO:
                    raise
                time.sleep(0.005)
        if fd is not None:
            os.set_blocking(fd, True)
            with open(fd, "wb") as out, contextlib.suppress(BrokenPipeError):
                tree.stream(out)  # a broken pipe: umoci stopped; its message says why
    finally:
        _, err = proc.communicate()
        fifo.unlink()
    if proc.returncode != 0:
        raise ImageKitError(f"umoci raw add-layer {image}: {err.strip()}")


def python_image(
    dest: Path,
    tag: str = "py",
    files: Mapping[str, Path] | None = None,
    workdir: str = "/app",
    packages: Sequence[str] = ("numpy", "PIL"),
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    env: Iterable[str] = (),
) -> str:
    """This machine's Python with ``packages`` (import names, from this venv) in
    ``dest/layout`` under ``tag``; returns ``oci:<layout>:<tag>``.

    ``python3`` and ``python`` are in ``/usr/bin``, busybox (``sh`` and the rest) in ``/bin``.
    ``files`` maps paths inside the image to host files (a host folder is copied whole), in a
    layer of their own above the shared base (tag ``base-<key>``, made once per process for
    an interpreter and ``packages``). ``env`` holds ``KEY=VALUE`` items besides ``PATH``.
    """
    dest = Path(dest).absolute()
    layout = _layout(dest)
    key = _base_key(packages)
    base = f"base-{key}"
    if base not in _tags(layout):
        built = _BASES.get(key)
        if (
            built is not None and (built / "index.json").is_file() and base in _tags(built)
        ):  # the compressed layer, copied as is
            _run("skopeo", "copy", "--quiet", f"oci:{built}:{base}", f"oci:{layout}:{base}")
        else:
            scratch = dest / f"{base}.work"
            scratch.mkdir(exist_ok=True)
            tree = _base_tree(packages, scratch)
            _run("umoci", "new", "--image", f"{layout}:{base}")
            try:
                _add_layer_streamed(f"{layout}:{base}", tree, scratch / "layer.tar")
            except BaseException:  # no half-made base left for the next call to take
                subprocess.run(["umoci", "rm", "--image", f"{layout}:{base}"], check=False)
                raise
            finally:
                shutil.rmtree(scratch)
        _BASES[key] = layout
    tree = _Tree()
    tree.dir(workdir)
    for inside, host in (files or {}).items():
        host = Path(host)
        if host.is_dir():
            for path in _walk(host):
                tree.file(os.path.join(inside, path.relative_to(host)), path)
        elif host.is_file():
            tree.file(inside, host)
        else:
            raise ImageKitError(f"{host} (for {inside} in the image) does not exist")
    layer = dest / f"files-{tag}.tar"
    tree.write(layer)
    _run("umoci", "raw", "add-layer", "--image", f"{layout}:{base}", "--tag", tag, layer)
    layer.unlink()
    _config(f"{layout}:{tag}", _with_path(env), workdir, entrypoint, cmd)
    return f"oci:{layout}:{tag}"


def layer_digests(ref: str) -> list[str]:
    """The layer digests of ``oci:<layout>:<tag>``, base first (read with ``skopeo inspect``)."""
    return list(json.loads(_run("skopeo", "inspect", ref))["Layers"])


# -- a registry on this machine ----------------------------------------------------------------


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_registry(
    base: Path,
    credentials: tuple[str, str] | None = None,
    deadline: float = 20,
    token: Sequence[str] = (),
) -> Iterator[str]:
    """Debian's ``docker-registry`` on 127.0.0.1 over plain HTTP, storing under ``base``; yields
    its ``127.0.0.1:PORT``. With ``credentials`` (user, password) it asks for them (htpasswd,
    bcrypt: ``htpasswd`` of apache2-utils); with ``token``, these lines of token auth
    (``auth: token:``: realm, service, issuer, rootcertbundle). Stopped when the block ends."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    host = f"127.0.0.1:{free_port()}"
    lines = ["version: 0.1", "log:", "  level: warn", "storage:", "  filesystem:",
             f"    rootdirectory: {base / 'storage'}", "http:", f"  addr: {host}"]  # fmt: skip
    if credentials is not None:
        htpasswd = base / "htpasswd"
        htpasswd.write_text(_run("htpasswd", "-Bbn", *credentials))
        lines += ["auth:", "  htpasswd:", "    realm: tusk-test", f"    path: {htpasswd}"]
    if token:
        lines += ["auth:", "  token:", *(f"    {line}" for line in token)]
    config = base / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    log = base / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        until = time.monotonic() + deadline
        while True:
            try:
                urllib.request.urlopen(f"http://{host}/v2/", timeout=1).close()
                break
            except urllib.error.HTTPError:  # 401 when auth is on: it answers
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > until:
                    raise ImageKitError(
                        f"docker-registry did not start: {log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.05)
        yield host
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def push(ref: str, dest: str, credentials: tuple[str, str] | None = None) -> str:
    """Copy the image ``ref`` (``oci:<layout>:<tag>``) to ``dest`` (``REGISTRY/NAME:TAG`` of a
    plain-HTTP registry) with skopeo; returns the manifest digest the registry serves."""
    args: list[str | Path] = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    if credentials is not None:
        args.append(f"--dest-creds={credentials[0]}:{credentials[1]}")
    _run(*args, ref, f"docker://{dest}")
    inspect: list[str | Path] = ["skopeo", "inspect", "--tls-verify=false"]
    if credentials is not None:
        inspect.append(f"--creds={credentials[0]}:{credentials[1]}")
    return str(json.loads(_run(*inspect, f"docker://{dest}"))["Digest"])


def user_container(tmp_path: Path, argv: list[str]) -> tuple[Path, Path, subprocess.Popen[bytes]]:
    """A Kubernetes worker pod's user container played on this machine: ``argv`` under
    bubblewrap in a busybox image's rootfs, with the pod's two emptyDir volumes (``pfs`` at
    /pfs, ``tusk`` at /tusk, both under ``tmp_path``) and Debian's static busybox at
    /tusk-bin, where the Job's init container copies it. Returns (pfs, tusk, process)."""
    from tusk.pps.images import ImageCache, make_mount_point

    ref = busybox_image(tmp_path / "img", "v1")
    cache = ImageCache(tmp_path / "cache")
    rootfs = cache.rootfs(cache.resolve(ref))
    assert make_mount_point(rootfs, "/tusk")  # a container runtime makes its mount points
    assert make_mount_point(rootfs, "/tusk-bin")
    pfs, handoff, copied = tmp_path / "pfs", tmp_path / "tusk", tmp_path / "tusk-bin"
    pfs.mkdir()
    handoff.mkdir()
    copied.mkdir()
    shutil.copy2("/bin/busybox", copied / "busybox")  # what the Job's init container does
    user = subprocess.Popen(
        ["bwrap", "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev",
         "--tmpfs", "/tmp", "--bind", str(pfs), "/pfs", "--bind", str(handoff), "/tusk",
         "--ro-bind", str(copied), "/tusk-bin",
         "--unshare-all", "--die-with-parent", "--clearenv", "--setenv", "PATH", "/bin",
         "--", *argv],
    )  # fmt: skip
    return pfs, handoff, user
