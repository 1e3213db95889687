"""SQL over versioned files: DuckDB, in this process, reading Tusk's files in place.

A query names its tables as string literals, ``'repo@ref:/path/*.parquet'``, as DuckDB names
local files. Before DuckDB sees the query each such literal is *pinned*: its ref (branch, tag,
commit id, ``branch^2``) is resolved once to a commit id and the literal becomes
``'tusk://repo@<commit-id>/path/*.parquet'``, so the whole query reads one commit per address
even while branches move, and a missing repo, ref or file is one Tusk error naming it.

DuckDB reads ``tusk://`` through :class:`tusk.sdk.sqlfs.TuskFileSystem`, which reads byte
ranges through the SDK (in-process: the chunks a read overlaps; against a server: ranged GETs,
each passing the server's permission check as any file read). Nothing is copied to disk.

Each query gets a connection of its own, locked before the query is parsed:
- only one statement, a query (SELECT, WITH, VALUES, FROM, DESCRIBE, SUMMARIZE, EXPLAIN):
  COPY, EXPORT, ATTACH, INSTALL, LOAD, SET, CREATE... are refused (QueryRefused);
- ``enable_external_access = false`` with ``allowed_directories = ['tusk://']``: DuckDB
  opens no local file, URL or database, loads no extension, and spills nothing to disk
  (no temp directory); Tusk's own file system is the one place it reads;
- ``lock_configuration = true``: no statement can undo the above.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tusk.errors import InvalidArgument, QueryError, QueryRefused, ToolMissing
from tusk.gcpause import gc_paused
from tusk.pfs.models import CommitInfo
from tusk.sdk.sqlfs import PREFIX, TuskFileSystem, split_url, tusk_url
from tusk.values import frozen

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from tusk.sdk.base import BaseClient

# A Tusk address in a literal: [project/]repo@ref:/path (a path is required, so that an
# e-mail address or 'user@host' in a WHERE clause stays text).
_ADDRESS = re.compile(
    r"^(?P<repo>[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)?)@(?P<ref>[A-Za-z0-9_^~-]+):(?P<path>/.*)$",
    re.S,
)
# The statements a query may be (DuckDB parses DESCRIBE, SUMMARIZE, SHOW, PRAGMA x as SELECT).
_QUERIES = ("SELECT", "EXPLAIN")
LINEAGE_KEY = b"tusk.lineage"  # the Parquet metadata key of a committed result's lineage
DESCRIBED_FILES = 100  # files a result commit's description names (its Parquet: every one)
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv",
           ".json": "json", ".jsonl": "json", ".ndjson": "json"}  # fmt: skip
_INSTALL = "SQL needs DuckDB, PyArrow and fsspec: pip install 'tusk-data[sql]'"


@frozen
class SqlInput:
    """One address a query named, and the commit it was pinned to."""

    address: str  # as the query wrote it: repo@master:/x/*.parquet
    repo: str
    commit: str
    path: str  # the path or glob

    def to_dict(self) -> dict[str, str]:
        return {"address": self.address, "repo": self.repo, "commit": self.commit,
                "path": self.path}  # fmt: skip


@frozen
class SqlCommit:
    """A query's result committed as a file (:meth:`BaseClient.sql_to`)."""

    commit: CommitInfo
    path: str
    rows: int
    inputs: list[SqlInput] = field(default_factory=list)
    files_read: list[str] = field(default_factory=list)  # repo@commit:/path, each file read

    def to_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit.to_dict(),
            "path": self.path,
            "rows": self.rows,
            "inputs": [i.to_dict() for i in self.inputs],
            "files_read": self.files_read,
        }


def duckdb_module() -> Any:
    """``duckdb``, or ToolMissing saying how to install it."""
    try:
        with gc_paused():  # a big import; nothing in it to collect (tusk.gcpause)
            import duckdb
    except ImportError as exc:
        raise ToolMissing(f"{_INSTALL} ({exc})") from None
    return duckdb


def arrow_module() -> Any:
    """``pyarrow``, which DuckDB hands Arrow results over with (0.15 s to import here: only
    the calls that return Arrow load it), or ToolMissing."""
    try:
        with gc_paused():
            import pyarrow
    except ImportError as exc:
        raise ToolMissing(f"{_INSTALL} ({exc})") from None
    return pyarrow


