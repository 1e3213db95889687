"""Putting many local files on several cores: forked writers, each with its own packs.

The work on a small file (open, read, hash, probe, pack) is mostly Python, so threads take
turns on the GIL (measured: twice as slow as one thread for 20,000 files of 4 KiB). Instead
the calling process forks helpers that take files from a shared counter, as the caller
does, and write them into packs of their own, through their own metadata connections. A
helper sends back only what the commit needs, each file's chunk references and its packs'
index rows (tens of bytes a file), never the data. Forking after the imports also skips
the half second a fresh interpreter would spend importing them.

Rules that keep this safe:

- Fork only where no other thread can hold a lock the helper needs: the calling process
  must run one thread (the CLI does; a server does not and keeps the one-process path).
- A helper reports the packs it wrote; the parent flushes them to disk with its own
  before the commit names them. A helper dies with its parent (``PR_SET_PDEATHSIG``), so a
  killed put leaves only unindexed packs, which gc removes once its grace period passes;
  the branch is as before.
- A chunk new to the store that two helpers meet in the same put is stored by both; the
  index keeps one location and the other copy is dead space (as when two puts race).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import pickle
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from tusk.errors import InvalidArgument, StorageError, TuskError
from tusk.pfs.paths import check_parts, split_path
from tusk.pfs.sources import LocalFile, Source
from tusk.storage.chunks import ChunkRef, ChunkStore, IndexEntry, WriteStats
from tusk.storage.meta.records import ChunkLocation, PackRecord

Item = tuple[str | tuple[str, ...], Source]

# Below this many files the fork costs more than it saves.
MIN_FILES = 512
CLAIM = 64  # items a process takes from the shared counter at a time
_PR_SET_PDEATHSIG = 1


def gather(items: Iterable[Item]) -> tuple[list[Item], Iterator[Item] | None]:
    """``(all items, None)`` if they can be shared out, else ``([], the items in order)``.

    Items may come lazily: a tar upload yields each member's stream only once the one before
    was read. So items are listed only while they are local files; at the first other kind
    the put goes on in order, in this process.
    """
    it = iter(items)
    head: list[Item] = []
    for item in it:
        head.append(item)
        if not isinstance(item[1], LocalFile):
            return [], itertools.chain(head, it)
        if len(head) >= MIN_FILES:
            head.extend(it)
            break
    return head, None


def item_parts(path: str | tuple[str, ...]) -> tuple[str, ...]:
    """The checked segments of a put's destination path."""
    parts = split_path(path) if isinstance(path, str) else check_parts(path)
    if not parts:
        raise InvalidArgument("cannot put a file at /: give a file path")
    return parts


def processes() -> int:
    """How many processes a put of many local files uses (``TUSK_PUT_PROCESSES``, else the
    cores this process may run on, at most 8)."""
    text = os.environ.get("TUSK_PUT_PROCESSES")
    if text is not None:
        try:
            return max(1, int(text))
        except ValueError:
            raise InvalidArgument(
                f"TUSK_PUT_PROCESSES must be a whole number, not {text!r}"
            ) from None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return min(cores, 8)


@dataclass
class Written:
    """What the helpers wrote: (position, segments, chunk refs) per file, index rows, totals."""

    files: list[tuple[int, tuple[str, ...], list[ChunkRef]]]
    index: list[IndexEntry]
    stats: WriteStats


