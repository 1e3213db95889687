"""SQL egress: the rows of CSV or JSON-lines files into tables of a SQL database.

Pachyderm's ``egress.sql_database``, as its worker does it: every file under a top-level
folder goes into the table of that folder's name (``/users/part-1.csv`` -> ``users``;
``/sales.orders/...`` -> table ``orders`` of schema ``sales``); the tables must exist. All
tables are written in ONE transaction: each table named by the commit loses its rows and gets
the files' rows, so readers see the old content or the new, never half; any error rolls back
everything. Tables the commit does not name are left alone.

File formats (``file_format``), as Pachyderm parses them:

- ``CSV`` with ``columns``: the first row is a header naming those columns (any order);
  values go to the columns the header names, the table's other columns get their defaults.
- ``CSV`` without ``columns``: no header; each row fills every column of the table in order.
- ``JSON``: one JSON object per line; ``columns`` (default: every column of the table) are
  read by key, a missing key is NULL, other keys are ignored; nested values are stored as
  JSON text.

On PostgreSQL the rows go through ``COPY ... FROM STDIN`` (CSV files are streamed to the
server as they are read, with PostgreSQL's own CSV rules: an unquoted empty field is NULL).
Other databases (SQLite) take batched INSERTs of values converted to the column types, where
an empty CSV field is NULL. Files are read as streams either way: memory stays at a batch.

Errors are one line naming the cause. :class:`~tusk.errors.InvalidArgument` means the files
themselves are wrong (a value of the wrong type, a header that does not match): the same
commit fails the same way again. :class:`~tusk.errors.Unavailable` is a database that cannot be
reached; :class:`~tusk.errors.StorageError` the rest (credentials refused, no such database,
table or column): those may pass once someone fixes the database.

SQLAlchemy is imported here and in :mod:`tusk.storage.meta` only (import-linter checks it).
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.errors import InvalidArgument, StorageError, TuskError, Unavailable
from tusk.storage.meta.store import engine_url
from tusk.values import frozen

FORMATS = ("CSV", "JSON")
_BATCH_ROWS = 1000
_CONNECT_TIMEOUT = 10  # seconds: an unreachable host fails the attempt instead of hanging


@frozen
class SqlTarget:
    """Where the rows go. ``url``: ``postgresql://user@host[:port]/db[/schema]`` or
    ``sqlite:///path``, without a password; ``password`` comes from a secret
    (``password_from`` says which, for messages)."""

    url: str
    file_format: str
    columns: tuple[str, ...] = ()
    password: str | None = None
    password_from: str = ""

    def __post_init__(self) -> None:
        if self.file_format not in FORMATS:
            raise InvalidArgument(
                f"unknown SQL egress file format {self.file_format!r}: use CSV or JSON"
            )


@dataclass
class SqlResult:
    """Rows written per table (Pachyderm's ``rows_written``)."""

    rows: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        tables = ", ".join(f"{t} ({n})" for t, n in self.rows.items())
        return f"{sum(self.rows.values())} rows into {tables or 'no table'}"


def write_tables(target: SqlTarget, files: Iterable[tuple[str, Iterable[bytes]]]) -> SqlResult:
    """Write each ``(path, blocks)`` file into the table of its top-level folder, in one
    transaction (see the module's docs). ``files`` come in path order; ``blocks`` are read
    once, as they come."""
    url = _engine_url(target)
    where = _where(url)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=_connect_args(url))
    result = SqlResult()
    try:
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise _connect_error(exc, url, target) from exc
        with conn:
            writer = _PgWriter(conn, target) if _is_pg(url) else _RowWriter(conn, target)
            default_schema = _path_schema(target.url)
            try:
                with conn.begin():
                    tables: dict[str, sa.Table] = {}
                    for path, blocks in files:
                        name = _table_name(path)
                        table = tables.get(name)
                        if table is None:
                            table = _open_table(conn, name, default_schema, where)
                            tables[name] = table
                            writer.empty(table)
                            result.rows[name] = 0
                        result.rows[name] += writer.write(table, path, blocks)
            except sa.exc.DBAPIError as exc:
                raise _write_error(exc, where) from exc
            except _PgError as exc:
                raise _write_error(exc.cause, where, exc.path) from exc.cause
    finally:
        engine.dispose()
    return result


# URLs and connections


def _engine_url(target: SqlTarget) -> sa.URL:
    try:
        url = sa.engine.make_url(engine_url(target.url))
    except sa.exc.ArgumentError as exc:
        raise InvalidArgument(f"invalid SQL egress URL {target.url!r}: {exc}") from None
    if url.password is not None:
        raise InvalidArgument(
            "do not put the password in the SQL egress URL: name a secret that holds it"
        )
    if url.database and "/" in url.database and _is_pg(url):  # Pachyderm's /db/schema
        url = url.set(database=url.database.split("/", 1)[0])
    if target.password is not None and not url.drivername.startswith("sqlite"):
        url = url.set(password=target.password)
    return url


