"""Writing many of a tree's files out to a local folder fast: a check's copy of its candidate
(tusk.pps.checkrun).

Reading the chunks (one pass, neighbours in a pack in one ranged read) is this process's work;
creating the files is mostly system calls, about 10 µs a file on tmpfs, and Python threads
cannot overlap them with the reading (each call takes the GIL back). So past
``CHILD_MIN_FILES`` files small writer processes (this Python, ``-S -I``: no site, no Tusk
import, ~10 ms to start) create them from streams on their stdin while this one walks the
tree and reads the next chunks: measured on a 10,000-file candidate in a ``tusk merge``
process (bench/bench_checks.py), 0.13-0.14 s against 0.15-0.18 s with writer threads. Fewer
files are written by this process, and the folders always are (before their files are sent).

The stream is frames of a one-byte kind, a 4-byte little-endian length and a payload:
``F`` a whole small file (path, NUL, bytes), ``f`` a file to open (path), ``c`` bytes for the
open file, ``e`` close it. Paths are the tree's own (``/a/b``),
checked again by the writer (no ``..``, no NUL, never following a link), and files are
created with ``O_EXCL``: a writer never writes outside its folder or over a file.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from tusk.errors import StorageError

if TYPE_CHECKING:
    from tusk.pfs import PfsService
    from tusk.storage.chunks import ChunkRef

CHILD_MIN_FILES = 256
# Writer processes: two measured 0.13-0.14 s against one's 0.145-0.15 s on a 10,000-file
# candidate here (2 cores; bench/bench_checks.py).
WRITERS = max(1, min(2, os.cpu_count() or 1))
_BATCH = 1024  # files whose chunks are read in one pass
_FLUSH = 1 << 20  # bytes of frames gathered before a write to the pipe
_HEAD = struct.Struct("<cI")

# The writer process: the standard library only, so that it starts in ~10 ms.
_WRITER = r"""
import os, sys
base, mode = os.fsencode(sys.argv[1]), int(sys.argv[2], 8)
rd, op, wr, close = sys.stdin.buffer.read, os.open, os.write, os.close
flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
fd = -1
def target(path):
    if path[:1] != b"/" or b"\0" in path or b"/../" in path + b"/" or b"/./" in path + b"/":
        sys.exit("tusk copy-out: refused path " + repr(path))
    return base + path
def write(fd, data):
    n = wr(fd, data)
    if n < len(data):
        view = memoryview(data)[n:]
        while view:
            view = view[wr(fd, view):]
try:
    while head := rd(5):
        kind, n = head[0], int.from_bytes(head[1:], "little")
        body = rd(n)
        if kind == 70:  # F
            name, _, data = body.partition(b"\0")
            out = op(target(name), flags, mode)
            try:
                if data:
                    write(out, data)
            finally:
                close(out)
        elif kind == 99:  # c
            write(fd, body)
        elif kind == 102:  # f
            fd = op(target(body), flags, mode)
        elif kind == 101:  # e
            close(fd)
            fd = -1
        else:
            sys.exit("tusk copy-out: bad frame " + repr(head))
except OSError as exc:
    sys.exit(f"{exc.strerror} ({os.fsdecode(exc.filename or base)})")
