"""``tusk://``: Tusk's files as an fsspec file system, which DuckDB reads through.

A URL names one commit by id, ``tusk://repo@<commit-id>/path`` (``project/repo@...`` for a
repo of another project); :mod:`tusk.sdk.sql` pins every address of a query to such URLs
before DuckDB sees it. Every byte is read through the SDK's :meth:`BaseClient.file_reader`
(in-process: only the chunks a read overlaps; over HTTP: one ranged GET each), so a query
never copies a file to disk, and a server checks each read as any other file read.

Read-only: opening for writing raises QueryRefused. The file system records which files were
opened (for the lineage of a committed result) and the first Tusk error it raised, which
DuckDB would otherwise report only as text: the query raises that error itself.
"""

from __future__ import annotations

import datetime
import io
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tusk.errors import (
    FileNotFound,
    InvalidArgument,
    PathConflict,
    QueryRefused,
    ToolMissing,
    TuskError,
)

try:
    from fsspec.spec import AbstractFileSystem
except ImportError as exc:
    raise ToolMissing(
        f"SQL needs DuckDB, PyArrow and fsspec: pip install 'tusk-data[sql]' ({exc})"
    ) from None

if TYPE_CHECKING:
    from tusk.sdk.base import BaseClient, FileReader

PROTOCOL = "tusk"
PREFIX = f"{PROTOCOL}://"
# repo (or project/repo) @ commit id, then the path
_URL = re.compile(r"^(?P<repo>[^@/]+(?:/[^@/]+)?)@(?P<commit>[^/]+)(?P<path>/.*)?$", re.S)
_MAGIC = re.compile(r"[*?\[]")
# Files of a commit never change: one modification time for all (DuckDB's caches key on it).
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

T = TypeVar("T")


def tusk_url(repo: str, commit: str, path: str) -> str:
    return f"{PREFIX}{repo}@{commit}{path}"


def split_url(url: str) -> tuple[str, str, str]:
    """``tusk://repo@commit/path`` (or without ``tusk://``) -> (repo, commit, path)."""
    m = _URL.match(url[len(PREFIX) :] if url.startswith(PREFIX) else url)
    if m is None:
        raise InvalidArgument(f"not a Tusk file URL: {url!r} (tusk://repo@commit/path)")
    return m.group("repo"), m.group("commit"), m.group("path") or "/"