def _path_schema(raw: str) -> str | None:
    """The schema of Pachyderm's ``postgresql://user@host/db/schema`` form, if given."""
    m = re.match(r"^postgres(?:ql)?(?:\+\w+)?://[^/]*/[^/?]+/([^/?]+)", raw)
    return m.group(1) if m else None


def _is_pg(url: sa.URL) -> bool:
    return url.get_backend_name() == "postgresql"


def _connect_args(url: sa.URL) -> dict[str, Any]:
    if _is_pg(url) and "connect_timeout" not in url.query:
        return {"connect_timeout": _CONNECT_TIMEOUT}
    return {}


def _where(url: sa.URL) -> str:
    """``database db at host:port`` or ``SQLite database /path``, for messages."""
    if not _is_pg(url):
        return f"{url.get_backend_name()} database {url.database}"
    host = f"{url.host or 'localhost'}:{url.port or 5432}"
    return f"database {url.database} at {host}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _primary(exc: BaseException) -> str:
    """The database's own message, first line, without driver prefixes."""
    orig = getattr(exc, "orig", exc)
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(orig) or type(orig).__name__
    return _one_line(text.strip().splitlines()[0] if text.strip() else text)


def _connect_error(exc: sa.exc.DBAPIError, url: sa.URL, target: SqlTarget) -> TuskError:
    text = str(exc.orig)
    host = f"{url.host or 'localhost'}:{url.port or 5432}"
    user = url.username or "(no user)"
    if "password authentication failed" in text or "no password supplied" in text:
        source = f" from {target.password_from}" if target.password_from else ""
        return StorageError(
            f"PostgreSQL at {host} refused the credentials of user {user} (the password"
            f"{source}): check the secret"
        )
    m = re.search(r'database "([^"]+)" does not exist', text)
    if m:
        return StorageError(f"database {m.group(1)} does not exist at {host}: create it first")
    m = re.search(r'role "([^"]+)" does not exist', text)
    if m:
        return StorageError(f"user {m.group(1)} does not exist at {host}")
    if "no pg_hba.conf entry" in text:
        return StorageError(f"PostgreSQL at {host} does not let user {user} in (pg_hba.conf)")
    if not _is_pg(url):
        return StorageError(f"cannot open {_where(url)}: {_primary(exc)}")
    return Unavailable(f"database server at {host} is unreachable: {_primary(exc)}")


def _write_error(exc: BaseException, where: str, path: str = "") -> TuskError:
    """A driver error while writing: one line, classified as the module's docs say."""
    orig = getattr(exc, "orig", exc)
    sqlstate = str(getattr(orig, "sqlstate", "") or "")
    diag = getattr(orig, "diag", None)
    context = getattr(diag, "context", None) if diag is not None else None
    text = _primary(exc)
    if context:
        text += f" ({_one_line(context.strip().splitlines()[0])})"
    if path:
        text = f"{path}: {text}"
    if sqlstate.startswith(("22", "23")) or isinstance(
        exc, sa.exc.DataError | sa.exc.IntegrityError
    ):
        # 22: data exception (bad value), 23: integrity constraint: the files are wrong.
        return InvalidArgument(f"{where}: {text}")
    if sqlstate.startswith("08") or sqlstate in ("57P01", "57P03"):  # connection lost
        return Unavailable(f"{where} went away: {text}")
    if sqlstate == "42501":
        return StorageError(f"{where} refused the write (permission denied): {text}")
    return StorageError(f"{where}: {text}")


# Tables


def _table_name(path: str) -> str:
    parts = path.strip("/").split("/")
    if len(parts) < 2:
        raise InvalidArgument(
            f"{path} is not in a folder: SQL egress writes the files under each top-level "
            "folder into the table of that name (put it at /<table>/...)"
        )
    return parts[0]


def _open_table(conn: Connection, name: str, default_schema: str | None, where: str) -> sa.Table:
    schema, _, table = name.rpartition(".")
    schema = schema or default_schema or ""
    tried = [table] if table == table.lower() else [table, table.lower()]
    for candidate in tried:  # as Pachyderm, an unquoted name matches in any case
        try:
            return sa.Table(candidate, sa.MetaData(), schema=schema or None, autoload_with=conn)
        except sa.exc.NoSuchTableError:
            continue
    shown = f"{schema}.{table}" if schema else table
    raise StorageError(
        f"table {shown} does not exist in {where}: create it first (egress replaces the rows "
        "of existing tables)"
    )


