"""Hashes of a large request body, updated on a thread of their own.

An S3 PutObject or UploadPart is hashed three or four times over besides Tusk's own chunking
and BLAKE3: MD5 for the ETag clients check, SHA-256 when the payload is signed (boto3 signs
every body over plain http), and the x-amz-checksum-* botocore adds (CRC32 by default). Done
in the thread that reads the body, they add up to more than the chunking itself
(MD5 ~1.4 s, SHA-256 ~0.6 s, CRC32 ~0.3 s per GiB on this project's reference machine).
hashlib and zlib release the GIL while they hash a buffer, so each runs beside the read:
:class:`Offloaded` keeps hashlib's ``update``/``digest`` face and hands the bytes, in order, to
a one-thread executor of its own, at most ``_AHEAD`` batches of ``_BATCH`` bytes ahead of
it. A body shorter than one batch never starts a thread: its bytes are hashed when the digest
is asked for.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

_BATCH = 256 * 1024  # bytes handed over at once (one executor call per batch)
_AHEAD = 2  # batches queued before update() waits: memory held stays under ~0.75 MiB


class Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


def _apply(inner: Hash, batch: list[bytes]) -> None:
    for data in batch:
        inner.update(data)


class Offloaded:
    """``inner`` (a hashlib-like object), updated on a thread of its own; see the module."""

    def __init__(self, inner: Hash) -> None:
        self.inner = inner
        self._batch: list[bytes] = []
        self._held = 0
        self._pool: ThreadPoolExecutor | None = None
        self._queued: deque[Future[None]] = deque()

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        # Kept until hashed, so it must not change: bytes are taken as they are, others copied.
        self._batch.append(data if type(data) is bytes else bytes(data))
        self._held += len(self._batch[-1])
        if self._held >= _BATCH:
            self._submit()

    def _submit(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="tusk-s3-hash")
        batch, self._batch, self._held = self._batch, [], 0
        self._queued.append(self._pool.submit(_apply, self.inner, batch))
        while len(self._queued) > _AHEAD:
            self._queued.popleft().result()

    def settle(self) -> Hash:
        """The inner hash, with every byte given so far hashed into it."""
        if self._pool is None:
            _apply(self.inner, self._batch)
            self._batch, self._held = [], 0
            return self.inner
        if self._batch:
            self._submit()
        while self._queued:
            self._queued.popleft().result()
        self._pool.shutdown(wait=False)
        self._pool = None
        return self.inner

    def digest(self) -> bytes:
        return self.settle().digest()

    def hexdigest(self) -> str:
        inner: Any = self.settle()
        return str(inner.hexdigest())
