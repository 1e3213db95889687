"""Where data for ``put file`` comes from: a local file, a stream (stdin), bytes or a URL."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from tusk.errors import SourceError
from tusk.pfs.sourcetext import is_url, local_error
from tusk.storage.chunks import ChunkRef, ChunkWriter, Progress, Readable
from tusk.values import frozen

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class _Chain:
    """``prefix`` then ``inner``, as one ``read(n)`` stream (used to re-chunk an append)."""

    def __init__(self, prefix: bytes, inner: Readable) -> None:
        self._prefix = prefix
        self._inner = inner

    def read(self, n: int = -1, /) -> bytes:
        if self._prefix:
            out = self._prefix if n < 0 else self._prefix[:n]
            self._prefix = self._prefix[len(out) :]
            return out
        return self._inner.read(n)

    def readinto(self, buf: Any, /) -> int:
        """Into ``buf`` in place where the inner stream can (the chunker prefers it)."""
        inner = getattr(self._inner, "readinto", None)
        if self._prefix or inner is None:
            data = self.read(len(memoryview(buf)))
            memoryview(buf).cast("B")[: len(data)] = data
            return len(data)
        return int(inner(buf))


@frozen
class LocalFile:
    path: str | Path  # plain strings are cheaper when a directory has 10^5 files

    def write_to(
        self, writer: ChunkWriter, progress: Progress | None, prefix: bytes = b""
    ) -> list[ChunkRef]:
        try:
            if prefix:
                with open(self.path, "rb") as f:
                    return writer.write_stream(_Chain(prefix, f), progress)
            return writer.write_file(self.path, progress)
        except OSError as exc:
            raise local_error(exc, str(self.path)) from exc


@frozen
class StreamSource:
    stream: BinaryIO

    def write_to(
        self, writer: ChunkWriter, progress: Progress | None, prefix: bytes = b""
    ) -> list[ChunkRef]:
        return writer.write_stream(_Chain(prefix, self.stream), progress)


@frozen
class BytesSource:
    data: bytes

    def write_to(
        self, writer: ChunkWriter, progress: Progress | None, prefix: bytes = b""
    ) -> list[ChunkRef]:
        return writer.write_bytes(prefix + self.data, progress)


class BlockStream(io.RawIOBase):
    """A raw stream over an iterator of byte blocks; wrap it in ``io.BufferedReader`` for
    ``read(n)`` in full blocks (the chunker and tarfile both want that)."""

    def __init__(self, blocks: Iterator[bytes], progress: Progress | None = None) -> None:
        self._blocks = blocks
        self._buf = b""
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        while not self._buf:
            nxt = next(self._blocks, None)
            if nxt is None:
                return 0
            self._buf = nxt
            if self._progress is not None:
                self._progress(len(nxt))
        view = memoryview(b).cast("B")
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


@frozen
class UrlSource:
    url: str

    def write_to(
        self, writer: ChunkWriter, progress: Progress | None, prefix: bytes = b""
    ) -> list[ChunkRef]:
        import httpx  # imported here: it costs ~0.3 s and most commands never fetch a URL

        try:
            with httpx.stream("GET", self.url, follow_redirects=True, timeout=60) as resp:
                if resp.status_code >= 400:
                    raise SourceError(f"GET {self.url} answered HTTP {resp.status_code}")
                body = io.BufferedReader(BlockStream(resp.iter_bytes(1 << 20)))
                return writer.write_stream(_Chain(prefix, body), progress)
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot fetch {self.url}: {exc}") from exc


@frozen
class ObjectSource:
    """An ``s3://`` object, streamed (endpoint: ``AWS_ENDPOINT_URL_S3``, else AWS)."""

    url: str

    def write_to(
        self, writer: ChunkWriter, progress: Progress | None, prefix: bytes = b""
    ) -> list[ChunkRef]:
        from tusk.storage.backends.objects import s3_objects

        body = s3_objects().open(self.url)
        try:
            return writer.write_stream(_Chain(prefix, body), progress)
        finally:
            body.close()


Source = LocalFile | StreamSource | BytesSource | UrlSource | ObjectSource


def source_for(text: str) -> Source:
    """A CLI-style source: ``-`` is stdin, http(s):// a URL, s3:// an object, anything else
    a local path."""
    if text == "-":
        return StreamSource(sys.stdin.buffer)
    if text.startswith("s3://"):
        return ObjectSource(text)
    if is_url(text):
        return UrlSource(text)
    return LocalFile(Path(text))