def _columns_for(table: sa.Table, names: Iterable[str], what: str) -> list[sa.Column[Any]]:
    by_name = {c.name: c for c in table.columns}
    by_lower = {c.name.lower(): c for c in table.columns}
    out = []
    for n in names:
        col = by_name.get(n)
        if col is None:
            col = by_lower.get(n.lower())
        if col is None:
            raise StorageError(
                f"table {table.name} has no column {n} ({what}); its columns: {', '.join(by_name)}"
            )
        out.append(col)
    return out


# Reading files


def _lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a stream of blocks, each with its b"\\n" (the last may lack it)."""
    rest = b""
    for block in blocks:
        data = rest + bytes(block)
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            yield data[start : end + 1]
            start = end + 1
        rest = data[start:]
    if rest:
        yield rest


def _split_header(blocks: Iterable[bytes]) -> tuple[bytes, Iterator[bytes]]:
    """The first CSV record's bytes (quoted newlines included) and the stream after it."""
    stream = iter(blocks)
    head = b""
    search = 0
    for block in stream:
        head += bytes(block)
        while True:
            end = head.find(b"\n", search)
            if end < 0:
                break
            search = end + 1
            if head[:end].count(b'"') % 2 == 0:  # not inside a quoted field
                return head[: end + 1], _chain([head[end + 1 :]], stream)
    return head, iter(())


def _chain(first: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield from (b for b in first if b)
    yield from rest


def _decode(data: bytes, path: str, line: int) -> str:
    try:
        return data.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"{path} line {line}: not UTF-8 text") from None


def _header(record: bytes, path: str, columns: tuple[str, ...]) -> list[str]:
    return _check_header(next(csv.reader([_decode(record, path, 1)]), []), path, columns)


def _check_header(names: list[str], path: str, columns: tuple[str, ...]) -> list[str]:
    """The header's column names, in its order, once they are exactly ``columns``."""
    names = [n.strip() for n in names]
    if sorted(names) != sorted(columns):
        raise InvalidArgument(
            f"{path}: the CSV header ({', '.join(names) or 'empty'}) does not name the "
            f"columns of file_format.columns ({', '.join(columns)}); the first row of each "
            "file must be a header naming them"
        )
    return names


# Writers


class _PgError(Exception):
    """A driver error while one file is written, with the file's path."""

    def __init__(self, cause: BaseException, path: str) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.path = path


class _PgWriter:
    """PostgreSQL: COPY FROM STDIN on the transaction's own connection."""

    def __init__(self, conn: Connection, target: SqlTarget) -> None:
        self.conn = conn
        self.target = target

    def _raw(self) -> Any:
        return self.conn.connection.dbapi_connection

    def _name(self, table: sa.Table) -> str:
        prep = self.conn.dialect.identifier_preparer
        return prep.format_table(table)

    def empty(self, table: sa.Table) -> None:
        # Self-conflicting but readers pass: two jobs egressing into one table take turns, so
        # the second's DELETE sees the first's rows (no duplicates), and readers never wait.
        self.conn.exec_driver_sql(f"LOCK TABLE {self._name(table)} IN SHARE ROW EXCLUSIVE MODE")
        self.conn.execute(sa.delete(table))

    def write(self, table: sa.Table, path: str, blocks: Iterable[bytes]) -> int:
        prep = self.conn.dialect.identifier_preparer
        if self.target.file_format == "CSV":
            if self.target.columns:
                record, rest = _split_header(blocks)
                if not record.strip():
                    return 0  # an empty file: no header, no rows
                names = _header(record, path, self.target.columns)
                cols = _columns_for(table, names, f"named by the header of {path}")
                stream: Iterable[bytes] = _chain([record], rest)
                options = "FORMAT csv, HEADER true"  # line numbers in errors match the file's
            else:
                cols, stream, options = list(table.columns), blocks, "FORMAT csv"
            sql = f"COPY {self._name(table)} ({', '.join(prep.quote(c.name) for c in cols)}) "
            sql += f"FROM STDIN ({options})"

            def chunks(copy: Any) -> None:
                for block in stream:
                    copy.write(block)

            return self._copy(sql, path, chunks)
        names = list(self.target.columns) or [c.name for c in table.columns]
        cols = _columns_for(table, names, "file_format.columns")
        sql = f"COPY {self._name(table)} ({', '.join(prep.quote(c.name) for c in cols)}) "
        sql += "FROM STDIN"

        def rows(copy: Any) -> None:
            for _n, obj in _json_objects(blocks, path):
                copy.write_row([_json_value(obj.get(n)) for n in names])

        return self._copy(sql, path, rows)

    def _copy(self, sql: str, path: str, feed: Callable[[Any], object]) -> int:
        import psycopg

        try:
            with self._raw().cursor() as cur:
                with cur.copy(sql) as copy:
                    feed(copy)
                return int(cur.rowcount)
        except psycopg.Error as exc:
            raise _PgError(exc, path) from exc