# Pinning


def pin_addresses(client: BaseClient, sql: str) -> tuple[str, list[SqlInput]]:
    """``sql`` with each Tusk address literal replaced by its pinned ``tusk://`` URL, and
    what each was pinned to. Raises the Tusk error of an address that names nothing."""
    duckdb = duckdb_module()
    try:
        tokens = duckdb.tokenize(sql)
    except duckdb.Error as exc:
        raise QueryError(f"cannot parse the query: {_first_line(exc)}") from None
    out: list[str] = []
    inputs: list[SqlInput] = []
    commits: dict[str, CommitInfo] = {}  # repo@ref -> its commit, resolved once
    done = 0
    for start, kind in tokens:
        quote = sql[start] if start < len(sql) else ""
        if kind.name not in ("string_const", "identifier") or quote not in ("'", '"'):
            continue
        end = _literal_end(sql, start)
        text = sql[start + 1 : end - 1].replace(quote * 2, quote)
        pinned = pin(client, text, commits)
        if pinned is None:
            continue
        inputs.append(pinned)
        url = tusk_url(pinned.repo, pinned.commit, pinned.path).replace(quote, quote * 2)
        out += [sql[done:start], quote, url, quote]
        done = end
    out.append(sql[done:])
    return "".join(out), inputs


def pin(client: BaseClient, text: str, commits: dict[str, CommitInfo]) -> SqlInput | None:
    """The commit ``text`` (``repo@ref:/path`` or ``tusk://repo@ref/path``) names, or None
    when it is no Tusk address; ``commits`` caches refs already resolved."""
    target = _target(text)
    if target is None:
        return None
    repo, ref, path = target
    key = f"{repo}@{ref}"
    if key not in commits:
        commits[key] = client.inspect_commit(key)
    info = commits[key]
    return SqlInput(text, info.repo, info.id, path)


def _target(text: str) -> tuple[str, str, str] | None:
    """(repo, ref, path) of a literal that names Tusk files, else None."""
    if text.startswith(PREFIX):
        repo, ref, path = split_url(text)
        return repo, ref, path
    m = _ADDRESS.match(text)
    if m is None:
        return None
    return m.group("repo"), m.group("ref"), m.group("path")


def _literal_end(sql: str, start: int) -> int:
    """The index after the closing quote of the literal opening at ``start``."""
    quote = sql[start]
    i = start + 1
    while True:
        j = sql.find(quote, i)
        if j < 0:
            return len(sql)
        if sql.startswith(quote * 2, j):
            i = j + 2
            continue
        return j + 1


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# The locked connection


def locked_connection(fs: TuskFileSystem) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that reads ``tusk://`` and nothing else, locked (module docs)."""
    duckdb = duckdb_module()
    _keep_freed_memory()
    config = {
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
        "temp_directory": "",  # nothing spills to disk
        "python_enable_replacements": "false",  # never the caller's Python variables
        # Its copies of what was read serve later queries; a connection serves one query.
        "enable_external_file_cache": "false",
    }
    con = duckdb.connect(":memory:", config=config)
    try:
        con.register_filesystem(fs)
        con.execute(f"SET allowed_directories = ['{PREFIX}']")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


_MALLOC_TUNED = False


def _keep_freed_memory() -> None:
    """Let glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    DuckDB reads a file of a Python file system one ``read()`` at a time, each answered with
    a fresh ``bytes`` of a few MiB (a Parquet row group) that it copies and drops. glibc
    serves such sizes with mmap, or trims them off the heap when freed, so every read faults
    its pages in anew: on these VMs that doubled the CPU time of a scan (bench/bench_sql.py).
    Kept (up to 128 MiB), the next read reuses the same pages. Once per process; a no-op
    where the C library is not glibc.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD: below this, from the heap
    mallopt(-1, 128 * 1024 * 1024)  # M_TRIM_THRESHOLD: keep this much free at the top
    mallopt(-2, 16 * 1024 * 1024)  # M_TOP_PAD: grow the heap in steps of this much


def check_statement(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but one query."""
    duckdb = duckdb_module()
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"cannot parse the query: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise QueryRefused(
            f"give one query, not {len(statements)} statements (combine them with WITH)"
        )
    kind = statements[0].type.name
    if kind not in _QUERIES:
        raise QueryRefused(
            f"only queries run: {kind} statements are refused (SQL reads versioned files and "
            "writes nothing; to keep a result, commit it with --to repo@branch:/path)"
        )


