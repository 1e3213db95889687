"""``tusk mount``: commits as a folder, read lazily through FUSE; read-only, or with writes
staged locally and committed when the mount ends (``--write``).

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

Writes are refused unless ``--write``: the mount is read-only (``-o ro``; an open for
writing is ``EROFS``). With ``--write`` (branches only) :class:`StagedFS` overlays a local
staging folder on the pinned commits (whole files written, deletes and renames recorded as
whiteouts and redirects), and :func:`commit_staged` turns each branch's changes into one
commit once the mount has ended: the staged bytes first, to a scratch branch the target
never sees, then one open commit on the branch filled by metadata-only copies and deletes,
then finished (deleted on any error). Nothing is written to the store while mounted, so a
killed mount leaves every branch where it was. ``tusk unmount`` finds a write mount's
process through a small record in ``staging_root()/active`` and waits for its commit.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from tusk.errors import (
    Conflict,
    InUse,
    InvalidArgument,
    NotFound,
    PathConflict,
    ToolMissing,
    TuskError,
)
from tusk.fuse import INSTALL_HINT, is_mounted, load_fuse
from tusk.values import frozen

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from tusk.pfs.models import CommitInfo, FileInfo
    from tusk.sdk.base import BaseClient, FileReader

__all__ = [
    "BLOCK_SIZE",
    "DEFAULT_CACHE_SIZE",
    "BlockCache",
    "CommitFS",
    "MountSource",
    "MountStats",
    "StagedCommit",
    "StagedFS",
    "check_mountpoint",
    "commit_staged",
    "is_mounted",
    "load_fuse",
    "make_staging",
    "mount",
    "plan_mounts",
    "staging_root",
    "unmount",
]

BLOCK_SIZE = 1024 * 1024  # the unit fetched and cached: ~8 chunks of the default size
DEFAULT_CACHE_SIZE = 256 * 1024 * 1024
ATTRS_KEPT = 100_000  # paths whose type and size are kept (~20 MB at most)
READERS_KEPT = 256  # open file readers kept for files read lately
READ_AHEAD = 2  # blocks fetched ahead of a sequential reader, on as many threads
TIMEOUT = 3600.0  # kernel attribute and entry timeouts: a pinned commit never changes


# What to mount, and where


@frozen
class MountSource:
    """One ``repo@ref`` to mount: shown at ``<mountpoint>/<name>``, pinned to ``commit``."""

    name: str
    given: str  # as the user wrote it (for messages)
    repo: str  # as the server names it (project/repo outside the default project)
    commit: str
    mtime: float
    size: int
    files: int
    branch: str | None = None  # --write: the branch the staged changes are committed to

    def address(self, path: str) -> str:
        return f"{self.repo}@{self.commit}:{path}"


def plan_mounts(client: BaseClient, refs: Sequence[str], write: bool = False) -> list[MountSource]:
    """Resolve each ``repo@ref`` to its commit once and name its folder: ``<repo>``, or
    ``<repo>@<ref>`` for a repo given more than once. Raises NotFound for a missing repo or
    ref (before anything is mounted) and InvalidArgument for a name that still clashes.

    ``write``: every ref must be a branch (not a commit id, tag or ancestor ref:
    InvalidArgument), whose head is finished (Conflict otherwise: an open commit, left by a
    killed writer, is finished or deleted first); each is pinned to that head, the base its
    changes are committed on top of."""
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
    for (given, _repo, ref), name in zip(parsed, names, strict=True):
        info = client.inspect_commit(given)
        when = info.finished_at if info.finished_at is not None else info.started_at
        branch = None
        if write:
            branch = _writable_branch(client, given, info.repo, ref or "master")
            if info.state != "finished":
                raise Conflict(
                    f"{info.repo}@{branch} has an open commit ({info.id}), left by a writer "
                    f"that did not finish it: finish it (tusk finish commit {info.repo}@{info.id})"
                    f" or delete it (tusk delete commit {info.repo}@{info.id}) first"
                )
        out.append(
            MountSource(name, given, info.repo, info.id, when, info.size, info.files, branch)
        )
    return out


def _writable_branch(client: BaseClient, given: str, repo: str, ref: str) -> str:
    """``ref`` if it names a branch of ``repo``; InvalidArgument (for --write) otherwise."""
    refused = InvalidArgument(
        f"--write needs a branch, and {given} is not one (a commit id, tag or ancestor ref "
        "cannot change): mount a branch, or mount this one without --write"
    )
    if any(c in ref for c in "^~"):
        raise refused
    try:
        client.inspect_branch(f"{repo}@{ref}")
    except (NotFound, InvalidArgument):
        raise refused from None
    return ref


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


def unmount(path: str | os.PathLike[str], wait: bool = True) -> dict[str, Any] | None:
    """``fusermount3 -u``: InvalidArgument when nothing is mounted there, InUse when a
    program still has a file or folder open in it.

    For a ``--write`` mount, and with ``wait``, then waits until its process has committed
    and returns what it recorded: ``results`` (one per branch: ``commit`` id or None when
    nothing changed), ``error`` if a commit failed, ``staging``; ``dead`` True when the
    process had been killed (nothing was committed). None for a read-only mount."""
    mp = os.path.abspath(path)
    if not is_mounted(mp):
        raise InvalidArgument(f"{mp} is not mounted")
    tool = shutil.which("fusermount3")
    if tool is None:
        raise ToolMissing(f"fusermount3 is not on PATH ({INSTALL_HINT})")
    writer = _read_registry(mp)
    running = writer is not None and _alive(int(writer["pid"]))
    done = subprocess.run([tool, "-u", mp], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        if "busy" in said.lower():
            raise InUse(f"cannot unmount {mp}: a program has a file or folder open in it ({said})")
        raise TuskError(f"cannot unmount {mp}: {said or f'fusermount3 exited {done.returncode}'}")
    if writer is None:
        return None
    if not running:
        _registry(mp).unlink(missing_ok=True)
        return writer | {"dead": True}
    if not wait:
        return writer
    pid = int(writer["pid"])
    while not writer.get("done") and _alive(pid):
        time.sleep(0.05)  # the mount process commits, then records how it went
        writer = _read_registry(mp) or writer
    writer = _read_registry(mp) or writer
    if not writer.get("done"):
        writer |= {"error": "the mount process ended before it committed"}
    _registry(mp).unlink(missing_ok=True)
    return writer


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
        "writes",
        "bytes_written",
        "copy_ups",
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

    def clear(self) -> None:
        with self._lock:
            dropped = list(self._items.values())
            self._items.clear()
        if self._on_drop is not None:
            for value in dropped:
                self._on_drop(value)


# The file system


@frozen
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
        self._handles: dict[int, Any] = {}  # _Handle, _DirHandle, _WriteHandle
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
        return self._read_commit(handle, size, offset)

    def _read_commit(self, handle: _Handle, size: int, offset: int) -> bytes:
        """Bytes of a committed file, through the block cache."""
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

    def _add_handle(self, handle: object) -> int:
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = handle
        return fh

    def _stat(self, attr: _Attr, mtime: float) -> dict[str, Any]:
        ns = int(mtime * 1e9)
        return {
            "st_mode": self._mode(attr),
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

    def _mode(self, attr: _Attr) -> int:
        return _mode(attr)

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


# Writing (--write): changes staged in a local folder, one commit per branch at the end


class _WriteHandle:
    """A file open for writing, or a staged file open at all. Until its first write or
    truncate it reads the committed file ``base`` (copied up then: ``fd`` is set)."""

    def __init__(self, path: str, base: _Handle | None, fd: int | None) -> None:
        self.path = path  # in the mount, /<name>/dir/file: follows a rename
        self.base = base
        self.fd = fd


_ABSENT = (FileNotFoundError, NotADirectoryError)


def _raise(code: int) -> NoReturn:
    raise OSError(code, os.strerror(code))


class StagedFS(CommitFS):
    """:class:`CommitFS` with writes (``tusk mount --write``): an overlay whose lower layer is
    each branch's pinned base commit and whose upper layer is the staging folder.

    - A file created or written is a whole local file at ``<staging>/files/<name>/<path>``: a
      committed file's bytes are copied up on its first write or truncate (not at open, so a
      file opened for writing and left alone changes nothing); made folders are folders there.
    - Deleting a path the base has records a whiteout (its base content is hidden; a folder
      made again there starts empty); renaming one records a redirect (the new path shows the
      old path's base content, so a folder of a million files moves without a copy). Both
      live in memory and are journaled to ``<staging>/changes.json`` after each change.
    - :func:`commit_staged` turns them into one commit per branch when the mount ends.

    Limits: no symlinks, hard links, modes or owners (a commit holds files and bytes only);
    folders left empty are not committed; a program that keeps reading a committed file
    while another copies it up reads the committed bytes until it opens it again.
    """

    def __init__(
        self,
        client: BaseClient,
        sources: Sequence[MountSource],
        staging: Path,
        cache_size: int = DEFAULT_CACHE_SIZE,
        block_size: int = BLOCK_SIZE,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(client, sources, cache_size, block_size, on_ready)
        for source in sources:
            if source.branch is None:
                raise InvalidArgument(f"--write needs a branch: {source.given} is not one")
        self.staging = staging
        self.upper_root = staging / "files"
        self.upper_root.mkdir(parents=True, exist_ok=True)
        (staging / "tmp").mkdir(exist_ok=True)
        self.whiteouts: set[str] = set()  # mount paths whose base content is hidden
        self.redirects: dict[str, str] = {}  # mount path -> the base path it shows
        self._ns = threading.RLock()  # one change of the namespace at a time
        self._journal()

    # The layers

    @staticmethod
    def _key(source: MountSource, inner: str) -> str:
        return f"/{source.name}" + ("" if inner == "/" else inner)

    def _upper(self, key: str) -> Path:
        return self.upper_root / key.lstrip("/")

    def _lower(self, source: MountSource, inner: str) -> str | None:
        """The base path shown at ``inner``, through redirects; None below a whiteout."""
        key, lower = f"/{source.name}", ""
        for part in inner.split("/"):
            if not part:
                continue
            key, lower = f"{key}/{part}", f"{lower}/{part}"
            target = self.redirects.get(key)
            if target is not None:
                lower = target
            elif key in self.whiteouts:
                return None
        return lower or "/"

    def _lower_attr(self, source: MountSource, inner: str) -> tuple[str, _Attr] | None:
        lower = self._lower(source, inner)
        if lower is None:
            return None
        try:
            return lower, self._attr(source, lower)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise

    def _node(self, source: MountSource, inner: str) -> _Attr | None:
        """What the mount shows at ``inner``: the staged file or folder, else the base's."""
        if inner == "/":
            return _Attr(True, 0)
        try:
            st = os.lstat(self._upper(self._key(source, inner)))
        except _ABSENT:
            found = self._lower_attr(source, inner)
            return found[1] if found is not None else None
        return _Attr(stat.S_ISDIR(st.st_mode), st.st_size)

    def _merged(self, source: MountSource, inner: str) -> Generator[tuple[str, _Attr]]:
        """A folder's entries: the staged ones, then the base's not hidden or replaced, then
        those renamed into it."""
        key = self._key(source, inner)
        upper = self._upper(key)
        try:
            names = sorted(os.listdir(upper))
        except _ABSENT:
            names = []
        staged = set()
        for name in names:
            try:
                st = os.lstat(upper / name)
            except _ABSENT:
                continue
            staged.add(name)
            yield name, _Attr(stat.S_ISDIR(st.st_mode), st.st_size)
        found = self._lower_attr(source, inner)
        if found is not None and found[1].is_dir:
            for name, attr in self._list(source, found[0]):
                child = f"{key}/{name}"
                if (
                    name not in staged
                    and child not in self.whiteouts
                    and (child not in self.redirects)
                ):
                    yield name, attr
        prefix = key + "/"
        for child in sorted(k for k in list(self.redirects) if k.startswith(prefix)):
            name = child[len(prefix) :]
            if "/" in name or name in staged:
                continue
            moved = self._lower_attr(source, child[len(key) :])
            if moved is not None:
                yield name, moved[1]

    def _is_empty(self, source: MountSource, inner: str) -> bool:
        entries = self._merged(source, inner)
        try:
            return next(entries, None) is None
        finally:
            entries.close()

    def _copy_up(self, handle: _WriteHandle, keep: int | None = None) -> int:
        """Stage the committed file ``handle`` reads (its first ``keep`` bytes): an fd."""
        upper = self._upper(handle.path)
        if upper.is_file():  # another handle staged it first: share its bytes
            return os.open(upper, os.O_RDWR)
        upper.parent.mkdir(parents=True, exist_ok=True)
        base = handle.base
        assert base is not None
        stop = base.size if keep is None else min(keep, base.size)
        fd, tmp = tempfile.mkstemp(dir=self.staging / "tmp")
        try:
            for start in range(0, stop, self.block_size):
                block = self._read_commit(base, min(self.block_size, stop - start), start)
                os.pwrite(fd, block, start)
            os.rename(tmp, upper)  # whole, or not at all: a getattr never sees half of it
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.stats.add(copy_ups=1)
        return fd

    def _staged_fd(self, handle: _WriteHandle, keep: int | None = None) -> int:
        with self._ns:
            if handle.fd is None:
                handle.fd = self._copy_up(handle, keep)
            return handle.fd

    def _settle(self, key: str) -> None:
        """Stage what open handles at or below ``key`` still read from the base, so a
        rename or delete of it changes their file, not another."""
        for handle in list(self._handles.values()):
            if (
                isinstance(handle, _WriteHandle)
                and handle.fd is None
                and (handle.path == key or handle.path.startswith(key + "/"))
            ):
                handle.fd = self._copy_up(handle)

    def _remove(self, source: MountSource, inner: str) -> None:
        """Remove what the mount shows at ``inner`` (checked by the caller)."""
        key = self._key(source, inner)
        upper = self._upper(key)
        if upper.is_dir():
            shutil.rmtree(upper)
        else:
            with contextlib.suppress(FileNotFoundError):
                upper.unlink()
        in_base = self._lower_attr(source, inner) is not None
        below = key + "/"
        self.redirects = {
            k: v for k, v in self.redirects.items() if k != key and not k.startswith(below)
        }
        whiteouts = {w for w in self.whiteouts if not w.startswith(below)}
        if in_base:
            whiteouts.add(key)
        self.whiteouts = whiteouts

    def commit_now(self) -> list[StagedCommit]:
        """Commit what is staged, one commit per branch (:func:`commit_staged`), and go on
        serving on top of those commits with nothing staged (``tusk mount --commit``).
        Namespace changes wait meanwhile; InUse while a file of the mount is open through
        the staging layer (written, or being written: its bytes could change under the
        commit)."""
        with self._ns:
            with self._lock:
                busy = any(isinstance(h, _WriteHandle) for h in self._handles.values())
            if busy:
                raise InUse(
                    "a file of the mount is open for writing (or was written and is open): "
                    "close it, then commit"
                )
            done: list[StagedCommit] = []
            for name, source in list(self.sources.items()):
                result = commit_staged(self, source)
                done.append(result)
                if result.commit is None:
                    continue
                below = f"/{source.name}/"
                self.whiteouts = {w for w in self.whiteouts if not w.startswith(below)}
                self.redirects = {k: v for k, v in self.redirects.items()
                                  if not k.startswith(below)}  # fmt: skip
                shutil.rmtree(self._upper(self._key(source, "/")), ignore_errors=True)
                self.sources[name] = replace(
                    source, commit=result.commit.id, size=result.commit.size,
                    files=result.commit.files,
                )  # fmt: skip
            self._attrs.clear()  # what a path is now: the new commits say
            self._journal()
            return done

    def _journal(self) -> None:
        """Write what is staged besides files (for a person looking at a killed mount's
        staging folder; nothing reads it back)."""
        record = {
            "sources": [
                {"name": s.name, "repo": s.repo, "branch": s.branch, "base": s.commit}
                for s in self.sources.values()
            ],
            "files": str(self.upper_root),
            "deleted": sorted(self.whiteouts),
            "renamed": dict(sorted(self.redirects.items())),
        }
        path = self.staging / "changes.json"
        tmp = path.with_name("changes.json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(path)

    def _writable(self, path: str) -> tuple[MountSource, str]:
        if "/" not in path.strip("/") and path.strip("/") not in self.sources:
            _raise(errno.EACCES)  # the top folder holds the mounts only
        source, inner = self._split(path)
        assert source is not None
        return source, inner

    def _upper_stat(self, st: os.stat_result) -> dict[str, Any]:
        is_dir = stat.S_ISDIR(st.st_mode)
        return {
            "st_mode": (stat.S_IFDIR | 0o755) if is_dir else (stat.S_IFREG | 0o644),
            "st_nlink": 1,
            "st_size": 0 if is_dir else st.st_size,
            "st_blocks": 0 if is_dir else -(-st.st_size // 512),
            "st_blksize": self.block_size,
            "st_uid": self._uid,
            "st_gid": self._gid,
            "st_mtime": st.st_mtime_ns,
            "st_ctime": st.st_ctime_ns,
            "st_atime": st.st_atime_ns,
        }

    def _mode(self, attr: _Attr) -> int:
        return (stat.S_IFDIR | 0o755) if attr.is_dir else (stat.S_IFREG | 0o644)

    # Metadata

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        handle = self._handles.get(fh) if fh is not None else None
        if isinstance(handle, _WriteHandle) and handle.fd is not None:
            return self._upper_stat(os.fstat(handle.fd))
        source, inner = self._split(path)
        if source is None:
            attrs = super().getattr(path)
            attrs["st_mode"] = stat.S_IFDIR | 0o555
            return attrs
        try:
            st = os.lstat(self._upper(self._key(source, inner)))
        except _ABSENT:
            if inner == "/":
                return self._stat(_Attr(True, 0), source.mtime)
            found = self._lower_attr(source, inner)
            if found is None:
                _raise(errno.ENOENT)
            return self._stat(found[1], source.mtime)
        return self._upper_stat(st)

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self.staging)
        keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree",
                "f_favail", "f_namemax")  # fmt: skip
        return {k: getattr(st, k) for k in keys}

    def access(self, path: str, amode: int) -> int:
        attrs = self.getattr(path)
        if amode & os.W_OK and not attrs["st_mode"] & stat.S_IWUSR:
            _raise(errno.EACCES)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        self.getattr(path)
        return 0  # a commit keeps no modes: accepted, so cp -p and tar -x go through

    def chown(self, path: str, uid: int, gid: int) -> int:
        self.getattr(path)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        source, inner = self._writable(path)
        with self._ns:
            upper = self._upper(self._key(source, inner))
            if upper.exists():
                os.utime(upper, ns=times) if times is not None else os.utime(upper)
            elif self._node(source, inner) is None:
                _raise(errno.ENOENT)
        return 0  # a committed file keeps its commit's time

    def opendir(self, path: str) -> int:
        source, inner = self._split(path)
        if source is None:
            return super().opendir(path)
        node = self._node(source, inner)
        if node is None:
            _raise(errno.ENOENT)
        if not node.is_dir:
            _raise(errno.ENOTDIR)
        return self._add_handle(_DirHandle(lambda: self._merged(source, inner)))

    # Changes of the namespace

    def mkdir(self, path: str, mode: int) -> int:
        source, inner = self._writable(path)
        with self._ns:
            if self._node(source, inner) is not None:
                _raise(errno.EEXIST)
            self._upper(self._key(source, inner)).mkdir(parents=True, exist_ok=True)
        return 0

    def rmdir(self, path: str) -> int:
        source, inner = self._writable(path)
        if inner == "/":
            _raise(errno.EBUSY)
        with self._ns:
            node = self._node(source, inner)
            if node is None:
                _raise(errno.ENOENT)
            if not node.is_dir:
                _raise(errno.ENOTDIR)
            if not self._is_empty(source, inner):
                _raise(errno.ENOTEMPTY)
            self._remove(source, inner)
            self._journal()
        return 0

    def unlink(self, path: str) -> int:
        source, inner = self._writable(path)
        with self._ns:
            node = self._node(source, inner)
            if node is None:
                _raise(errno.ENOENT)
            if node.is_dir:
                _raise(errno.EISDIR)
            self._settle(self._key(source, inner))
            self._remove(source, inner)
            self._journal()
        return 0

    def rename(self, old: str, new: str) -> int:
        source, inner = self._writable(old)
        target, dst_inner = self._writable(new)
        if inner == "/" or dst_inner == "/":
            _raise(errno.EBUSY)
        if target is not source:
            _raise(errno.EXDEV)  # another branch: mv copies, then deletes
        src, dst = self._key(source, inner), self._key(source, dst_inner)
        if src == dst:
            return 0
        if dst.startswith(src + "/"):
            _raise(errno.EINVAL)
        with self._ns:
            node = self._node(source, inner)
            if node is None:
                _raise(errno.ENOENT)
            there = self._node(source, dst_inner)
            if there is not None:
                if node.is_dir and not there.is_dir:
                    _raise(errno.ENOTDIR)
                if there.is_dir and not node.is_dir:
                    _raise(errno.EISDIR)
                if there.is_dir and not self._is_empty(source, dst_inner):
                    _raise(errno.ENOTEMPTY)
            self._settle(src)
            if there is not None:
                self._settle(dst)
                self._remove(source, dst_inner)
            found = self._lower_attr(source, inner)
            upper_src, upper_dst = self._upper(src), self._upper(dst)
            staged = os.path.lexists(upper_src)
            if staged:
                upper_dst.parent.mkdir(parents=True, exist_ok=True)
                os.rename(upper_src, upper_dst)
            below = src + "/"

            def moved(key: str) -> str:
                return dst + key[len(src) :] if key.startswith(below) else key

            redirects = {moved(k): v for k, v in self.redirects.items() if k != src}
            if found is not None and (node.is_dir or not staged):
                redirects[dst] = found[0]  # a staged file holds all its bytes already
            whiteouts = {moved(w) for w in self.whiteouts}
            if found is not None:
                whiteouts.add(src)
            self.redirects, self.whiteouts = redirects, whiteouts
            for handle in list(self._handles.values()):
                if isinstance(handle, _WriteHandle):
                    handle.path = moved(handle.path) if handle.path != src else dst
            self._journal()
        return 0

    def symlink(self, target: str, source: str) -> int:
        _raise(errno.EPERM)  # a commit holds files only

    def link(self, target: str, source: str) -> int:
        _raise(errno.EPERM)

    # Data

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        source, inner = self._writable(path)
        key = self._key(source, inner)
        with self._ns:
            upper = self._upper(key)
            upper.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(upper, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.stats.add(opens=1)
        return self._add_handle(_WriteHandle(key, None, fd))

    def open(self, path: str, flags: int) -> int:
        writing = flags & os.O_ACCMODE != os.O_RDONLY or bool(flags & os.O_TRUNC)
        source, inner = self._split(path)
        if source is None or inner == "/":
            _raise(errno.EISDIR)
        key = self._key(source, inner)
        with self._ns:
            upper = self._upper(key)
            try:
                st = os.lstat(upper)
            except _ABSENT:
                st = None
            if st is not None:
                if stat.S_ISDIR(st.st_mode):
                    _raise(errno.EISDIR)
                access = os.O_RDWR if writing else os.O_RDONLY
                fd = os.open(upper, access | (flags & os.O_TRUNC))
                handle = _WriteHandle(key, None, fd)
            else:
                found = self._lower_attr(source, inner)
                if found is None:
                    _raise(errno.ENOENT)
                lower, attr = found
                if attr.is_dir:
                    _raise(errno.EISDIR)
                base = _Handle(source, lower, attr.size)
                if not writing:
                    self.stats.add(opens=1)
                    return self._add_handle(base)
                handle = _WriteHandle(key, base, None)
                if flags & os.O_TRUNC:
                    handle.fd = self._copy_up(handle, keep=0)
        self.stats.add(opens=1)
        return self._add_handle(handle)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        handle = self._handles.get(fh)
        if not isinstance(handle, _WriteHandle):
            return super().read(path, size, offset, fh)
        if handle.fd is None:
            assert handle.base is not None
            return self._read_commit(handle.base, size, offset)
        data = os.pread(handle.fd, size, offset)
        self.stats.add(reads=1, bytes_read=len(data))
        return data

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        handle = self._handles.get(fh)
        if not isinstance(handle, _WriteHandle):
            _raise(errno.EBADF)
        written = os.pwrite(self._staged_fd(handle), data, offset)
        self.stats.add(writes=1, bytes_written=written)
        return written

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        handle = self._handles.get(fh) if fh is not None else None
        if isinstance(handle, _WriteHandle):
            os.ftruncate(self._staged_fd(handle, keep=length), length)
            return 0
        source, inner = self._writable(path)
        key = self._key(source, inner)
        with self._ns:
            upper = self._upper(key)
            if upper.is_file():
                os.truncate(upper, length)
                return 0
            found = self._lower_attr(source, inner)
            if found is None:
                _raise(errno.ENOENT)
            if found[1].is_dir:
                _raise(errno.EISDIR)
            base = _Handle(source, found[0], found[1].size)
            fd = self._copy_up(_WriteHandle(key, base, None), keep=length)
            try:
                os.ftruncate(fd, length)
            finally:
                os.close(fd)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        handle = self._handles.get(fh)
        if isinstance(handle, _WriteHandle) and handle.fd is not None:
            os.fsync(handle.fd)
        return 0

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            handle = self._handles.pop(fh, None)
        if isinstance(handle, _WriteHandle) and handle.fd is not None:
            os.close(handle.fd)
        return 0

    def destroy(self, path: str) -> None:
        for handle in list(self._handles.values()):
            if isinstance(handle, _WriteHandle) and handle.fd is not None:
                with contextlib.suppress(OSError):
                    os.close(handle.fd)
        super().destroy(path)

    # What is staged

    def staged_files(self, source: MountSource) -> list[tuple[str, Path]]:
        """(path in the repo, staged file) of every file written below ``source``."""
        top = self._upper(self._key(source, "/"))
        out = []
        for folder, dirs, files in os.walk(top):
            dirs.sort()
            rel = os.path.relpath(folder, top)
            for name in sorted(files):
                full = Path(folder, name)
                if full.is_file() and not full.is_symlink():
                    out.append(("/" + (name if rel == "." else f"{rel}/{name}"), full))
        return out

    def staged_copies(self, source: MountSource, inner: str = "/") -> list[str]:
        """The staged paths a commit copies in: a folder the base has nothing at (made in the
        mount) as a whole, else file by file."""
        out = []
        folder = self._upper(self._key(source, inner))
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            path = f"{inner.rstrip('/')}/{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                if self._lower_attr(source, path) is not None:
                    out.extend(self.staged_copies(source, path))
                elif any(files for _, _, files in os.walk(entry.path)):
                    out.append(path)
            elif entry.is_file(follow_symlinks=False):
                out.append(path)
        return out


@frozen
class StagedCommit:
    """What the end of a ``--write`` mount did to one branch: ``commit`` None when nothing
    had changed."""

    source: MountSource
    commit: CommitInfo | None
    written: int
    deleted: int
    moved: int


def commit_staged(fs: StagedFS, source: MountSource) -> StagedCommit:
    """Commit what ``fs`` staged for ``source`` as one commit on its branch.

    The data goes first, where the branch does not see it: every staged file is put, in one
    ``put_files``, as the only commit of a temporary branch ``tusk-mount-<hex>`` (made
    without a parent). Then one ``modify_files`` call makes the commit on the branch, in one
    transaction (on its head as it is now: the changes are applied on top, as a ``tusk put
    file`` would; a path also changed on the branch since the mount started takes the
    mount's version), from metadata alone: each deleted or renamed path deleted, each renamed
    one copied from the base commit, each staged file or new folder copied from the
    temporary commit. So the branch moves once, or not at all: a process killed at any
    moment leaves it where it was or at the finished commit. The temporary branch and its
    commit are removed either way (one left by a killed process is named
    ``tusk-mount-*``)."""
    client = fs.client
    key = f"/{source.name}"
    below = key + "/"
    redirects = {k[len(key) :]: v for k, v in fs.redirects.items() if k.startswith(below)}
    whiteouts = {w[len(key) :] for w in fs.whiteouts if w.startswith(below)}
    files = fs.staged_files(source)
    sources_moved = set(redirects.values())  # a rename's old path: moved, not deleted
    deleted = sum(1 for w in whiteouts - sources_moved if fs._node(source, w) is None)
    if not files and not whiteouts and not redirects:
        return StagedCommit(source, None, 0, 0, 0)
    structural = sorted(whiteouts | set(redirects), key=lambda p: (p.count("/"), p))
    copies = fs.staged_copies(source) if files else []
    repo, branch = source.repo, source.branch
    description = (
        f"tusk mount --write: {len(files)} file(s) written, {deleted} path(s) deleted, "
        f"{len(redirects)} moved (base {source.commit})"
    )
    scratch: str | None = None
    scratch_commit: str | None = None
    try:
        if files:
            scratch = f"{repo}@tusk-mount-{secrets.token_hex(6)}"
            client.create_branch(scratch)
            put = client.put_files(scratch, files, description=description)
            scratch_commit = put.commit.id
        changes: list[tuple[str, ...]] = []
        for path in structural:
            changes.append(("delete", path))
            if path in redirects:
                changes.append(("copy", f"{repo}@{source.commit}:{redirects[path]}", path))
        changes += [("copy", f"{repo}@{scratch_commit}:{path}", path) for path in copies]
        done = client.modify_files(f"{repo}@{branch}", changes, description=description)
    finally:
        if scratch is not None:
            with contextlib.suppress(Exception):
                if scratch_commit is not None:
                    client.delete_commit(f"{repo}@{scratch_commit}")
                client.delete_branch(scratch)
    return StagedCommit(source, done, len(files), deleted, len(redirects))


def staging_root() -> Path:
    """Where ``--write`` mounts stage their changes unless ``--staging`` says otherwise:
    ``$XDG_CACHE_HOME/tusk/mounts`` (``~/.cache/tusk/mounts``). Its ``active/`` folder
    records each running write mount, for ``tusk unmount`` to wait for its commit."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "tusk" / "mounts"


def make_staging(parent: str | os.PathLike[str] | None = None) -> Path:
    """A new, empty staging folder for one mount, below ``parent`` (default
    :func:`staging_root`)."""
    root = Path(parent).expanduser().absolute() if parent is not None else staging_root()
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="mount-", dir=root))


def _registry(mountpoint: str | os.PathLike[str]) -> Path:
    digest = hashlib.sha256(os.path.abspath(mountpoint).encode()).hexdigest()[:20]
    return staging_root() / "active" / f"{digest}.json"


def _read_registry(mountpoint: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = json.loads(_registry(mountpoint).read_text())
    except (OSError, ValueError):
        return None
    return found


def _write_registry(mountpoint: str | os.PathLike[str], record: dict[str, Any]) -> None:
    path = _registry(mountpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record) + "\n")
    tmp.replace(path)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


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
    staging: str | os.PathLike[str] | None = None,
    on_commit: Callable[[StagedCommit], None] | None = None,
) -> dict[str, int]:
    """Mount ``sources`` at ``mountpoint`` and serve it in this thread until it is
    unmounted (``tusk unmount``, ``fusermount3 -u``) or the process gets SIGINT, SIGTERM or
    SIGHUP (libfuse then unmounts it itself). Returns the counters (written as JSON to
    ``stats_path`` too). ``on_ready`` runs once the kernel has the mount.

    Read-only, unless ``staging`` (a folder of :func:`make_staging`) is given: then the mount
    is writable (:class:`StagedFS`, every source a branch) and, once unmounted, what was
    changed below each source becomes one commit on its branch (:func:`commit_staged`,
    ``on_commit`` called with each result). The staging folder is removed when every commit
    succeeded and kept, with the error raised, when one failed. A killed process commits
    nothing: its staged files stay in the staging folder."""
    fuse = load_fuse()
    mp = check_mountpoint(mountpoint)
    mounted = threading.Event()

    def ready() -> None:
        mounted.set()
        if on_ready is not None:
            on_ready()

    fs: CommitFS
    _registry(mp).unlink(missing_ok=True)  # left by a killed write mount here: stale now
    if staging is None:
        fs = CommitFS(client, sources, cache_size, block_size, ready)
    else:
        fs = StagedFS(client, sources, Path(staging), cache_size, block_size, ready)
        _write_registry(mp, {"pid": os.getpid(), "mountpoint": str(mp), "staging": str(staging)})
    timeout = TIMEOUT if staging is None else 1.0  # a writable tree changes
    fs.warm_up()
    stop = threading.Event()
    server: threading.Thread | None = None
    if isinstance(fs, StagedFS):
        for stale in _control(mp):
            stale.unlink(missing_ok=True)
        server = threading.Thread(
            target=_serve_commits, args=(fs, mp, stop, on_commit), name="tusk-mount-commit",
            daemon=True,
        )  # fmt: skip
        server.start()
    try:
        fuse.FUSE(
            fs,
            str(mp),
            foreground=True,
            debug=debug,
            ro=staging is None,
            fsname="tusk",
            subtype="tusk",
            default_permissions=True,
            kernel_cache=staging is None,
            hard_remove=True,  # a file deleted while open is gone, not renamed .fuse_hidden*
            attr_timeout=timeout,
            entry_timeout=timeout,
            negative_timeout=timeout,
        )
    except RuntimeError as exc:
        # fuse_main's status: 8 when its loop ended on a signal (SIGINT, SIGTERM: it has
        # unmounted then, as asked); another before the mount came up means it was refused
        if not mounted.is_set():
            if staging is not None:
                _registry(mp).unlink(missing_ok=True)
            raise TuskError(f"cannot mount at {mp}: libfuse failed (status {exc})") from None
    finally:
        stop.set()
        if server is not None:
            server.join()  # a commit it is making ends before the last one starts
    counts = fs.stats.snapshot()
    counts["cache_bytes"] = fs.cache.bytes
    if stats_path is not None:
        target = Path(stats_path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(counts, indent=2) + "\n")
        tmp.replace(target)
    if isinstance(fs, StagedFS):
        _commit_all(fs, mp, on_commit)
    return counts


def _serve_commits(
    fs: StagedFS, mp: Path, stop: threading.Event, on_commit: Callable[[StagedCommit], None] | None
) -> None:
    """Answer ``tusk mount --commit`` (:func:`commit_mount`) while mounted: a request file
    beside the mount's record, polled; the outcome written beside it."""
    request, answer = _control(mp)
    while not stop.wait(0.1):
        try:
            nonce = request.read_text().strip()
        except OSError:
            continue
        request.unlink(missing_ok=True)
        record: dict[str, Any] = {"nonce": nonce}
        try:
            done = fs.commit_now()
            record["results"] = [_result(d) for d in done]
            if on_commit is not None:
                for d in done:
                    on_commit(d)
        except TuskError as exc:
            record["error"] = exc.shown()
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        tmp = answer.with_name(f"{answer.name}.tmp")
        tmp.write_text(json.dumps(record) + "\n")
        tmp.replace(answer)


def _control(mp: str | os.PathLike[str]) -> tuple[Path, Path]:
    path = _registry(mp)
    return path.with_suffix(".commit"), path.with_suffix(".committed")


def _result(done: StagedCommit) -> dict[str, Any]:
    return {"given": done.source.given, "repo": done.source.repo, "branch": done.source.branch,
            "commit": done.commit.id if done.commit is not None else None,
            "written": done.written, "deleted": done.deleted, "moved": done.moved}  # fmt: skip


def commit_mount(path: str | os.PathLike[str], timeout: float = 600.0) -> list[dict[str, Any]]:
    """Ask the ``--write`` mount at ``path`` to commit what it staged now and stay mounted
    (``tusk mount --commit``); one result per branch, as :func:`unmount` gives them.
    InvalidArgument if nothing (or a read-only mount) is mounted there, InUse while a file is
    open for writing in it, TuskError if the commit failed (nothing staged is lost: it stays
    staged) or the mount process ended first."""
    mp = os.path.abspath(path)
    if not is_mounted(mp):
        raise InvalidArgument(f"{mp} is not mounted")
    writer = _read_registry(mp)
    if writer is None or writer.get("done"):
        raise InvalidArgument(f"{mp} is not a --write mount: there is nothing to commit")
    pid = int(writer["pid"])
    if not _alive(pid):
        raise TuskError(f"the mount process of {mp} is gone: nothing can be committed")
    request, answer = _control(mp)
    nonce = secrets.token_hex(8)
    answer.unlink(missing_ok=True)
    tmp = request.with_name(f"{request.name}.{os.getpid()}.tmp")
    tmp.write_text(nonce + "\n")
    tmp.replace(request)
    end = time.monotonic() + timeout
    while True:
        try:
            got: dict[str, Any] = json.loads(answer.read_text())
        except (OSError, ValueError):
            got = {}
        if got.get("nonce") == nonce:
            answer.unlink(missing_ok=True)
            break
        if not _alive(pid):
            raise TuskError(f"the mount process of {mp} ended before it committed")
        if time.monotonic() > end:
            request.unlink(missing_ok=True)
            raise TuskError(f"the mount at {mp} did not commit within {timeout:g}s")
        time.sleep(0.05)
    if "error" in got:
        error = str(got["error"])
        if "open for writing" in error:
            raise InUse(error)
        raise TuskError(f"not committed: {error} (the changes stay staged)")
    results: list[dict[str, Any]] = got["results"]
    return results


def _commit_all(fs: StagedFS, mp: Path, on_commit: Callable[[StagedCommit], None] | None) -> None:
    """One commit per source, in order; the outcome recorded for ``tusk unmount``."""
    results: list[dict[str, Any]] = []
    record: dict[str, Any] = {"pid": os.getpid(), "mountpoint": str(mp),
                              "staging": str(fs.staging), "results": results}  # fmt: skip
    try:
        for source in fs.sources.values():
            done = commit_staged(fs, source)
            shutil.rmtree(fs._upper(fs._key(source, "/")), ignore_errors=True)
            results.append(_result(done))
            if on_commit is not None:
                on_commit(done)
    except BaseException as exc:
        shown = exc.shown() if isinstance(exc, TuskError) else f"{type(exc).__name__}: {exc}"
        _write_registry(mp, record | {"error": shown, "done": True})
        raise
    shutil.rmtree(fs.staging, ignore_errors=True)
    _write_registry(mp, record | {"done": True})