"""


def write_files(
    pfs: PfsService,
    base: str | os.PathLike[str],
    files: Iterable[tuple[str, Sequence[ChunkRef]]],
    mode: int = 0o444,
    count: int | None = None,
) -> None:
    """Create each ``(path, chunks)`` of ``files`` under ``base`` (paths ``/a/b``, their
    folders made as needed) with its bytes, the chunks of a batch of files read in one pass.
    ``count`` (how many files, when known) picks the writer processes or this one; ``files``
    is consumed as it goes, so a walk of a big tree feeds the writers while it runs.
    StorageError if a file cannot be written (the folder is then partly written: callers
    remove it)."""
    root = os.fspath(base)
    writers = None
    if count is None or count >= CHILD_MIN_FILES:
        try:
            writers = _Writers(root, mode)
        except OSError:  # no interpreter to start (a frozen app): this process writes them
            writers = None
    made: set[str] = set()
    try:
        os.makedirs(root, exist_ok=True)
        for batch in _batches(files):
            for path, _ in batch:
                folder = path[: path.rfind("/")]
                if folder and folder not in made:
                    os.makedirs(root + folder, exist_ok=True)
                    made.add(folder)
            chunks = pfs.chunks.read_chunks([c for _, refs in batch for c in refs])
            if writers is None:
                _write_here(root, batch, chunks, mode)
            else:
                writers.send(batch, chunks)
        if writers is not None:
            writers.close()
    except OSError as exc:
        if writers is not None:
            writers.kill()
        raise StorageError(f"cannot write the files under {root}: {exc.strerror}") from None
    except BaseException:
        if writers is not None:
            writers.kill()
        raise


def _batches(
    files: Iterable[tuple[str, Sequence[ChunkRef]]],
) -> Iterator[list[tuple[str, Sequence[ChunkRef]]]]:
    it = iter(files)
    while batch := list(itertools.islice(it, _BATCH)):
        yield batch


def _write_here(
    root: str,
    files: Sequence[tuple[str, Sequence[ChunkRef]]],
    chunks: Iterator[bytes],
    mode: int,
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    for path, refs in files:
        try:
            fd = os.open(root + path, flags, mode)
        except OSError as exc:
            raise StorageError(f"cannot write {root + path}: {exc.strerror}") from None
        try:
            for _ in refs:
                view = memoryview(next(chunks))
                while view:
                    view = view[os.write(fd, view) :]
        except OSError as exc:
            raise StorageError(f"cannot write {root + path}: {exc.strerror}") from None
        finally:
            os.close(fd)


class _Writers:
    """``WRITERS`` writer processes fed frames; each folder's files go to one of them (files
    created in one folder at once contend for its lock in the kernel)."""

    def __init__(self, root: str, mode: int) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for _ in range(WRITERS):
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-S", "-I", "-c", _WRITER, root, f"{mode:o}"],
                        stdin=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        bufsize=0,
                    )
                )
        except OSError:
            self.kill()
            raise
        self.outs: list[list[bytes]] = [[] for _ in self.procs]
        self.sizes = [0] * len(self.procs)
        self.folder, self.k = "", 0
        self.broken = False

    def flush(self, i: int) -> None:
        stdin = self.procs[i].stdin
        assert stdin is not None
        try:
            if not self.broken:
                stdin.write(b"".join(self.outs[i]))
        except BrokenPipeError:
            self.broken = True  # a writer stopped: close() reports why
        self.outs[i], self.sizes[i] = [], 0

    def send(
        self, files: Sequence[tuple[str, Sequence[ChunkRef]]], chunks: Iterator[bytes]
    ) -> None:
        pack = _HEAD.pack
        outs, sizes = self.outs, self.sizes
        for path, refs in files:
            folder = path[: path.rfind("/")]
            if folder != self.folder:
                self.folder, self.k = folder, (self.k + 1) % len(outs)
            k = self.k
            out = outs[k]
            raw = path.encode("utf-8", "surrogateescape")
            if len(refs) == 1:
                data = next(chunks)
                out += (pack(b"F", len(raw) + 1 + len(data)), raw, b"\0", data)
                sizes[k] += len(data)
            elif not refs:
                out += (pack(b"F", len(raw) + 1), raw, b"\0")
            else:
                out += (pack(b"f", len(raw)), raw)
                for _ in refs:
                    data = next(chunks)
                    out += (pack(b"c", len(data)), data)
                    sizes[k] += len(data)
                    if sizes[k] >= _FLUSH:
                        self.flush(k)
                        out = outs[k]
                out.append(pack(b"e", 0))
            if sizes[k] >= _FLUSH or len(out) >= 4096:
                self.flush(k)

    def close(self) -> None:
        """Send what is left, wait for every writer; StorageError naming the first failure."""
        failed = ""
        for i, proc in enumerate(self.procs):
            self.flush(i)
            assert proc.stdin is not None and proc.stderr is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        for proc in self.procs:
            assert proc.stderr is not None
            err = proc.stderr.read().decode(errors="replace").strip()
            proc.stderr.close()
            if proc.wait() != 0 and not failed:
                failed = err.splitlines()[-1] if err else f"exit status {proc.returncode}"
        if failed:
            raise StorageError(f"cannot write the files under {self.root}: {failed}")

    def kill(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()


def tree_files_with_chunks(
    pfs: PfsService, tree: bytes
) -> Iterator[tuple[str, tuple[ChunkRef, ...]]]:
    """Every file of ``tree`` with its chunk list, as the walk reaches it (the tree's nodes
    fetched first, a level per query, once the first file is asked for: the writers start
    meanwhile)."""
    pfs.prefetch_trees([tree])
    reader = pfs.reader()
    for path, entry in pfs.tree_files(tree):
        yield path, reader.chunks(entry)