@dataclass
class Query:
    """One query on its own locked connection, with what it read."""

    fs: TuskFileSystem
    con: duckdb.DuckDBPyConnection
    sql: str  # pinned
    inputs: list[SqlInput]

    def stream(self, rows: int = 65_536) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """The result's schema, and its batches as DuckDB makes them."""
        arrow_module()
        with self.failures():
            reader = self.con.execute(self.sql).fetch_record_batch(rows)
        return reader.schema, self._batches(reader)

    def _batches(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        with self.failures():
            yield from reader

    def rows(self, batch: int = 10_000) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
        """The result's column names, and its rows as Python tuples (no Arrow)."""
        with self.failures():
            cursor = self.con.execute(self.sql)
        return [d[0] for d in cursor.description or []], self._fetch(cursor, batch)

    def _fetch(self, cursor: duckdb.DuckDBPyConnection, batch: int) -> Iterator[tuple[Any, ...]]:
        with self.failures():
            while chunk := cursor.fetchmany(batch):
                yield from chunk

    def table(self) -> pa.Table:
        arrow_module()
        with self.failures():
            return self.con.execute(self.sql).fetch_arrow_table()

    @contextmanager
    def failures(self) -> Iterator[None]:
        """DuckDB's errors as Tusk's: the file system's own error when it raised one."""
        duckdb = duckdb_module()
        try:
            yield
        except duckdb.Error as exc:
            failure = self.fs.failure  # DuckDB passes a Python error on as text: is it ours?
            if failure is not None and failure.message in str(exc):
                raise failure from None
            if isinstance(exc, duckdb.PermissionException):
                raise QueryRefused(
                    f"refused: {_first_line(exc)} (a query reads Tusk's files only: "
                    "'repo@ref:/path')"
                ) from None
            raise QueryError(f"query failed: {_first_line(exc)}") from None

    def close(self) -> None:
        self.con.close()
        self.fs.close()


@contextmanager
def connect(client: BaseClient, inputs: list[SqlInput], sql: str = "") -> Iterator[Query]:
    """A locked connection reading the pinned ``inputs`` (for messages: the names given)."""
    names = {f"{PREFIX}{i.repo}@{i.commit}": i.address.partition(":")[0] for i in inputs}
    fs = TuskFileSystem(client, names)
    query = Query(fs, locked_connection(fs), sql, inputs)
    try:
        yield query
    finally:
        query.close()


@contextmanager
def open_query(client: BaseClient, sql: str) -> Iterator[Query]:
    """Pin ``sql``'s addresses, open a locked connection, check the statement."""
    if not sql.strip():
        raise InvalidArgument("empty query: give a SELECT")
    pinned, inputs = pin_addresses(client, sql)
    with connect(client, inputs, pinned) as query:
        check_statement(query.con, pinned)
        yield query


def run_query(client: BaseClient, sql: str) -> pa.Table:
    with open_query(client, sql) as q:
        return q.table()


H = TypeVar("H")
T = TypeVar("T")


def _held_open(
    client: BaseClient, sql: str, take: Callable[[Query], tuple[H, Iterator[T]]]
) -> tuple[H, Iterator[T], ExitStack]:
    """``take`` of the open query (a head and an iterator over the result), and what keeps its
    connection open until the caller closes it."""
    with ExitStack() as stack:
        head, items = take(stack.enter_context(open_query(client, sql)))
        return head, items, stack.pop_all()


def query_reader(client: BaseClient, sql: str, batch_rows: int) -> pa.RecordBatchReader:
    """The result as a stream; the connection closes when the stream ends or is closed."""
    arrow = arrow_module()
    schema, batches, owned = _held_open(client, sql, lambda q: q.stream(batch_rows))

    def read() -> Iterator[pa.RecordBatch]:
        with owned:
            yield from batches

    reader: pa.RecordBatchReader = arrow.RecordBatchReader.from_batches(schema, read())
    return reader


class SqlRows:
    """A query's result as Python rows, without PyArrow (:meth:`BaseClient.sql_rows`):
    ``columns``, then the rows as tuples while they are iterated. The connection closes when
    the rows end or on :meth:`close` (or leaving a ``with`` block)."""

    def __init__(self, client: BaseClient, sql: str, batch_rows: int) -> None:
        self.columns, rows, self._owned = _held_open(client, sql, lambda q: q.rows(batch_rows))
        self._rows = self._read(rows)

    def _read(self, rows: Iterator[tuple[Any, ...]]) -> Generator[tuple[Any, ...], None, None]:
        with self._owned:
            yield from rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self._rows

    def close(self) -> None:
        self._rows.close()
        self._owned.close()

    def __enter__(self) -> SqlRows:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# Committing a result


def lineage_of(query: Query, sql: str) -> dict[str, Any]:
    """What a committed result came from: the query as written, the commits it pinned, and
    every file it read."""
    return {
        "query": sql,
        "inputs": [i.to_dict() for i in query.inputs],
        "files_read": query.fs.files_read,
    }


def describe(lineage: dict[str, Any], path: str, rows: int, note: str) -> str:
    """The result commit's description: the note, then the query and what it read."""
    commits = sorted({f"{i['repo']}@{i['commit']}" for i in lineage["inputs"]})
    files = lineage["files_read"]
    named = ", ".join(files[:DESCRIBED_FILES]) or "none"
    if len(files) > DESCRIBED_FILES:
        named += f" and {len(files) - DESCRIBED_FILES} more"
    lines = [note] if note else []
    lines += [
        f"tusk sql: {rows} rows to {path}",
        f"query: {' '.join(lineage['query'].split())}",
        f"commits read: {', '.join(commits) or 'none'}",
        f"files read: {named}",
    ]
    return "\n".join(lines)


def commit_query(client: BaseClient, sql: str, address: str, description: str) -> SqlCommit:
    """Run ``sql`` and put its result at ``address`` (see :meth:`BaseClient.sql_to`)."""
    from tusk.pfs.refs import parse_address

    target = parse_address(address)
    if target.path is None or target.trailing_slash:
        raise InvalidArgument(f"--to needs a file path: repo@branch:/out.parquet, not {address}")
    fmt = FORMATS.get(os.path.splitext(target.path)[1].lower())
    if fmt is None:
        raise InvalidArgument(
            f"--to {address}: name a .parquet, .csv or .jsonl file (the extension picks the format)"
        )
    client.inspect_repo(target.repo)  # before the query runs: NotFound for a missing repo
    with tempfile.TemporaryDirectory(prefix="tusk-sql-") as tmp:
        out = Path(tmp) / "result"
        with open_query(client, sql) as q:
            rows = _write(q, out, fmt, sql)
            lineage = lineage_of(q, sql)
        text = describe(lineage, target.path, rows, description)
        # An open commit that names what it read as provenance, like a job's output commit:
        # inspect commit, lineage and retention then follow the result to those commits.
        sources = sorted({f"{i.repo}@{i.commit}" for i in q.inputs})
        info = client.start_commit(
            f"{target.repo}@{target.ref}", description=text, provenance=sources
        )
        opened = f"{target.repo}@{info.id}"
        try:
            client.put_file(f"{opened}:{target.path}", out)
            done = client.finish_commit(opened)
        except BaseException:
            client.delete_commit(opened)
            raise
    return SqlCommit(done, target.path, rows, q.inputs, lineage["files_read"])


def _write(q: Query, out: Path, fmt: str, sql: str) -> int:
    """Stream the result into ``out`` as ``fmt``; the row count."""
    rows = 0
    schema, batches = q.stream()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(out, schema) as parquet:
            for batch in batches:
                parquet.write_batch(batch)
                rows += batch.num_rows
            # Known once every file was read: in the footer, after the rows.
            parquet.add_key_value_metadata({LINEAGE_KEY: json.dumps(lineage_of(q, sql))})
        return rows
    import csv

    with open(out, "w", encoding="utf-8", newline="") as f:
        table = csv.writer(f, lineterminator="\n")
        if fmt == "csv":
            table.writerow(schema.names)
        for batch in batches:
            for row in batch.to_pylist():
                if fmt == "csv":
                    table.writerow(["" if v is None else v for v in row.values()])
                else:
                    f.write(json.dumps(row, default=str) + "\n")
            rows += batch.num_rows
    return rows
