"""Row-level diff of one table at two commits (``tusk diff table``), by DuckDB over ``tusk://``.

Both sides are pinned to commits and read on one locked connection (:mod:`tusk.sdk.sql`), in
one full outer join on the key columns that keeps only the rows that differ: a row whose key
is only in the new table was added, only in the old one removed, in both with any other
common column distinct (``IS DISTINCT FROM``: NULLs compare equal) changed. Keys must be
unique on each side (checked first, reading the key columns only); columns in only one side
are reported, and compared nowhere.
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import TYPE_CHECKING, Any

from tusk.errors import InvalidArgument
from tusk.pfs.models import CommitInfo
from tusk.pfs.refs import parse_address
from tusk.sdk.sql import FORMATS, Query, connect, pin
from tusk.sdk.sqlfs import tusk_url
from tusk.values import frozen

if TYPE_CHECKING:
    import pyarrow as pa

    from tusk.sdk.base import BaseClient

_READERS = {"parquet": "read_parquet", "csv": "read_csv", "json": "read_json"}
# Column names of the join's result that cannot clash with a table's own.
_CHANGE, _OLD, _NEW, _COLS = "__tusk_change", "__tusk_old", "__tusk_new", "__tusk_columns"


@frozen
class TableDiff:
    """Rows added, removed and changed from ``old`` to ``new`` (addresses pinned to commits).

    ``added`` holds the new rows, ``removed`` the old ones (Arrow tables, every column of
    their side); ``changed`` one row per changed key: the key columns, ``columns`` (the names
    of the columns that changed), and ``old`` and ``new`` (structs of the common columns).
    """

    old: str
    new: str
    key: tuple[str, ...]
    old_rows: int
    new_rows: int
    added: pa.Table
    removed: pa.Table
    changed: pa.Table
    columns_added: list[str] = field(default_factory=list)
    columns_removed: list[str] = field(default_factory=list)
    columns_retyped: list[str] = field(default_factory=list)  # compared as text

    def summary(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "key": list(self.key),
            "old_rows": self.old_rows,
            "new_rows": self.new_rows,
            "added": self.added.num_rows,
            "removed": self.removed.num_rows,
            "changed": self.changed.num_rows,
            "columns_added": self.columns_added,
            "columns_removed": self.columns_removed,
            "columns_retyped": self.columns_retyped,
        }

    def to_dict(self) -> dict[str, Any]:
        """The summary and every row (JSON-ready but for dates and decimals: ``default=str``)."""
        return {
            "summary": self.summary(),
            "added": self.added.to_pylist(),
            "removed": self.removed.to_pylist(),
            "changed": self.changed.to_pylist(),
        }


def _side(text: str, path: str | None, which: str) -> tuple[str, str]:
    """(``repo@ref``, path) of one side: its own path, else ``path``."""
    addr = parse_address(text)
    if not addr.explicit_ref:
        raise InvalidArgument(f"{which} {text!r}: give repo@ref (a branch, tag or commit)")
    head = text.partition(":")[0]
    own = addr.path
    given = parse_address(f"{head}:{path.lstrip(':')}").path if path else None
    if own is not None and given is not None and own != given:
        raise InvalidArgument(f"{which} {text!r} has a path; give it there or as PATH, not both")
    chosen = own or given
    if chosen is None or chosen == "/":
        raise InvalidArgument("name the table's file: repo@A repo@B :/path/table.parquet")
    return head, chosen


def _reader(path: str) -> str:
    fmt = FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise InvalidArgument(f"{path}: a table diff reads .parquet, .csv or .jsonl files")
    return _READERS[fmt]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def diff_tables(
    client: BaseClient, old: str, new: str, path: str | None, key: tuple[str, ...]
) -> TableDiff:
    keys = tuple(k.strip() for part in key for k in part.split(",") if k.strip())
    if not keys:
        raise InvalidArgument("give the key columns: --key id (or --key a --key b)")
    commits: dict[str, CommitInfo] = {}
    sides = []
    for which, text in (("OLD", old), ("NEW", new)):
        ref, file = _side(text, path, which)
        pinned = pin(client, f"{ref}:{file}", commits)
        assert pinned is not None  # _side made it an address
        sides.append(pinned)
    o_in, n_in = sides
    o_src = f"{_reader(o_in.path)}({_literal(tusk_url(o_in.repo, o_in.commit, o_in.path))})"
    n_src = f"{_reader(n_in.path)}({_literal(tusk_url(n_in.repo, n_in.commit, n_in.path))})"
    with connect(client, sides) as q:
        o_cols, n_cols = _columns(q, o_src), _columns(q, n_src)
        for which, cols, text in (("OLD", o_cols, old), ("NEW", n_cols, new)):
            missing = [k for k in keys if k not in cols]
            if missing:
                raise InvalidArgument(
                    f"key column {', '.join(missing)} is not in {which} {text} "
                    f"(its columns: {', '.join(cols)})"
                )
        o_rows, n_rows = _count_unique(q, o_src, keys, old), _count_unique(q, n_src, keys, new)
        common = [c for c in o_cols if c in n_cols and c not in keys]
        retyped = [c for c in common if o_cols[c] != n_cols[c]]
        table = _differing(q, (o_src, list(o_cols)), (n_src, list(n_cols)), keys, common, retyped)
    import pyarrow.compute as pc

    change = table.column(_CHANGE)
    added = table.filter(pc.equal(change, "added")).column(_NEW)
    removed = table.filter(pc.equal(change, "removed")).column(_OLD)
    changed = table.filter(pc.equal(change, "changed"))
    return TableDiff(
        old=f"{o_in.repo}@{o_in.commit}:{o_in.path}",
        new=f"{n_in.repo}@{n_in.commit}:{n_in.path}",
        key=keys,
        old_rows=o_rows,
        new_rows=n_rows,
        added=_unnest(added, list(n_cols)),
        removed=_unnest(removed, list(o_cols)),
        changed=changed.select([*keys, _COLS, _OLD, _NEW]).rename_columns(
            [*keys, "columns", "old", "new"]
        ),
        columns_added=[c for c in n_cols if c not in o_cols],
        columns_removed=[c for c in o_cols if c not in n_cols],
        columns_retyped=retyped,
    )


def _columns(q: Query, src: str) -> dict[str, str]:
    with q.failures():
        rows = q.con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    return {r[0]: r[1] for r in rows}


def _count_unique(q: Query, src: str, keys: tuple[str, ...], text: str) -> int:
    cols = ", ".join(map(_ident, keys))
    with q.failures():
        row = q.con.execute(
            f"SELECT count(*), count(DISTINCT ({cols})) FROM (SELECT {cols} FROM {src})"
        ).fetchone()
    assert row is not None
    total, distinct = row
    if total != distinct:
        repeats = f"{total - distinct} row{'s' if total - distinct != 1 else ''}"
        raise InvalidArgument(
            f"key {', '.join(keys)} is not unique in {text}: {repeats} repeat a key (or have "
            "none); add columns to the key: --key a --key b"
        )
    return int(total)


def _differing(
    q: Query,
    old: tuple[str, list[str]],
    new: tuple[str, list[str]],
    keys: tuple[str, ...],
    common: list[str],
    retyped: list[str],
) -> pa.Table:
    """The rows that differ, with their change, changed columns and both sides' rows."""
    (o_src, o_cols), (n_src, n_cols) = old, new

    def cmp(c: str) -> str:
        o, n = f"o.{_ident(c)}", f"n.{_ident(c)}"
        if c in retyped:
            o, n = f"CAST({o} AS VARCHAR)", f"CAST({n} AS VARCHAR)"
        return f"{o} IS DISTINCT FROM {n}"

    def row(alias: str, cols: list[str], marker: str) -> str:
        fields = ", ".join(f"{_ident(c)} := {alias}.{_ident(c)}" for c in cols)
        return f"CASE WHEN {alias}.{marker} THEN struct_pack({fields}) END"

    key_out = ", ".join(f"coalesce(o.{_ident(k)}, n.{_ident(k)}) AS {_ident(k)}" for k in keys)
    using = ", ".join(map(_ident, keys))
    changed_list = (
        "list_filter(["
        + ", ".join(f"CASE WHEN {cmp(c)} THEN {_literal(c)} END" for c in common)
        + "], x -> x IS NOT NULL)"
        if common
        else "[]::VARCHAR[]"
    )
    differs = " OR ".join(cmp(c) for c in common) or "false"
    sql = f"""
        SELECT {key_out},
            CASE WHEN o.__tusk_o IS NULL THEN 'added' WHEN n.__tusk_n IS NULL THEN 'removed'
                 ELSE 'changed' END AS {_CHANGE},
            {changed_list} AS {_COLS},
            {row("o", o_cols, "__tusk_o")} AS {_OLD},
            {row("n", n_cols, "__tusk_n")} AS {_NEW}
        FROM (SELECT *, true AS __tusk_o FROM {o_src}) o
        FULL OUTER JOIN (SELECT *, true AS __tusk_n FROM {n_src}) n USING ({using})
        WHERE o.__tusk_o IS NULL OR n.__tusk_n IS NULL OR {differs}
        ORDER BY {using}
    """
    with q.failures():
        return q.con.execute(sql).fetch_arrow_table()


def _unnest(column: Any, names: list[str]) -> pa.Table:
    """A struct column (rows of one side) as a table of the named fields."""
    import pyarrow as pa

    chunks = column.combine_chunks() if column.num_chunks else None
    if chunks is None or len(chunks) == 0:
        return pa.table({n: pa.array([], type=column.type.field(n).type) for n in names})
    return pa.Table.from_arrays([chunks.field(n) for n in names], names=names)
