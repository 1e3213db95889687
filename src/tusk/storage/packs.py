"""Pack objects: many chunks in one object, with an index at the end (as restic does).

Layout::

    b"TUSKPACK" version(1 byte)
    chunk payloads, back to back
    footer: zstd(entries), each entry = blake3(32) offset(u64) length(u32) raw_length(u32) codec(u8)
    trailer: footer_length(u64) blake3(footer)[:16] b"TUSKPEND"

The footer makes every pack self-describing, so ``fsck`` can check the chunk index against
the packs and the index could be rebuilt from the packs alone.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

import blake3
import zstandard

from tusk.errors import CorruptObject

MAGIC = b"TUSKPACK\x01"
END = b"TUSKPEND"
_ENTRY = struct.Struct("<32sQIIB")
_TRAILER = struct.Struct("<Q16s8s")

CODEC_RAW = 0
CODEC_ZSTD = 1
# A piece of an object where it lives (``tusk import``): the chunk row's pack is
# ``ref:<reference id>`` and its offset and length are the piece's in that object.
CODEC_REF = 2
REF_PREFIX = "ref:"


class PackEntry(NamedTuple):
    hash: bytes
    offset: int
    length: int
    raw_length: int
    codec: int


def pack_key(pack_id: str) -> str:
    return f"packs/{pack_id[:2]}/{pack_id}"


class PackBuilder:
    """Collects chunk payloads (by reference) until :meth:`seal` returns the pack's buffers."""

    def __init__(self) -> None:
        self._parts: list[bytes | memoryview] = [MAGIC]
        self._size = len(MAGIC)
        self.entries: list[PackEntry] = []

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, digest: bytes, payload: bytes | memoryview, raw_length: int, codec: int) -> None:
        self._parts.append(payload)
        self.entries.append(PackEntry(digest, self._size, len(payload), raw_length, codec))
        self._size += len(payload)

    def release(self) -> None:
        """Drop the written bytes, keeping the index entries and size (for indexing later)."""
        self._parts = []

    def seal(self) -> list[bytes | memoryview]:
        """The pack's bytes as a list of buffers (no copy of the payloads)."""
        footer = zstandard.ZstdCompressor(level=3).compress(
            b"".join(
                _ENTRY.pack(e.hash, e.offset, e.length, e.raw_length, e.codec) for e in self.entries
            )
        )
        self._parts.append(footer)
        self._parts.append(_TRAILER.pack(len(footer), blake3.blake3(footer).digest()[:16], END))
        self._size += len(footer) + _TRAILER.size
        return self._parts


def read_pack_index(data: bytes) -> list[PackEntry]:
    """Parse and check a whole pack's footer; raise :class:`CorruptObject` on any damage."""
    return list(iter_pack_index(data))


def iter_pack_index(data: bytes) -> Iterator[PackEntry]:
    """:func:`read_pack_index` an entry at a time (fsck of a pack of a million chunks)."""
    if len(data) < len(MAGIC) + _TRAILER.size or not data.startswith(MAGIC):
        raise CorruptObject("pack header is damaged or the pack is truncated")
    footer_len, footer_hash, end = _TRAILER.unpack_from(data, len(data) - _TRAILER.size)
    if end != END:
        raise CorruptObject("pack trailer is damaged or the pack is truncated")
    footer_start = len(data) - _TRAILER.size - footer_len
    if footer_start < len(MAGIC):
        raise CorruptObject("pack footer length is out of range")
    footer = memoryview(data)[footer_start : len(data) - _TRAILER.size]  # no copy
    if blake3.blake3(footer).digest()[:16] != footer_hash:
        raise CorruptObject("pack footer checksum does not match")
    # Decompressed a block at a time: a million entries are 49 MB at once.
    reader = zstandard.ZstdDecompressor().stream_reader(footer)
    block = _ENTRY.size * 4096
    raw = b""
    while True:
        more = reader.read(block)
        raw += more
        if not more and len(raw) % _ENTRY.size:
            raise CorruptObject("pack footer has a partial entry")
        whole = len(raw) - len(raw) % _ENTRY.size
        for i in range(0, whole, _ENTRY.size):
            e = PackEntry(*_ENTRY.unpack_from(raw, i))
            if e.offset < len(MAGIC) or e.offset + e.length > footer_start:
                raise CorruptObject(f"pack entry {e.hash.hex()} points outside the pack body")
            yield e
        raw = raw[whole:]
        if not more:
            return
