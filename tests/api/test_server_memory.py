"""The server's memory under sustained load (bench/bench_load.py measures the RSS over
minutes; these check the behaviour behind it, not the RSS).

* A put's body is read through a buffer no larger than the body (a 1 MiB buffer per small
  put, held while it waits for the write lock, was most of the large transient allocations
  that fragment glibc's arenas), and bodies without a Content-Length still stream whole.
* A running server hands malloc's free pages back to the OS periodically (``malloc_trim``
  in a thread of its own) and stops doing so when closed; MALLOC_ARENA_MAX set by the user
  wins over the server's arena limit.
"""

from __future__ import annotations

import gc
import io
import platform
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apihelpers import Live, start_live, stop_live

from tusk import server as server_module
from tusk.api.streams import content_length, reader
from tusk.api.wire import BLOCK

GLIBC = platform.libc_ver()[0] == "glibc"


class Raw(io.RawIOBase):
    """A raw stream that hands out at most 1,000 bytes per read, as a request body does."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview | bytearray) -> int:  # type: ignore[override]
        n = min(len(b), len(self._data), 1000)
        b[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


def test_put_buffer_is_no_larger_than_the_body() -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    small = reader(Raw(data), len(data))  # type: ignore[arg-type]
    assert sys.getsizeof(small) < 64 * 1024  # BufferedReader counts its buffer
    assert small.read(len(data)) == data  # still full reads over short raw ones
    unknown = reader(Raw(data), None)  # type: ignore[arg-type]
    assert sys.getsizeof(unknown) >= BLOCK
    assert unknown.read() == data
    huge = reader(Raw(b""), 50 * BLOCK)  # type: ignore[arg-type]
    assert BLOCK <= sys.getsizeof(huge) < 2 * BLOCK
    assert content_length({"content-length": "123"}) == 123
    assert content_length({}) is None
    assert content_length({"content-length": "x"}) is None


@pytest.fixture
def served(home: Path, engine: str) -> Iterator[Live]:
    live = start_live(home)
    yield live
    stop_live(live)


def trimmers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tusk-malloc-trim"]


def test_bodies_with_and_without_length_and_the_trimmer(served: Live) -> None:
    c = served.client()
    c.create_repo("m")
    url = f"{served.url}/api/v1/repos/m/commits/master/files"
    small = b"x" * 3000
    big = bytes(range(256)) * 9000  # 2.2 MiB: more than one buffer's worth
    with httpx.Client() as h:
        assert h.put(f"{url}/small.bin", content=small).status_code == 200

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
            for i in range(0, len(big), 70_000):
                yield big[i : i + 70_000]

        assert h.put(f"{url}/big.bin", content=chunks()).status_code == 200
    assert c.get_file("m@master:/small.bin") == small
    assert c.get_file("m@master:/big.bin") == big
    assert len(trimmers()) >= (1 if GLIBC else 0)
    before = set(trimmers())
    served.stop.set()
    served.thread.join(30)
    served.server.close()
    assert not (before & set(trimmers()))  # this server's trimmer stopped with it


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_arena_limit_yields_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert server_module.limit_arenas() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert server_module.limit_arenas() is True
    server_module.release_free_memory()  # callable any time; True when pages went back


class Cycle:
    """A node of a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_overlapping_pauses_do_not_keep_the_collector_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Puts that overlap without end (a loaded server) still let cycles be collected."""
    import weakref

    from tusk import gcpause

    clock = [1000.0]
    monkeypatch.setattr(gcpause, "_now", lambda: clock[0])
    assert gc.isenabled()
    with gcpause.gc_paused():  # one put in progress all along ...
        garbage = weakref.ref(Cycle())
        with gcpause.gc_paused():  # ... others start and end within MAX_PAUSE: no collection
            pass
        assert garbage() is not None and not gc.isenabled()
        for _ in range(3):  # ... and after MAX_PAUSE: a collection at the next boundary
            clock[0] += gcpause.MAX_PAUSE / 2
            with gcpause.gc_paused():
                pass
        assert garbage() is None
        assert not gc.isenabled()  # still paused: the first put has not ended
    assert gc.isenabled()


def test_node_compression_contexts_are_pooled_not_per_thread() -> None:
    """A zstd compression context keeps a workspace as large as the largest node it packed;
    one per request thread grew the server with its directory pages."""
    from tusk.pfs.tree import NodeCodec

    codec = NodeCodec()
    raw = b'{"e":[' + b",".join(b'["f%05d","f",1,"00"]' % i for i in range(5000)) + b"]}"
    packed: list[bytes] = []
    for _ in range(20):  # 20 threads, one after another: like a server's request pool
        t = threading.Thread(target=lambda: packed.append(codec.pack(raw)))
        t.start()
        t.join()
    assert codec.compressors == 1
    assert all(codec.unpack(b"", p) == raw for p in packed)
