"""Lazy inputs (``input.pfs.lazy: true``, as in Pachyderm's spec): a datum's files of such an
input are not copied out before it runs; they appear at ``/pfs/<input>`` through a read-only
FUSE view, and only the chunks a datum reads are fetched (issue 23). A datum that reads 1 KiB
of a 10 GiB file fetches the chunk or two holding it, not 10 GiB.

One view serves a batch of datums (a process of the scheduler, or a Dask worker): its tree
holds exactly each datum's files, under ``/<datum>/<input>/<path>``, and each datum's
``/pfs/<input>`` is that datum's folder (a link the sandbox binds), so a datum sees the files
its glob gave it and no others, as with copied inputs. The view is served by this process
(mfusepy over libfuse 3, as ``tusk mount``: tusk.fuse) from the same store the batch reads, on
its own threads; the kernel caches what was read (``kernel_cache``: a datum's input never
changes), and each file is read through a :class:`tusk.storage.spans.SpanReader`, which keeps
the chunk a read ended in, so a program reading a file in 128 KiB calls does not fetch a chunk
many times.

What each datum read and fetched is added to its log (``tusk logs``): ``lazy inputs: read N
bytes; fetched K chunks (M bytes)``. Where FUSE is not available (no ``fusermount3``, no
``/dev/fuse``), the files are copied as for any input and the log says so: lazy is a saving,
never a reason for a datum to fail.

Limits: libfuse installs its SIGTERM and SIGHUP handlers while a view is mounted where the
process has none of its own (``tusk up`` and ``tusk worker`` have theirs; a plain embedded
process may not): a SIGTERM then ends the view, and the datums reading it fail and are
retried, instead of the process ending at once. A process killed with SIGKILL leaves its
view mounted but dead; ``tusk gc`` and the next scheduler of this host unmount and remove
it with the rest of the dead process's scratch folder.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tusk import fuse
from tusk.errors import TuskError
from tusk.pfs.tree import FileEntry
from tusk.storage.spans import SpanReader

if TYPE_CHECKING:
    from tusk.pfs import PfsService

READY_TIMEOUT = 20.0


class _File:
    __slots__ = ("entry", "reader")

    def __init__(self, entry: FileEntry) -> None:
        self.entry = entry
        self.reader: SpanReader | None = None  # made on the first read


class LazyView:
    """A read-only FUSE view of datums' input files, mounted at ``mountpoint`` while open:
    ``add`` every file, then ``start()``; ``folder(datum, input)`` is what a datum's
    ``/pfs/<input>`` shows; ``stats_line(datum)`` what it read; ``stop()`` unmounts."""

    use_ns = True  # times in nanoseconds (mfusepy's current API)

    def __init__(self, pfs: PfsService, mountpoint: Path) -> None:
        self.pfs = pfs
        self.mountpoint = Path(mountpoint)
        self._files: dict[str, _File] = {}
        self._dirs: dict[str, set[str]] = {"/": set()}
        self._read: dict[str, int] = {}  # datum -> bytes its program read
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None
        self._now = int(time.time() * 1e9)
        self._uid, self._gid = os.getuid(), os.getgid()

    # Building

    def add(self, datum: str, input_name: str, path: str, entry: FileEntry | None) -> None:
        """File ``path`` of input ``input_name`` for datum (folder) ``datum``; ``entry`` None
        for an empty file (an input with ``empty_files``: never lazy, but harmless)."""
        self._read.setdefault(datum, 0)
        full = f"/{datum}/{input_name}{path}"
        self._files[full] = _File(entry or FileEntry(0, b"", ()))
        child = full
        while child != "/":
            parent, _, name = child.rpartition("/")
            parent = parent or "/"
            self._dirs.setdefault(parent, set()).add(name)
            child = parent

    def folder(self, datum: str, input_name: str) -> Path:
        return self.mountpoint / datum / input_name

    def has_input(self, datum: str, input_name: str) -> bool:
        return f"/{datum}/{input_name}" in self._dirs

    def stats_line(self, datum: str) -> str:
        """What datum ``datum`` read, and the chunks that cost (for its log)."""
        below = f"/{datum}/"
        readers = [f.reader for k, f in self._files.items() if k.startswith(below) and f.reader]
        chunks = sum(r.fetched_chunks for r in readers)
        fetched = sum(r.fetched_bytes for r in readers)
        return (
            f"lazy inputs: read {self._read.get(datum, 0):,} bytes; fetched {chunks} chunks "
            f"({fetched:,} bytes)"
        )

    # Life cycle

    def start(self) -> None:
        """Mount the view and serve it on a thread of this process; ToolMissing where FUSE
        is not available, TuskError if it did not come up."""
        binding = fuse.load_fuse()
        self.mountpoint.mkdir(parents=True, exist_ok=True)

        def serve() -> None:
            try:
                binding.FUSE(
                    self, str(self.mountpoint), foreground=True, ro=True, fsname="tusk-lazy",
                    subtype="tusk", default_permissions=True, kernel_cache=True,
                    attr_timeout=3600.0, entry_timeout=3600.0, negative_timeout=3600.0,
                )  # fmt: skip
            except BaseException as exc:  # reported by start(), or ignored at stop()
                self._failed = exc
            finally:
                self._ready.set()

        self._thread = threading.Thread(target=serve, name="tusk-lazy", daemon=True)
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT) or self._failed is not None:
            self.stop()
            raise TuskError(f"cannot mount the lazy inputs at {self.mountpoint}: {self._failed}")
        if not fuse.is_mounted(self.mountpoint):
            self.stop()
            raise TuskError(f"cannot mount the lazy inputs at {self.mountpoint}")

    def stop(self) -> None:
        """Unmount (lazily if a datum process still holds a file) and stop serving."""
        if self._thread is None:
            return
        if fuse.is_mounted(self.mountpoint):
            fuse.detach(self.mountpoint)
        self._thread.join(READY_TIMEOUT)
        self._thread = None

    # FUSE operations (mfusepy calls them on its threads)

    def init(self, path: str) -> None:
        self._ready.set()

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        if path in self._dirs:
            return self._stat(stat.S_IFDIR | 0o555, 0)
        found = self._files.get(path)
        if found is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        return self._stat(stat.S_IFREG | 0o444, found.entry.size)

    def readdir(self, path: str, fh: int) -> list[str]:
        names = self._dirs.get(path)
        if names is None:
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        return [".", "..", *sorted(names)]

    def access(self, path: str, amode: int) -> int:
        if amode & os.W_OK:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        self.getattr(path)
        return 0

    def open(self, path: str, flags: int) -> int:
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        if path in self._dirs:
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        if path not in self._files:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        f = self._files.get(path)
        if f is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        if f.reader is None:
            with self._lock:
                if f.reader is None:
                    f.reader = SpanReader(self.pfs.chunks, self.pfs.reader().chunks(f.entry))
        try:
            data = f.reader.read(offset, offset + size)
        except TuskError as exc:  # a chunk that cannot be read: the datum gets EIO
            raise OSError(errno.EIO, f"{path}: {exc.message}") from None
        datum = path.split("/", 2)[1]
        with self._lock:
            self._read[datum] += len(data)
        return data

    def release(self, path: str, fh: int) -> int:
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    def _stat(self, mode: int, size: int) -> dict[str, Any]:
        return {
            "st_mode": mode,
            "st_nlink": 1,
            "st_size": size,
            "st_blocks": -(-size // 512),
            "st_uid": self._uid,
            "st_gid": self._gid,
            "st_mtime": self._now,
            "st_ctime": self._now,
            "st_atime": self._now,
        }
