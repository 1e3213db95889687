"""tusk.s3.offload: hashes updated on a thread of their own give hashlib's digests."""

from __future__ import annotations

import hashlib
import threading
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from tusk.s3 import sigv4
from tusk.s3.offload import _BATCH, Offloaded


def _hash_threads() -> int:
    return sum(t.name.startswith("tusk-s3-hash") for t in threading.enumerate())


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3 * _BATCH), max_size=12),
    algorithm=st.sampled_from(["md5", "sha256"]),
)
def test_digest_equals_hashlib_for_any_split(sizes: list[int], algorithm: str) -> None:
    data = bytes(range(256)) * (sum(sizes) // 256 + 1)
    crc32 = sigv4._checksum("crc32")  # the gateway's running CRC32 (zlib's)
    assert crc32 is not None
    off, crc = Offloaded(hashlib.new(algorithm)), Offloaded(crc32)
    at = 0
    for size in sizes:
        piece = data[at : at + size]
        off.update(piece)
        crc.update(memoryview(piece))
        at += size
    assert off.hexdigest() == hashlib.new(algorithm, data[:at]).hexdigest()
    assert off.digest() == hashlib.new(algorithm, data[:at]).digest()  # asked again: the same
    assert crc.digest() == zlib.crc32(data[:at]).to_bytes(4, "big")


def test_a_small_body_starts_no_thread_and_buffers_are_copied() -> None:
    before = _hash_threads()
    off = Offloaded(hashlib.md5())
    buf = bytearray(b"abc" * 1000)
    off.update(buf)
    off.update(memoryview(buf)[:10])
    assert _hash_threads() == before  # under one batch: hashed when the digest is asked for
    expected = hashlib.md5(bytes(buf) + bytes(buf[:10])).digest()
    buf[:] = b"x" * len(buf)  # the caller reuses its buffer: what was given is what is hashed
    assert off.digest() == expected
    assert _hash_threads() == before


def test_a_large_body_is_hashed_on_a_thread_that_ends_with_the_digest() -> None:
    before = _hash_threads()
    off = Offloaded(hashlib.sha256())
    block = b"\x5a" * (_BATCH // 2 + 1)
    seen = []
    for _ in range(20):
        off.update(block)
        seen.append(_hash_threads())
    assert max(seen) == before + 1  # one thread, however many batches
    assert off.hexdigest() == hashlib.sha256(block * 20).hexdigest()
    for t in threading.enumerate():
        if t.name.startswith("tusk-s3-hash"):
            t.join(timeout=10)
    assert _hash_threads() == 0
