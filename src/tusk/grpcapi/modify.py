"""One ``ModifyFile`` stream's changes to one commit, applied as they arrive.

The SDK sends ``set_commit``, then per file ``delete_file(path)`` (unless appending),
``add_file(path, raw=b"")`` and ``add_file(path, raw=<~19 MiB>)``... A file's bytes are held
until they pass :data:`STREAM_AT`: a small file joins a batch that becomes one ``put_files``
(one pack, one transaction for thousands of files); a big one is streamed into the chunk
store while it arrives (a ``put_files`` on a thread reading from a queue), so memory stays at
a few messages and no byte is written twice.

A path deleted and then added is replaced; added without a delete it is appended to when it
exists (Pachyderm's semantics); a delete of a missing path does nothing. A stream to a branch
becomes one new commit, finished at its end; to an open commit, its changes join it. A
stream that breaks off ends the file it was sending without storing it, and a commit it
opened is dropped.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any, BinaryIO, cast

from tusk.errors import BranchNotFound, CommitNotFound, FileNotFound
from tusk.ids import is_commit_id
from tusk.pfs.refs import Address
from tusk.pfs.service import PfsService
from tusk.pfs.sources import BytesSource, Source, StreamSource, UrlSource

STREAM_AT = 8 << 20  # a file's bytes held before it is streamed instead of batched
BATCH_BYTES = 64 << 20  # a batch is put once it holds this much


class _Pipe:
    """A file-like reader over the bytes a ModifyFile stream sends for one file: each block is
    read where it lies (no copy of what is left of it per read)."""

    def __init__(self) -> None:
        self.blocks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=1)
        self.block = memoryview(b"")
        self.at = 0

    def _next(self) -> bool:
        """The next block, once this one is read; False at the end."""
        while self.at >= len(self.block):
            block = self.blocks.get()
            if block is None:
                self.block, self.at = memoryview(b""), 0
                return False
            if isinstance(block, BaseException):
                raise block
            self.block, self.at = memoryview(block), 0
        return True

    def read(self, n: int = -1) -> bytes:
        if not self._next():
            return b""
        end = len(self.block) if n < 0 else min(len(self.block), self.at + n)
        out = self.block[self.at : end].tobytes()
        self.at = end
        return out

    def readinto(self, buf: Any) -> int:
        if not self._next():
            return 0
        target = memoryview(buf).cast("B")
        k = min(len(target), len(self.block) - self.at)
        target[:k] = self.block[self.at : self.at + k]
        self.at += k
        return k


class Writer:
    """Applies one commit's part of a ModifyFile stream (see the module's docstring)."""

    def __init__(self, pfs: PfsService, repo: str, ref: str) -> None:
        self.pfs, self.repo = pfs, repo
        self.opened: str | None = None
        if not self._is_commit(ref):  # a branch (made now if new): one commit for the stream
            try:
                head = pfs.inspect_branch(repo, ref).head
            except BranchNotFound:
                head = None
            if head is None or pfs.inspect_commit(repo, head).state == "finished":
                self.opened = pfs.start_commit(repo, ref).id
        self.target = self.opened or ref
        self.batch: list[tuple[str, Source]] = []
        self.batch_bytes = 0
        self.batch_paths: set[str] = set()
        self.batch_append = False
        self.pending_delete: str | None = None
        self.path: str | None = None  # the file being received
        self.replace = False
        self.held = bytearray()
        self.pipe: _Pipe | None = None
        self.streaming: threading.Thread | None = None
        self.stream_error: BaseException | None = None
        self.tree: bytes | None = None  # the target's tree, until the next write

    def _is_commit(self, ref: str) -> bool:
        if not is_commit_id(ref):
            return False
        try:
            self.pfs.inspect_commit(self.repo, ref)
        except CommitNotFound:
            return False
        return True

    # What the stream asks

    def add(self, path: str, data: bytes) -> None:
        if path != self.path:
            self._end_file()
            self.replace = self._settle_delete(path)
            self.path = path
        if self.pipe is not None:
            self._send(data)
            return
        self.held += data
        if len(self.held) > STREAM_AT:
            self._start_stream()

    def add_url(self, path: str, url: str) -> None:
        self._end_file()
        replace = self._settle_delete(path)
        self._queue(path, UrlSource(url), 0, not replace and self._exists(path))

    def delete(self, path: str) -> None:
        self._end_file()
        self._settle_delete(None)
        self.pending_delete = path

    def copy(self, src: Address, dst: str) -> None:
        self._end_file()
        self._settle_delete(None)
        self._flush()
        self.pfs.copy_file(src, self.repo, self.target, dst)
        self.tree = None

    def finish(self) -> None:
        self._end_file()
        self._settle_delete(None)
        self._flush()
        if self.opened is not None:
            self.pfs.finish_commit(self.repo, self.opened)
            self.opened = None

    def abort(self, cause: BaseException) -> None:
        """The stream broke off: the file under way is not stored; an opened commit goes."""
        if self.pipe is not None and self.streaming is not None:
            self.pipe.blocks.put(cause)
            self.streaming.join()
        if self.opened is not None:
            self.pfs.drop_open_commit(self.opened)
            self.opened = None

    # Inside

    def _settle_delete(self, path: str | None) -> bool:
        """Apply the delete the stream sent last, unless ``path`` is added right after it
        (then the put replaces it); whether it was so."""
        pending, self.pending_delete = self.pending_delete, None
        if pending is not None and pending != path:
            self._delete(pending)
        return pending is not None and pending == path

    def _delete(self, path: str) -> None:
        self._flush()
        with contextlib.suppress(FileNotFound):  # as Pachyderm: nothing to delete
            self.pfs.delete_files(self.repo, self.target, [path])
        self.tree = None

    def _exists(self, path: str) -> bool:
        """Whether ``path`` is in the target as last written (read once per write)."""
        if self.tree is None:
            self.tree = self.pfs.resolve_commit(self.repo, self.target).tree
        return self.pfs.tree_kind(self.tree, path) is not None

    def _end_file(self) -> None:
        """The file under way is complete: into the batch, or its stream ends."""
        path, self.path = self.path, None
        if path is None:
            return
        if self.pipe is not None:
            assert self.streaming is not None
            self._send(None)
            self.streaming.join()
            self.pipe = self.streaming = None
            self.tree = None
            if self.stream_error is not None:
                raise self.stream_error
            return
        data, self.held = bytes(self.held), bytearray()
        append = not self.replace and self._exists(path)
        self._queue(path, BytesSource(data), len(data), append)

    def _queue(self, path: str, source: Source, size: int, append: bool) -> None:
        if self.batch and (append != self.batch_append or path in self.batch_paths):
            self._flush()
        self.batch_append = append
        self.batch.append((path, source))
        self.batch_paths.add(path)
        self.batch_bytes += size
        if self.batch_bytes >= BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.batch:
            items, self.batch, self.batch_bytes = list(self.batch), [], 0
            self.batch_paths.clear()
            self.pfs.put_files(self.repo, self.target, items, append=self.batch_append)
            self.tree = None

    def _start_stream(self) -> None:
        assert self.path is not None
        self._flush()
        path, append = self.path, not self.replace and self._exists(self.path)
        pipe = self.pipe = _Pipe()
        first, self.held = bytes(self.held), bytearray()
        self.stream_error = None

        def put() -> None:
            try:
                source = StreamSource(cast(BinaryIO, pipe))
                self.pfs.put_files(self.repo, self.target, [(path, source)], append=append)
            except BaseException as exc:  # told to the stream's thread at its next block
                self.stream_error = exc

        self.streaming = threading.Thread(target=put, name="tusk-grpc-put", daemon=True)
        self.streaming.start()
        self._send(first)

    def _send(self, item: bytes | None) -> None:
        """Hand a block (None: the end) to the put under way; its error, if it failed."""
        assert self.pipe is not None
        while True:
            if self.stream_error is not None:
                raise self.stream_error
            try:
                self.pipe.blocks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