class TuskFileSystem(AbstractFileSystem):
    """The files of pinned commits, read through ``client``; ``names`` maps a URL prefix
    (``tusk://repo@commit``) to the address the query gave (``repo@master``), for messages."""

    protocol = PROTOCOL
    root_marker = ""
    cachable = False  # one per query: fsspec must not hand it to another query

    def __init__(self, client: BaseClient, names: dict[str, str] | None = None) -> None:
        super().__init__()
        self.client = client
        self.names = dict(names or {})
        self.failure: TuskError | None = None
        self._read: dict[str, None] = {}  # files opened, in order (repo@commit:/path)
        self._readers: dict[str, FileReader] = {}
        self._infos: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def _strip_protocol(cls, path: str | list[str]) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = str(path)
        return text[len(PREFIX) :] if text.startswith(PREFIX) else text

    @property
    def files_read(self) -> list[str]:
        """``repo@commit:/path`` of every file the query opened, in order."""
        with self._lock:
            return list(self._read)

    # What DuckDB calls

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._guard(lambda: self._info(path))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        return self._guard(lambda: self._ls(path, detail))

    def glob(self, path: str, maxdepth: int | None = None, **kwargs: Any) -> Any:
        return self._guard(lambda: self._glob(path, bool(kwargs.get("detail"))))

    def modified(self, path: str) -> datetime.datetime:
        return _EPOCH

    def created(self, path: str) -> datetime.datetime:
        return _EPOCH

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> TuskFile:
        return self._guard(lambda: self._open_file(path, mode))

    # Writes: none (DuckDB's COPY TO, ATTACH and the like are refused before they get here)

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        return self._guard(lambda: _no_writes())

    mkdir = makedirs = rm = rm_file = rmdir = touch = mv = cp_file = pipe_file = _refuse

    # Helpers

    def _guard(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except TuskError as exc:
            with self._lock:
                if self.failure is None:
                    self.failure = exc
            raise

    def _named(self, url: str) -> str:
        """The address the query wrote for a URL (for messages): ``repo@master:/x``."""
        repo, commit, path = split_url(url)
        given = self.names.get(f"{PREFIX}{repo}@{commit}")
        return f"{given or f'{repo}@{commit}'}:{path}"

    def _address(self, url: str) -> str:
        repo, commit, path = split_url(url)
        return f"{repo}@{commit}:{path}"

    def _info(self, path: str) -> dict[str, Any]:
        url = _full(path)
        with self._lock:
            known = self._infos.get(url)
        if known is not None:
            return dict(known)
        try:
            f = self.client.inspect_file(self._address(url))
        except FileNotFound:
            raise FileNotFound(f"no such file {self._named(url)}") from None
        kind = "file" if f.type == "file" else "directory"
        info = {"name": url, "size": f.size if kind == "file" else 0, "type": kind}
        with self._lock:
            self._infos[url] = info  # a pinned commit's files never change
        return dict(info)

    def _ls(self, path: str, detail: bool) -> list[Any]:
        url = _full(path)
        repo, commit, _ = split_url(url)
        out = []
        for f in self.client.iter_files(self._address(url)):
            kind = "file" if f.type == "file" else "directory"
            size = f.size if kind == "file" else 0
            out.append({"name": tusk_url(repo, commit, f.path), "size": size, "type": kind})
        return out if detail else [e["name"] for e in out]

    def _glob(self, path: str, detail: bool) -> Any:
        url = _full(path)
        repo, commit, pattern = split_url(url)
        if not _MAGIC.search(pattern):
            found = [self._info(url)]
            if found[0]["type"] != "file":
                raise PathConflict(f"{self._named(url)} is a directory: name its files (/*.csv)")
        else:
            found = [
                {"name": tusk_url(repo, commit, f.path), "size": f.size, "type": "file"}
                for f in self.client.iter_glob(self._address(url))
                if f.type == "file"
            ]
            if not found:
                raise FileNotFound(f"no file matches {self._named(url)}")
            with self._lock:
                self._infos.update((e["name"], e) for e in found)
        return {e["name"]: e for e in found} if detail else [e["name"] for e in found]

    def _open_file(self, path: str, mode: str) -> TuskFile:
        if mode != "rb":
            _no_writes()
        url = _full(path)
        address = self._address(url)
        with self._lock:
            reader = self._readers.get(address)
        if reader is None:
            try:
                reader = self.client.file_reader(address)
            except FileNotFound:
                raise FileNotFound(f"no such file {self._named(url)}") from None
            with self._lock:
                reader = self._readers.setdefault(address, reader)
        with self._lock:
            self._read[address] = None
        return TuskFile(reader, url)

    def close(self) -> None:
        with self._lock:
            readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            reader.close()


class TuskFile(io.RawIOBase):
    """A read-only, seekable file over a :class:`FileReader` (shared by every handle DuckDB
    opens on the same file)."""

    def __init__(self, reader: FileReader, url: str) -> None:
        super().__init__()
        self.reader = reader
        self.path = url
        self.size = reader.size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(base + offset, 0)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        stop = self.size if size is None or size < 0 else min(self._pos + size, self.size)
        data = self.reader.read(self._pos, stop)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _full(path: str) -> str:
    return path if path.startswith(PREFIX) else PREFIX + path


def _no_writes() -> None:
    raise QueryRefused("tusk:// is read-only: a query cannot write files (use --to to commit one)")
