"""``tusk mount``: commits as a read-only folder, read lazily through FUSE.

``tusk mount data@master imgs@v2 /mnt/t`` shows ``/mnt/t/data`` and ``/mnt/t/imgs`` (as
``pachctl mount`` does). Each ``repo@ref`` is pinned to its commit id once, when the mount
starts: what a program reads never changes under it, whatever the branch does later. The same
repo given twice (``data@master data@v1``) is mounted as ``data@master`` and ``data@v1``
beside each other; a name that still clashes is refused.

Everything here goes through the SDK's public reads, so a mount works the same on the
embedded store (``Client(home)``) and against a server (``Client(address=...)``):

- The tree: :meth:`~tusk.sdk.base.BaseClient.iter_files` when a folder is read, page by page
  (a FUSE ``readdir`` with offsets continues the listing where the kernel's buffer filled, so
  a folder of a million files is never held in memory), and
  :meth:`~tusk.sdk.base.BaseClient.inspect_file` for a path looked up without its folder
  being listed. What a listing or a lookup learnt (type, size) is kept in a bounded LRU of
  paths. Sizes are the files'; times are the commit's (finished, else started).
- The bytes: :meth:`~tusk.sdk.base.BaseClient.file_reader` of ``repo@<commit>:/path``, whose
  ``read(start, stop)`` fetches only the chunks holding those bytes (in-process) or sends one
  ranged GET (a server). Reads go through a cache of fixed-size blocks (``BLOCK_SIZE``, keyed
  by commit, path and block index) bounded by ``--cache-size``, so a data loader's random
  reads and second epochs do not fetch again; the kernel's page cache is kept across opens as
  well (a pinned commit never changes, so ``kernel_cache`` and long attribute timeouts are
  safe).
- Counters of what was fetched (``MountStats``) are written as JSON by ``--stats FILE`` when
  the mount ends: that is how a test counts what a lazy read cost, without mocks.

The FUSE binding is mfusepy (PyPI), over Debian's libfuse 3 (``fuse3``): a maintained fork
of fusepy (releases in 2025-2026, libfuse 3 support, Python 3.9+), ctypes only, so it needs no
compiler and no libfuse headers to install, and its multi-threaded high-level API hands each
callback a path, which maps straight onto Tusk's addresses. pyfuse3 (the other maintained
binding) is a C extension over libfuse's low-level, inode-based API driven by trio: faster
per call, but it needs libfuse3-dev and a compiler to build where no wheel fits, and an inode
table and an async event loop of our own. A mount's reads are bounded by fetching chunks, not
by the cost of a Python callback (about 128 KiB per call), so the simpler binding wins.

Writes are refused: the mount is read-only (``-o ro``; an open for writing is ``EROFS``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

from tusk.errors import InUse, InvalidArgument, NotFound, PathConflict, ToolMissing, TuskError

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from tusk.pfs.models import FileInfo
    from tusk.sdk.base import BaseClient, FileReader

__all__ = [
    "BLOCK_SIZE",
    "DEFAULT_CACHE_SIZE",
    "BlockCache",
    "CommitFS",
    "MountSource",
    "MountStats",
    "check_mountpoint",
    "is_mounted",
    "load_fuse",
    "mount",
    "plan_mounts",
    "unmount",
]

BLOCK_SIZE = 1024 * 1024  # the unit fetched and cached: ~8 chunks of the default size
DEFAULT_CACHE_SIZE = 256 * 1024 * 1024
ATTRS_KEPT = 100_000  # paths whose type and size are kept (~20 MB at most)
READERS_KEPT = 256  # open file readers kept for files read lately
READ_AHEAD = 2  # blocks fetched ahead of a sequential reader, on as many threads
TIMEOUT = 3600.0  # kernel attribute and entry timeouts: a pinned commit never changes

INSTALL_HINT = "apt-get install fuse3, then pip install 'tusk-data[mount]'"


# What to mount, and where


@dataclass(frozen=True)
class MountSource:
    """One ``repo@ref`` to mount: shown at ``<mountpoint>/<name>``, pinned to ``commit``."""

    name: str
    given: str  # as the user wrote it (for messages)
    repo: str  # as the server names it (project/repo outside the default project)
    commit: str
    mtime: float
    size: int
    files: int

    def address(self, path: str) -> str:
        return f"{self.repo}@{self.commit}:{path}"


def plan_mounts(client: BaseClient, refs: Sequence[str]) -> list[MountSource]:
    """Resolve each ``repo@ref`` to its commit once and name its folder: ``<repo>``, or
    ``<repo>@<ref>`` for a repo given more than once. Raises NotFound for a missing repo or
    ref (before anything is mounted) and InvalidArgument for a name that still clashes."""
    if not refs:
        raise InvalidArgument("name at least one REPO@REF to mount")
    parsed: list[tuple[str, str, str]] = []  # (given, repo part, ref part)
    for text in refs:
        if ":" in text:
            raise InvalidArgument(f"mount takes REPO@REF, without a path: {text!r}")
        repo, _, ref = text.partition("@")
        if not repo or (("@" in text) and not ref):
            raise InvalidArgument(f"not a REPO@REF: {text!r}")
        parsed.append((text, repo, ref))
    bare = [repo.rsplit("/", 1)[-1] for _, repo, _ in parsed]
    names: list[str] = []
    for (given, _repo, ref), name in zip(parsed, bare, strict=True):
        if bare.count(name) > 1:
            name = f"{name}@{ref or 'master'}"
        if "/" in name or name in (".", ".."):
            raise InvalidArgument(f"cannot name a folder for {given!r}: {name!r}")
        if name in names:
            raise InvalidArgument(
                f"{given} would be mounted twice as {name!r}: give each repo@ref once"
            )
        names.append(name)
    out = []
    for (given, _repo, _ref), name in zip(parsed, names, strict=True):
        info = client.inspect_commit(given)
        when = info.finished_at if info.finished_at is not None else info.started_at
        out.append(MountSource(name, given, info.repo, info.id, when, info.size, info.files))
    return out


def check_mountpoint(path: str | os.PathLike[str]) -> Path:
    """An existing, empty folder that is not mounted already; InvalidArgument otherwise."""
    mp = Path(path).expanduser().absolute()
    if is_mounted(mp):
        raise InvalidArgument(f"{mp} is already a mount point (tusk unmount {mp} first)")
    if not mp.exists():
        raise InvalidArgument(f"mount point {mp} does not exist (create it: mkdir -p {mp})")
    if not mp.is_dir():
        raise InvalidArgument(f"mount point {mp} is not a folder")
    if any(mp.iterdir()):
        raise InvalidArgument(f"mount point {mp} is not empty: mount on an empty folder")
    return mp


def load_fuse() -> ModuleType:
    """mfusepy over libfuse 3, or ToolMissing saying how to install what is missing.

    ``fusermount3`` must be on PATH (libfuse mounts with it when not root, and
    ``tusk unmount`` runs it). mfusepy loads libfuse 3 (``$FUSE_LIBRARY_NAME``, default
    ``fuse3`` here: mfusepy itself would take libfuse 2 first where both are installed)."""
    if shutil.which("fusermount3") is None:
        raise ToolMissing(f"FUSE is not available: fusermount3 is not on PATH ({INSTALL_HINT})")
    if not os.path.exists("/dev/fuse"):
        raise ToolMissing(
            "FUSE is not available: /dev/fuse does not exist (load the fuse kernel module; in a "
            "container, give it --device /dev/fuse)"
        )
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    try:
        import mfusepy
    except ImportError:
        raise ToolMissing(
            f"FUSE's Python binding mfusepy is not installed ({INSTALL_HINT})"
        ) from None
    except OSError as exc:  # mfusepy found no libfuse
        raise ToolMissing(f"FUSE is not available: {exc} ({INSTALL_HINT})") from None
    return mfusepy


def is_mounted(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a mount point, a dead FUSE mount (its process killed) included:
    ``os.path.ismount`` cannot stat those."""
    target = os.path.abspath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ")
                if len(fields) > 4 and _unescape(fields[4]) == target:
                    return True
        return False
    except OSError:
        return os.path.ismount(target)


