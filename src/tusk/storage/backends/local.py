"""A folder on the local disk as an object backend."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tusk.errors import InvalidArgument, StorageError
from tusk.storage.backends.base import ObjectBackend, ObjectInfo


class LocalBackend(ObjectBackend):
    """Objects are files under ``root``; a put writes a temp file, fsyncs it and renames it."""

    _MAX_OPEN = 64

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts) or "\0" in key:
            raise InvalidArgument(f"invalid object key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes | memoryview) -> None:
        self.put_parts(key, [data])

    def put_parts(
        self,
        key: str,
        parts: Sequence[bytes | memoryview],
        durable: bool = True,
        sync_soon: bool = False,
    ) -> None:
        self._write(key, [parts], durable, sync_soon)

    def put_stream(
        self,
        key: str,
        blocks: Iterable[bytes | memoryview],
        size: int | None = None,
        durable: bool = True,
    ) -> None:
        self._write(key, ([block] for block in blocks), durable, False)

    def _write(
        self,
        key: str,
        batches: Iterable[Sequence[bytes | memoryview]],
        durable: bool,
        sync_soon: bool,
    ) -> None:
        """Write a temporary file batch by batch (each with as few syscalls as writev allows),
        then rename it into place: a reader sees the whole object or none."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                for batch in batches:
                    _write_all(fd, batch)
                if durable:
                    os.fsync(fd)
                elif sync_soon:
                    _start_writeback(fd)
            finally:
                os.close(fd)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)

    def sync(self, keys: Sequence[str]) -> None:
        # One syncfs flushes the disk once; an fsync per object costs a flush each, which
        # on virtual disks halves the write rate of a large upload.
        if not keys:
            return
        if _syncfs(self.root):
            return
        dirs = set()
        for key in keys:
            path = self._path(key)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            dirs.add(path.parent)
        for d in dirs:
            _fsync_dir(d)

    def _fd(self, key: str) -> int:
        with self._lock:
            fd = self._fds.get(key)
            if fd is not None:
                self._fds.move_to_end(key)
                return fd
            try:
                fd = os.open(self._path(key), os.O_RDONLY)
            except FileNotFoundError as exc:
                raise StorageError(f"object {key!r} is missing from {self.url}") from exc
            self._fds[key] = fd
            while len(self._fds) > self._MAX_OPEN:
                _, old = self._fds.popitem(last=False)
                os.close(old)
            return fd

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise StorageError(f"object {key!r} is missing from {self.url}") from exc

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        data = os.pread(self._fd(key), length, offset)
        if len(data) != length:
            raise StorageError(f"object {key!r} is shorter than expected ({offset}+{length} bytes)")
        return data

    def read_into(self, key: str, offset: int, buffers: Sequence[memoryview]) -> None:
        """Fill ``buffers`` in turn with the object's bytes from ``offset`` on, straight into
        the caller's memory (one preadv, no bytes object in between): the reader behind
        ``tusk sql`` puts each chunk in its place in the answer this way. StorageError if
        the object ends first."""
        fd = self._fd(key)
        pending = [b for b in buffers if len(b)]
        while pending:
            batch = pending[:_IOV_MAX]
            if _HAS_PREADV:
                got = os.preadv(fd, batch, offset)
            else:  # a platform without preadv: one pread per buffer
                data = os.pread(fd, len(batch[0]), offset)
                batch[0][: len(data)] = data
                got = len(data)
            if got == 0:
                raise StorageError(f"object {key!r} is shorter than expected (at byte {offset})")
            offset += got
            # Drop what was filled; a short read leaves the rest of a buffer for the next call.
            i = 0
            while i < len(batch) and got >= len(batch[i]):
                got -= len(batch[i])
                i += 1
            pending = pending[i:]
            if got:
                pending[0] = pending[0][got:]

    def delete(self, key: str) -> None:
        with self._lock:
            fd = self._fds.pop(key, None)
            if fd is not None:
                os.close(fd)
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = full.stat()
                    yield ObjectInfo(key, st.st_size, st.st_mtime)

    def remove_stale_temp(self, older_than: float) -> int:
        removed = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                full = Path(dirpath) / name
                if name.startswith(".tmp-") and full.stat().st_mtime < older_than:
                    full.unlink(missing_ok=True)
                    removed += 1
        return removed

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


_IOV_MAX = 1024
_HAS_PREADV = hasattr(os, "preadv")


def _write_all(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    """Write every buffer with as few syscalls as writev allows.

    A pack of 4 KiB chunks is thousands of buffers; one write each from the I/O thread
    would hand the GIL back and forth thousands of times and stall the thread that chunks.
    """
    pending = [memoryview(p) for p in parts if len(p)]
    while pending:
        batch = pending[:_IOV_MAX]
        written = os.writev(fd, batch)
        # Drop what was written; a short write leaves the rest of a buffer for the next call.
        i = 0
        while i < len(batch) and written >= len(batch[i]):
            written -= len(batch[i])
            i += 1
        pending = pending[i:]
        if written:
            pending[0] = pending[0][written:]


def _fsync_dir(path: Path) -> None:
    dfd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


_SYNC_FILE_RANGE_WRITE = 2


def _libc() -> ctypes.CDLL | None:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def _start_writeback(fd: int) -> None:
    """Ask Linux to start writing the file to disk now, without waiting (sync_file_range).

    The later :meth:`LocalBackend.sync` then finds little left to flush, so the disk works
    while the CPU chunks the next packs instead of after the whole upload.
    """
    if _LIBC is not None:
        with contextlib.suppress(AttributeError):
            _LIBC.sync_file_range(
                fd, ctypes.c_longlong(0), ctypes.c_longlong(0), _SYNC_FILE_RANGE_WRITE
            )


def _syncfs(path: Path) -> bool:
    """Linux syncfs(2) on the filesystem holding ``path``; False where unavailable."""
    if _LIBC is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return bool(_LIBC.syncfs(fd) == 0)
    except AttributeError:
        return False
    finally:
        os.close(fd)