class Helpers:
    """Forked helpers sharing the items with this process; :meth:`collect` waits for them.

    Every process takes the next ``CLAIM`` items from a counter in shared memory until none
    are left, so a slower process (a forked one pays copy-on-write faults at first) takes
    fewer and all finish together.
    """

    def __init__(self, store: ChunkStore, items: Sequence[Item], n: int) -> None:
        import multiprocessing

        self.n = n
        self.total = len(items)
        # Process k's first batch is its own (slot k); the counter hands out the rest.
        self._next = multiprocessing.RawValue("q", n * CLAIM)
        self._lock = multiprocessing.Lock()
        self._children: list[tuple[int, int]] = []  # (pid, read end of its pipe)
        self._reap: list[int] = []  # helpers that reported, to wait for in cancel()
        parent = os.getpid()
        for slot in range(1, n):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which leaves by os._exit
                os.close(read_end)
                _child(store, items, self, slot, write_end, parent)
            os.close(write_end)
            self._children.append((pid, read_end))

    def positions(self, slot: int = 0) -> Iterator[int]:
        """Positions of items for the process in ``slot`` (0: the caller) to write: its own
        first batch, so every process writes some even when one starts late, then batches
        claimed from the shared counter."""
        yield from range(slot * CLAIM, min((slot + 1) * CLAIM, self.total))
        while True:
            with self._lock:
                start = self._next.value
                self._next.value = start + CLAIM
            if start >= self.total:
                return
            yield from range(start, min(start + CLAIM, self.total))

    @classmethod
    def start(cls, store: ChunkStore, items: Sequence[Item]) -> Helpers | None:
        """Helpers for ``items`` if forking pays and is safe here, else None."""
        if len(items) < MIN_FILES or not hasattr(os, "fork") or sys.platform != "linux":
            return None
        if threading.active_count() != 1 or store.meta.in_atomic():
            return None  # a helper must neither meet a held lock nor join our transaction
        if not all(isinstance(source, LocalFile) for _, source in items):
            return None
        n = min(processes(), len(items) // (MIN_FILES // 2))
        return cls(store, items, n) if n > 1 else None

    def collect(self) -> Written:
        """Wait for every helper; raise the first error one of them met."""
        out = Written([], [], WriteStats(0, 0, 0, 0, 0))
        error: BaseException | None = None
        try:
            while self._children:
                pid, read_end = self._children.pop(0)
                self._reap.append(pid)  # reaped later: tearing down a forked process is slow
                result = _receive(pid, read_end)
                if isinstance(result, BaseException):
                    error = error or result
                    continue
                files, index, stats = result
                out.files.extend(files)
                out.index.extend(index)
                out.stats += stats
        finally:
            if error is not None:
                self.cancel()
        if error is not None:
            raise error
        return out

    def cancel(self) -> None:
        """Stop every helper not yet collected (the put failed on this side) and reap all."""
        while self._children:
            pid, read_end = self._children.pop()
            os.close(read_end)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._reap.append(pid)
        while self._reap:
            with contextlib.suppress(ChildProcessError):  # already reaped by _receive
                os.waitpid(self._reap.pop(), 0)


def _receive(
    pid: int, read_end: int
) -> (
    tuple[list[tuple[int, tuple[str, ...], list[ChunkRef]]], list[IndexEntry], WriteStats]
    | BaseException
):
    """What a helper wrote, from the plain tuples it sent (see ``_child``)."""
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    try:
        kind, *body = pickle.loads(data)
    except Exception:
        _, status = os.waitpid(pid, 0)  # it died: say how
        how = (
            f"killed by signal {os.WTERMSIG(status)}"
            if os.WIFSIGNALED(status)
            else f"exit status {os.waitstatus_to_exitcode(status)}"
        )
        return StorageError(f"a put helper process died ({how}); nothing was committed, retry")
    if kind == "error":
        return body[0]
    files, packs, stats = body
    index: list[IndexEntry] = [
        (
            PackRecord(pack_id, size, chunks, created),
            [(h, ChunkLocation(pack_id, off, ln, raw, codec)) for h, off, ln, raw, codec in rows],
        )
        for pack_id, size, chunks, created, rows in packs
    ]
    return files, index, WriteStats(*stats)


def _child(
    store: ChunkStore,
    items: Sequence[Item],
    helpers: Helpers,
    slot: int,
    write_end: int,
    parent: int,
) -> None:  # pragma: no cover - runs in the forked child
    payload: tuple[object, ...]
    try:
        _die_with(parent)
        # The parent's pooled connections are its own: the child opens fresh ones.
        store.meta.engine.dispose(close=False)
        files = []
        with store.writer() as writer:
            for pos in helpers.positions(slot):
                path, source = items[pos]
                files.append((pos, item_parts(path), source.write_to(writer, None)))
            index = writer.flush_unsynced()  # the parent flushes them with its own packs
            stats = writer.stats()
        # Plain tuples: pickling 10^4 dataclasses costs more than the files' hashing saved.
        packs = [
            (
                pack.id,
                pack.size,
                pack.chunks,
                pack.created_at,
                [(h, loc.offset, loc.length, loc.raw_length, loc.codec) for h, loc in entries],
            )
            for pack, entries in index
        ]
        totals = (stats.chunks, stats.new_chunks, stats.bytes_in, stats.bytes_stored, stats.packs)
        payload = ("ok", files, packs, totals)
    except BaseException as exc:
        payload = ("error", exc if isinstance(exc, TuskError) else StorageError(str(exc)))
    try:
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        os._exit(0)


def _die_with(parent: int) -> None:  # pragma: no cover - runs in the forked child
    """Have Linux kill this process when its parent dies (and leave if it already has)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)