def _unescape(field: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes are octal escapes there."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def unmount(path: str | os.PathLike[str]) -> None:
    """``fusermount3 -u``: InvalidArgument when nothing is mounted there, InUse when a
    program still has a file or folder open in it."""
    mp = os.path.abspath(path)
    if not is_mounted(mp):
        raise InvalidArgument(f"{mp} is not mounted")
    tool = shutil.which("fusermount3")
    if tool is None:
        raise ToolMissing(f"fusermount3 is not on PATH ({INSTALL_HINT})")
    done = subprocess.run([tool, "-u", mp], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        if "busy" in said.lower():
            raise InUse(f"cannot unmount {mp}: a program has a file or folder open in it ({said})")
        raise TuskError(f"cannot unmount {mp}: {said or f'fusermount3 exited {done.returncode}'}")


# The caches


class MountStats:
    """What the mount did: FUSE reads served, blocks fetched from the store (and their
    bytes), cache hits, listings and lookups. Thread-safe counters."""

    FIELDS = (
        "reads",
        "bytes_read",
        "blocks_fetched",
        "bytes_fetched",
        "cache_hits",
        "listings",
        "lookups",
        "opens",
        "errors",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.FIELDS, 0)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, n in counts.items():
                self._counts[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


BlockKey = tuple[str, str, int]  # (commit, path, block index)


class BlockCache:
    """An LRU of file blocks, bounded by their total bytes (0: keep nothing)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._blocks: OrderedDict[BlockKey, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: BlockKey) -> bytes | None:
        with self._lock:
            block = self._blocks.get(key)
            if block is not None:
                self._blocks.move_to_end(key)
            return block

    def put(self, key: BlockKey, block: bytes) -> None:
        if len(block) > self.max_bytes:
            return
        with self._lock:
            old = self._blocks.pop(key, None)
            if old is not None:
                self.bytes -= len(old)
            self._blocks[key] = block
            self.bytes += len(block)
            while self.bytes > self.max_bytes:
                _, dropped = self._blocks.popitem(last=False)
                self.bytes -= len(dropped)

    def __len__(self) -> int:
        with self._lock:
            return len(self._blocks)


class _LRU:
    """A small thread-safe LRU map (paths' attributes, open readers)."""

    def __init__(self, size: int, on_drop: Callable[[Any], None] | None = None) -> None:
        self._size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._on_drop = on_drop

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> Any:
        """Keep ``value`` unless another is there already; return the one kept."""
        dropped = []
        with self._lock:
            kept = self._items.setdefault(key, value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                dropped.append(self._items.popitem(last=False)[1])
        if self._on_drop is not None:
            for value in dropped:
                self._on_drop(value)
        return kept

    def values(self) -> list[Any]:
        with self._lock:
            return list(self._items.values())


# The file system


@dataclass(frozen=True)
class _Attr:
    is_dir: bool
    size: int


@dataclass
class _Handle:
    source: MountSource
    path: str  # in the repo: /dir/file
    size: int
    next_offset: int = -1  # where the last read ended: a read from there is sequential


class _DirHandle:
    """A folder being read: its listing continues from where the kernel's last page ended."""

    def __init__(self, entries: Callable[[], Iterator[tuple[str, _Attr]]]) -> None:
        self._make = entries
        self._it: Iterator[tuple[str, _Attr]] | None = None
        self.next_index = 0  # of the next item the iterator gives (0 and 1 are . and ..)
        self.recent: deque[tuple[int, str, _Attr]] = deque(maxlen=64)
        self.lock = threading.Lock()

    def items_from(self, index: int) -> Iterator[tuple[int, str, _Attr]]:
        """Items ``index`` on: ``.``, ``..``, then the entries, each with its index."""
        dot = _Attr(True, 0)
        if index <= 0:
            yield 0, ".", dot
        if index <= 1:
            yield 1, "..", dot
        index = max(index, 2)
        if self._it is None or index < self.next_index - len(self.recent):
            # the first page, or a seek back past what is kept (rewinddir): list again
            self._it, self.next_index = self._make(), 2
            self.recent.clear()
        for i, name, attr in list(self.recent):  # what the kernel's last page had no room for
            if i >= index:
                yield i, name, attr
                index = i + 1
        while True:
            try:
                name, attr = next(self._it)
            except StopIteration:
                return
            i = self.next_index
            self.next_index += 1
            self.recent.append((i, name, attr))
            if i >= index:
                yield i, name, attr


class CommitFS:
    """The FUSE operations (mfusepy's high-level, path-based API) over pinned commits.

    Paths: ``/`` lists the mounts, ``/<name>/...`` is ``<repo>@<commit>:/...``. The methods
    raise ``OSError`` with an errno, as mfusepy expects; a Tusk error becomes ENOENT (not
    found) or EIO (anything else, said once on stderr).
    """

    use_ns = True  # times in nanoseconds (mfusepy's current API)

    def __init__(
        self,
        client: BaseClient,
        sources: Sequence[MountSource],
        cache_size: int = DEFAULT_CACHE_SIZE,
        block_size: int = BLOCK_SIZE,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.sources = {s.name: s for s in sources}
        self.block_size = block_size
        self.cache = BlockCache(cache_size)
        self.stats = MountStats()
        self._on_ready = on_ready
        self._attrs = _LRU(ATTRS_KEPT)
        self._readers = _LRU(READERS_KEPT, on_drop=lambda r: r.close())
        self._handles: dict[int, _Handle | _DirHandle] = {}
        self._fetching: dict[BlockKey, threading.Event] = {}
        self._pool: ThreadPoolExecutor | None = None  # read-ahead, made on first use
        self._next_fh = 1
        self._lock = threading.Lock()
        self._uid, self._gid = os.getuid(), os.getgid()
        self._root_time = max((s.mtime for s in sources), default=time.time())

    # Life cycle

    def init(self, path: str) -> None:
        if self._on_ready is not None:
            self._on_ready()

    def destroy(self, path: str) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for reader in self._readers.values():
            reader.close()

    def warm_up(self) -> None:
        """Run each kind of call once before the mount comes up, so the first program to
        read does not wait for the client's first queries (statement caches, connections,
        modules loaded on first use: ~100 ms in-process): a lookup and a listing of each
        root, and a read of the first file found among its first entries."""
        for source in self.sources.values():
            try:
                self.client.inspect_file(source.address("/"))
                for n, info in enumerate(self.client.iter_files(source.address("/"))):
                    if info.type == "file":
                        reader = self.client.file_reader(source.address(info.path))
                        reader.read(0, 1)
                        reader.close()
                        break
                    if n >= 16:
                        break
            except TuskError:
                pass  # an empty commit, say: nothing to warm, and nothing wrong

    # Metadata

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        source, inner = self._split(path)
        if source is None:
            return self._stat(_Attr(True, 0), self._root_time)
        if inner == "/":
            return self._stat(_Attr(True, 0), source.mtime)
        return self._stat(self._attr(source, inner), source.mtime)

    def statfs(self, path: str) -> dict[str, int]:
        total = sum(s.size for s in self.sources.values())
        files = sum(s.files for s in self.sources.values())
        return {
            "f_bsize": self.block_size,
            "f_frsize": 4096,
            "f_blocks": -(-total // 4096),
            "f_bfree": 0,
            "f_bavail": 0,
            "f_files": files,
            "f_ffree": 0,
            "f_favail": 0,
            "f_namemax": 255,
        }

    def access(self, path: str, amode: int) -> int:
        if amode & os.W_OK:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        self.getattr(path)
        return 0

    def opendir(self, path: str) -> int:
        source, inner = self._split(path)
        if source is None:
            names = sorted(self.sources)
            return self._add_handle(_DirHandle(lambda: ((n, _Attr(True, 0)) for n in names)))
        if inner != "/" and not self._attr(source, inner).is_dir:
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        return self._add_handle(_DirHandle(lambda: self._list(source, inner)))

    def readdir_with_offset(
        self, path: str, offset: int, fh: int
    ) -> Iterator[tuple[str, dict[str, int], int]]:
        # A generator: mfusepy stops taking items when the kernel's buffer is full, so the
        # listing is read only as far as it is shown (the item it had no room for is kept in
        # the handle's recent items for the next page).
        handle = self._handles.get(fh)
        if not isinstance(handle, _DirHandle):
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        with handle.lock:  # one page of a folder handle at a time
            try:
                for i, name, attr in handle.items_from(offset):
                    yield name, {"st_mode": _mode(attr)}, i + 1
            except Exception as exc:
                raise self._errno(exc) from None

    def releasedir(self, path: str, fh: int) -> int:
        with self._lock:
            self._handles.pop(fh, None)
        return 0

    # Data

    def open(self, path: str, flags: int) -> int:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & (os.O_TRUNC | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        source, inner = self._split(path)
        if source is None or inner == "/":
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        attr = self._attr(source, inner)
        if attr.is_dir:
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        self.stats.add(opens=1)
        return self._add_handle(_Handle(source, inner, attr.size))

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        handle = self._handles.get(fh)
        if not isinstance(handle, _Handle):
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        stop = min(offset + size, handle.size)
        if stop <= offset:
            return b""
        bs = self.block_size
        first, last = offset // bs, (stop - 1) // bs
        if offset == handle.next_offset and stop >= (last + 1) * bs - bs // 2:
            # a sequential reader half way through its block: fetch the next ones meanwhile
            for ahead in range(last + 1, last + 1 + READ_AHEAD):
                self._prefetch(handle, ahead)
        handle.next_offset = stop
        if first == last:
            block = self._block(handle, first)
            data = block[offset - first * bs : stop - first * bs]
        else:
            joined = b"".join(self._block(handle, i) for i in range(first, last + 1))
            data = joined[offset - first * bs : stop - first * bs]
        self.stats.add(reads=1, bytes_read=len(data))
        return data

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            self._handles.pop(fh, None)
        return 0

    # Helpers

    def _split(self, path: str) -> tuple[MountSource | None, str]:
        """``/name/a/b`` -> (the source named ``name``, ``/a/b``); ``/`` -> (None, ``/``)."""
        name, _, rest = path.lstrip("/").partition("/")
        if not name:
            return None, "/"
        source = self.sources.get(name)
        if source is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        return source, "/" + rest.rstrip("/")

    def _attr(self, source: MountSource, inner: str) -> _Attr:
        key = (source.commit, inner)
        attr = self._attrs.get(key)
        if attr is None:
            info = self._guard(lambda: self.client.inspect_file(source.address(inner)))
            self.stats.add(lookups=1)
            attr = self._attrs.put(key, _Attr(info.type == "dir", info.size))
        return attr

    def _list(self, source: MountSource, inner: str) -> Iterator[tuple[str, _Attr]]:
        self.stats.add(listings=1)
        infos: Iterator[FileInfo] = self.client.iter_files(source.address(inner))
        for info in infos:
            attr = _Attr(info.type == "dir", info.size)
            self._attrs.put((source.commit, info.path), attr)
            yield info.path.rsplit("/", 1)[-1], attr

    def _block(self, handle: _Handle, index: int) -> bytes:
        key = (handle.source.commit, handle.path, index)
        caching = self.cache.max_bytes >= self.block_size
        while True:
            block = self.cache.get(key)
            if block is not None:
                self.stats.add(cache_hits=1)
                return block
            if not caching:
                return self._fetch(handle, index)
            with self._lock:  # the kernel reads ahead on several threads: fetch a block once
                pending = self._fetching.get(key)
                if pending is None:
                    self._fetching[key] = threading.Event()
            if pending is None:
                break
            pending.wait()  # another thread fetches it, then it is cached (if it failed: again)
        try:
            block = self._fetch(handle, index)
            self.cache.put(key, block)
            return block
        finally:
            with self._lock:
                self._fetching.pop(key).set()

    def _prefetch(self, handle: _Handle, index: int) -> None:
        """Fetch block ``index`` into the cache on a background thread, unless it is cached,
        being fetched, past the end, or the cache cannot hold it."""
        key = (handle.source.commit, handle.path, index)
        if index * self.block_size >= handle.size or self.cache.max_bytes < 4 * self.block_size:
            return
        if self.cache.get(key) is not None:
            return
        with self._lock:
            if key in self._fetching:
                return
            self._fetching[key] = threading.Event()
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="tusk-readahead")
            pool = self._pool

        def run() -> None:
            try:
                self.cache.put(key, self._fetch(handle, index))
            except OSError:
                pass  # the reader's own read fetches it again and reports the error
            finally:
                with self._lock:
                    self._fetching.pop(key).set()

        pool.submit(run)

    def _fetch(self, handle: _Handle, index: int) -> bytes:
        reader = self._reader(handle)
        start = index * self.block_size
        stop = min(start + self.block_size, handle.size)
        block: bytes = self._guard(lambda: reader.read(start, stop))
        if len(block) != stop - start:
            self._fail(f"{handle.source.address(handle.path)}: short read at {start}")
        self.stats.add(blocks_fetched=1, bytes_fetched=len(block))
        return block

    def _reader(self, handle: _Handle) -> FileReader:
        key = (handle.source.commit, handle.path)
        reader = self._readers.get(key)
        if reader is None:
            address = handle.source.address(handle.path)
            made = self._guard(lambda: self.client.file_reader(address))
            reader = self._readers.put(key, made)
            if reader is not made:
                made.close()
        return reader

    def _add_handle(self, handle: _Handle | _DirHandle) -> int:
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = handle
        return fh

    def _stat(self, attr: _Attr, mtime: float) -> dict[str, Any]:
        ns = int(mtime * 1e9)
        return {
            "st_mode": _mode(attr),
            # 1 for a folder: "count unknown", so find and fts never skip a folder's
            # subfolders by link count
            "st_nlink": 1,
            "st_size": 0 if attr.is_dir else attr.size,
            "st_blocks": 0 if attr.is_dir else -(-attr.size // 512),
            "st_blksize": self.block_size,
            "st_uid": self._uid,
            "st_gid": self._gid,
            "st_mtime": ns,
            "st_ctime": ns,
            "st_atime": ns,
        }

    def _guard(self, call: Callable[[], Any]) -> Any:
        """Run an SDK call; its error becomes the errno a program understands."""
        try:
            return call()
        except Exception as exc:
            raise self._errno(exc) from None

    def _errno(self, exc: Exception) -> OSError:
        """ENOENT for what is not there, ENOTDIR for a file used as a folder, else EIO (and
        the reason once on stderr: a program only sees "Input/output error")."""
        if isinstance(exc, NotFound):
            return OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        if isinstance(exc, PathConflict):
            return OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        self.stats.add(errors=1)
        message = exc.shown() if isinstance(exc, TuskError) else f"{type(exc).__name__}: {exc}"
        print(f"tusk mount: error: {message}", file=sys.stderr, flush=True)
        return OSError(errno.EIO, os.strerror(errno.EIO))

    def _fail(self, message: str) -> NoReturn:
        raise self._errno(TuskError(message))


def _mode(attr: _Attr) -> int:
    return (stat.S_IFDIR | 0o555) if attr.is_dir else (stat.S_IFREG | 0o444)


# Running a mount


def mount(
    client: BaseClient,
    sources: Sequence[MountSource],
    mountpoint: str | os.PathLike[str],
    *,
    cache_size: int = DEFAULT_CACHE_SIZE,
    block_size: int = BLOCK_SIZE,
    stats_path: str | os.PathLike[str] | None = None,
    on_ready: Callable[[], None] | None = None,
    debug: bool = False,
) -> dict[str, int]:
    """Mount ``sources`` at ``mountpoint`` read-only and serve it in this thread until it is
    unmounted (``tusk unmount``, ``fusermount3 -u``) or the process gets SIGINT, SIGTERM or
    SIGHUP (libfuse then unmounts it itself). Returns the counters (written as JSON to
    ``stats_path`` too). ``on_ready`` runs once the kernel has the mount."""
    fuse = load_fuse()
    mp = check_mountpoint(mountpoint)
    mounted = threading.Event()

    def ready() -> None:
        mounted.set()
        if on_ready is not None:
            on_ready()

    fs = CommitFS(client, sources, cache_size, block_size, ready)
    fs.warm_up()
    try:
        fuse.FUSE(
            fs,
            str(mp),
            foreground=True,
            debug=debug,
            ro=True,
            fsname="tusk",
            subtype="tusk",
            default_permissions=True,
            kernel_cache=True,
            attr_timeout=TIMEOUT,
            entry_timeout=TIMEOUT,
            negative_timeout=TIMEOUT,
        )
    except RuntimeError as exc:
        # fuse_main's status: 8 when its loop ended on a signal (SIGINT, SIGTERM: it has
        # unmounted then, as asked); another before the mount came up means it was refused
        if not mounted.is_set():
            raise TuskError(f"cannot mount at {mp}: libfuse failed (status {exc})") from None
    counts = fs.stats.snapshot()
    counts["cache_bytes"] = fs.cache.bytes
    if stats_path is not None:
        target = Path(stats_path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(counts, indent=2) + "\n")
        tmp.replace(target)
    return counts