def _json_objects(blocks: Iterable[bytes], path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, line in enumerate(_lines(blocks), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            msg = getattr(exc, "msg", str(exc))
            raise InvalidArgument(f"{path} line {n}: not JSON ({msg})") from None
        if not isinstance(obj, dict):
            raise InvalidArgument(
                f"{path} line {n}: a JSON {type(obj).__name__}, not an object; each line "
                "must be one object of column: value"
            )
        yield n, obj


def _json_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


class _RowWriter:
    """Any other database (SQLite): batched INSERTs of values converted to column types."""

    def __init__(self, conn: Connection, target: SqlTarget) -> None:
        self.conn = conn
        self.target = target

    def empty(self, table: sa.Table) -> None:
        self.conn.execute(sa.delete(table))

    def write(self, table: sa.Table, path: str, blocks: Iterable[bytes]) -> int:
        if self.target.file_format == "CSV":
            records = self._csv(table, path, blocks)
        else:
            names = list(self.target.columns) or [c.name for c in table.columns]
            cols = _columns_for(table, names, "file_format.columns")
            records = (
                (n, [(c, obj.get(name)) for c, name in zip(cols, names, strict=True)])
                for n, obj in _json_objects(blocks, path)
            )
        written = 0
        batch: list[dict[str, Any]] = []
        for line, pairs in records:
            batch.append({c.key: _convert(c, v, path, line) for c, v in pairs})
            if len(batch) >= _BATCH_ROWS:
                written += self._insert(table, batch, path)
                batch = []
        if batch:
            written += self._insert(table, batch, path)
        return written

    def _csv(
        self, table: sa.Table, path: str, blocks: Iterable[bytes]
    ) -> Iterator[tuple[int, list[tuple[sa.Column[Any], Any]]]]:
        lines = _lines(blocks)
        numbered = ((n, _decode(b, path, n)) for n, b in enumerate(lines, start=1))
        where = {"line": 0}

        def text() -> Iterator[str]:
            for n, s in numbered:
                where["line"] = n
                yield s

        reader = csv.reader(text())
        cols = list(table.columns)
        if self.target.columns:
            header = next(reader, None)
            if header is None:
                return
            names = _check_header(header, path, self.target.columns)
            cols = _columns_for(table, names, f"named by the header of {path}")
        try:
            for record in reader:
                if not record:
                    continue
                if len(record) != len(cols):
                    raise InvalidArgument(
                        f"{path} line {where['line']}: {len(record)} fields, expected "
                        f"{len(cols)} ({', '.join(c.name for c in cols)})"
                    )
                yield where["line"], list(zip(cols, record, strict=True))
        except csv.Error as exc:
            raise InvalidArgument(f"{path} line {where['line']}: {exc}") from None

    def _insert(self, table: sa.Table, batch: list[dict[str, Any]], path: str) -> int:
        try:
            self.conn.execute(table.insert(), batch)
        except sa.exc.DBAPIError as exc:
            raise _write_error(exc, f"table {table.name}", path) from exc
        return len(batch)


_TRUE = {"true", "t", "1", "yes", "y", "on"}
_FALSE = {"false", "f", "0", "no", "n", "off"}


def _convert(col: sa.Column[Any], value: Any, path: str, line: int) -> Any:
    """A CSV string or JSON value as the column's Python type (None for "" or null)."""
    if value is None or value == "":
        return None
    kind = col.type
    try:
        if isinstance(kind, sa.Boolean):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("not a boolean")
        if isinstance(kind, sa.Integer):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("not an integer")
            return int(value)
        if isinstance(kind, sa.Float):
            return float(value)
        if isinstance(kind, sa.Numeric):
            return decimal.Decimal(str(value))
        if isinstance(kind, sa.DateTime):
            return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if isinstance(kind, sa.Date):
            return dt.date.fromisoformat(str(value))
        if isinstance(value, dict | list):
            return json.dumps(value)
        return value if isinstance(value, str) else json.dumps(value)
    except (ValueError, decimal.InvalidOperation):
        raise InvalidArgument(
            f"{path} line {line}: column {col.name}: {str(value)[:60]!r} is not a valid "
            f"{str(kind).lower()}"
        ) from None
