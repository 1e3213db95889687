"""The object backend interface: a flat key -> bytes store, shaped like S3."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence

from tusk.values import frozen


@frozen(slots=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float


class ObjectBackend(abc.ABC):
    """Immutable objects under string keys. ``put`` is atomic: readers see all or nothing."""

    url: str

    @abc.abstractmethod
    def put(self, key: str, data: bytes | memoryview) -> None: ...

    def put_parts(
        self,
        key: str,
        parts: Sequence[bytes | memoryview],
        durable: bool = True,
        sync_soon: bool = False,
    ) -> None:
        """Store the concatenation of ``parts`` (backends may avoid joining them).

        With ``durable=False`` the object may live only in an OS cache until :meth:`sync`;
        ``sync_soon`` says that :meth:`sync` will follow, so writing it out early pays.
        """
        self.put(key, b"".join(parts))

    def put_stream(
        self,
        key: str,
        blocks: Iterable[bytes | memoryview],
        size: int | None = None,
        durable: bool = True,
    ) -> None:
        """Store the concatenation of ``blocks`` as they come (egress copies files of any size
        this way). ``size``, when known, is the total, a hint for the upload's part size.

        The backends here hold at most a bounded buffer (a part) in memory, never the whole
        object; this default, for backends that cannot stream, joins the blocks.
        """
        self.put_parts(key, list(blocks), durable=durable)

    def sync(self, keys: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Make the objects put with ``durable=False`` durable (S3 puts already are)."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Raise :class:`tusk.errors.StorageError` when the key is missing."""

    @abc.abstractmethod
    def get_range(self, key: str, offset: int, length: int) -> bytes: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Deleting a missing key is not an error (as in S3)."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    def remove_stale_temp(self, older_than: float) -> int:
        """Remove leftovers of interrupted puts older than ``older_than``; return how many."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release handles; the default holds none."""
