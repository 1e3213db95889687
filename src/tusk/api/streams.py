"""Request bodies as blocking streams for worker threads, and downloads as byte iterators.

An upload runs ``PfsService.put_files`` on a worker thread that reads the body through a
:class:`BodyPipe`: a task on the event loop receives the body into a small bounded buffer
(``LIMIT``) while the worker chunks, hashes and stores what came before. When the buffer is
full the task stops receiving, so the socket's flow control holds the client back: a slow
store slows the client down, and never more than about ``LIMIT`` bytes of a body are held.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from tusk.api.wire import BLOCK, tar_end, tar_header, tar_member_parts, tar_padding
from tusk.errors import InvalidArgument, TuskError
from tusk.pfs.sources import BytesSource, StreamSource

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from tusk.pfs.service import PfsService
    from tusk.pfs.tree import FileEntry


T = TypeVar("T")
SMALL = 1 << 20  # tar members up to this size are read whole
LIMIT = 4 << 20  # bytes of a request body received ahead of the worker, at most


class ClientGone(Exception):
    """The client closed the connection before sending the whole body."""


class BodyPipe(io.RawIOBase):
    """The request body: received by :meth:`fill` on the event loop, read by a worker thread.

    After the worker is done (or failed), :meth:`discard` makes ``fill`` drop the rest of the
    body, so that the client, still sending, gets to read the answer.
    """

    def __init__(self, receive: Receive, limit: int = LIMIT) -> None:
        self._receive = receive
        self._limit = limit
        self._parts: deque[memoryview] = deque()
        self._held = 0
        self._cond = threading.Condition()
        self._room = asyncio.Event()  # set by the worker when the buffer has room again
        self._loop = asyncio.get_running_loop()
        self._producer_waiting = False
        self._discard = False
        self.done = False  # the whole body has been received
        self.gone = False  # the client went away first

    def readable(self) -> bool:
        return True

    async def fill(self) -> None:
        """Receive the body into the buffer (the event loop side); returns at its end."""
        try:
            await self._fill()
        finally:  # a disconnect, or this task cancelled as the server stops
            with self._cond:
                if not self.done:
                    self.gone = True
                self._cond.notify_all()

    async def _fill(self) -> None:
        while not self.done:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            with self._cond:
                if not message.get("more_body", False):
                    self.done = True
                if body and not self._discard:
                    self._parts.append(memoryview(body))
                    self._held += len(body)
                self._cond.notify_all()
                full = self._held >= self._limit and not self._discard and not self.done
                if full:
                    self._producer_waiting = True
                    self._room.clear()
            if full:
                await self._room.wait()

    def _wake_producer(self) -> None:
        # Called with the lock held, from the worker thread.
        if self._producer_waiting:
            self._producer_waiting = False
            self._loop.call_soon_threadsafe(self._room.set)

    def readinto(self, b: WriteableBuffer) -> int:
        view = memoryview(b).cast("B")
        with self._cond:
            while not self._parts:
                if self.gone:
                    raise ClientGone("the client closed the connection mid-upload")
                if self.done:
                    return 0
                self._cond.wait()
            n = 0
            while self._parts and n < len(view):
                head = self._parts[0]
                k = min(len(head), len(view) - n)
                view[n : n + k] = head[:k]
                n += k
                if k == len(head):
                    self._parts.popleft()
                else:
                    self._parts[0] = head[k:]
            self._held -= n
            if self._held < self._limit:
                self._wake_producer()
            return n

    def discard(self) -> None:
        """The worker is done: drop what is buffered and whatever else arrives."""
        with self._cond:
            self._discard = True
            self._parts.clear()
            self._held = 0
            self._wake_producer()


def reader(body: BodyPipe, length: int | None = None) -> io.BufferedReader:
    """The body as a buffered stream: the chunker and tarfile want full reads, and
    BufferedReader loops over short ones.

    Its buffer is ``BLOCK`` at most, and no larger than the body when ``length`` (its
    Content-Length) is known: a 1 MiB buffer for every small put, held while the put waits
    for the write lock, was the largest transient allocation tracemalloc found in the server
    under load (``bench/bench_load.py``: ~40 such buffers, 40 MiB, at one moment), and large
    blocks freed by many threads are what leaves glibc's arenas fragmented.
    """
    size = BLOCK if length is None else max(io.DEFAULT_BUFFER_SIZE, min(BLOCK, length))
    return io.BufferedReader(body, buffer_size=size)


async def with_body(request: Request, work: Callable[[io.BufferedReader], T]) -> T | Response:
    """Run ``work`` on a worker thread, reading the request body as a stream (a
    :class:`BodyPipe`); 499 when the client went away before sending all of it."""
    body = BodyPipe(request.receive)
    filling = asyncio.ensure_future(body.fill())
    try:
        return await run_in_threadpool(lambda: work(reader(body, content_length(request.headers))))
    except ClientGone:
        return Response(status_code=499)  # nobody is listening; nothing was committed
    finally:
        body.discard()
        await filling  # the rest of the body, dropped: the client then reads the answer


def content_length(headers: Mapping[str, str]) -> int | None:
    """The request's Content-Length, or None when absent or not a number (chunked)."""
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def tar_items(stream: Any, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path segments, source) for each regular file of a tar stream, read as it goes."""
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115 - the with below closes it
    except tarfile.TarError as exc:
        raise InvalidArgument(f"the request body is not a tar stream: {exc}") from exc
    with tar:
        while True:
            try:
                member = tar.next()
            except tarfile.TarError as exc:
                raise InvalidArgument(f"damaged tar stream: {exc}") from exc
            if member is None:
                return
            if member.isdir():
                continue
            if not member.isreg():
                raise InvalidArgument(
                    f"tar member {member.name!r} is not a regular file or directory "
                    "(links and devices cannot be put)"
                )
            fileobj = tar.extractfile(member)
            if fileobj is None:  # pragma: no cover - isreg() members always have one
                continue
            parts = (*prefix, *tar_member_parts(member.name))
            if member.size <= SMALL:
                # Small files are cut from memory: a stream costs the chunker a buffer each.
                yield parts, BytesSource(fileobj.read())
            else:
                yield parts, StreamSource(cast(BinaryIO, fileobj))


def batched(pieces: Iterator[bytes], size: int = BLOCK) -> Iterator[bytes]:
    """Small pieces (tar headers, tiny files) joined up to ``size``: fewer thread hops."""
    held: list[bytes] = []
    n = 0
    for piece in pieces:
        held.append(piece)
        n += len(piece)
        if n >= size:
            yield b"".join(held)
            held, n = [], 0
    if held:
        yield b"".join(held)


def tar_stream(pfs: PfsService, files: Iterator[tuple[str, FileEntry]]) -> Iterator[bytes]:
    """A tar stream of every (path, entry), as ``Client.get_tar`` writes it."""
    return batched(_tar_pieces(pfs, files))


def _tar_pieces(pfs: PfsService, files: Iterator[tuple[str, FileEntry]]) -> Iterator[bytes]:
    written = 0
    for path, entry in files:
        header = tar_header(path.lstrip("/"), entry.size)
        yield header
        sent = 0
        for block in pfs.read_entry(entry):
            sent += len(block)
            yield block
        if sent != entry.size:
            raise TuskError(f"{path} has {sent} bytes, its entry says {entry.size}")
        pad = tar_padding(entry.size)
        if pad:
            yield pad
        written += len(header) + entry.size + len(pad)
    yield tar_end(written)
