"""``tusk sql`` and ``tusk diff table``: DuckDB over versioned files (see tusk.sdk.sql).

Results stream out a record batch at a time as JSON or CSV; the table for people shows the
first :data:`TABLE_ROWS` rows and says how many there were.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tusk.cli.core import emit, fail, get_client, output_format, output_option
from tusk.cli.render import print_fields, print_table

if TYPE_CHECKING:
    from tusk.sdk import SqlCommit, TableDiff
    from tusk.sdk.sql import SqlRows

F = TypeVar("F", bound=Callable[..., Any])
TABLE_ROWS = 1000


def rows_output_option(f: F) -> F:
    """``-o table|json|csv``: as every command's ``-o``, with CSV for rows."""
    return output_option(
        f,
        ("table", "json", "csv"),
        "Output format: a table for people (default), JSON (an array of rows) or CSV.",
    )


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    return json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


# tusk sql


@click.command("sql")
@click.argument("query", required=False)
@click.option(
    "-f",
    "--file",
    "query_file",
    type=click.File("r"),
    default=None,
    help="Read the query from a file ('-' for stdin) instead of the argument.",
)
@click.option(
    "--to",
    "to",
    metavar="REPO@BRANCH:/PATH",
    default=None,
    help="Commit the result as this file (.parquet, .csv or .jsonl), with the query and "
    "the commits and files it read in the commit's description (and a Parquet file's "
    "metadata).",
)
@click.option("-d", "--description", default="", help="With --to: the commit's description.")
@rows_output_option
@click.pass_context
def sql(
    ctx: click.Context, query: str | None, query_file: Any, to: str | None, description: str
) -> None:
    """Run a SQL query (DuckDB's) over versioned files, read in place at their commits.

    Tables are files named in quotes: FROM 'sales@master:/2024/*.parquet' (CSV, Parquet, JSON
    lines; read_csv('repo@v1:/x.csv', delim=';') for options). Any ref works: a branch, a tag,
    a commit id, master^2; each is pinned to one commit for the whole query. Only queries
    run: COPY, ATTACH, INSTALL, reading local files or URLs and the like are refused.

    \b
      tusk sql "SELECT region, sum(amount) FROM 'sales@master:/*.parquet' GROUP BY 1"
      tusk sql -o csv "SELECT * FROM 'sales@v1:/jan.csv'" > jan.csv
      tusk sql "SELECT ..." --to reports@master:/by-region.parquet
    """
    if (query is None) == (query_file is None):
        fail("give the query as an argument or with -f FILE ('-' for stdin), not both or neither")
    text = query if query is not None else query_file.read()
    client = get_client(ctx)
    if to is not None:
        result = client.sql_to(text, to, description)
        emit(ctx, result, lambda: _committed(result))
        return
    with client.sql_rows(text) as rows:
        {"json": _json_rows, "csv": _csv_rows}.get(output_format(ctx), _table_rows)(rows)


def _json_rows(rows: SqlRows) -> None:
    out = sys.stdout
    first = True
    out.write("[")
    for row in rows:
        out.write(("\n  " if first else ",\n  ") + _json(dict(zip(rows.columns, row, strict=True))))
        first = False
    out.write("\n]\n" if not first else "]\n")


def _csv_rows(rows: SqlRows) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(rows.columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])


def _table_rows(rows: SqlRows) -> None:
    shown: list[list[str]] = []
    total = 0
    for row in rows:
        total += 1
        if len(shown) < TABLE_ROWS:
            shown.append([_text(v) for v in row])
    print_table(rows.columns, shown)
    if total > len(shown):
        click.echo(f"({len(shown)} of {total} rows shown: -o csv or -o json for all)", err=True)


def _committed(r: SqlCommit) -> None:
    commits = sorted({f"{i.repo}@{i.commit}" for i in r.inputs})
    print_fields(
        [
            ("Committed", f"{r.commit.repo}@{r.commit.id}:{r.path}"),
            ("Rows", str(r.rows)),
            ("Commits read", ", ".join(commits) or "none"),
            ("Files read", str(len(r.files_read))),
        ]
    )


# tusk diff table


@click.command("table")
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@click.argument("path", metavar="[:/PATH]", required=False)
@click.option(
    "-k",
    "--key",
    "keys",
    multiple=True,
    required=True,
    metavar="COLUMN",
    help="A key column: rows match by it (repeat, or a,b, for a composite key).",
)
@click.option("--summary", is_flag=True, help="Print the counts only, not the rows.")
@rows_output_option
@click.pass_context
def diff_table(
    ctx: click.Context, old: str, new: str, path: str | None, keys: tuple[str, ...], summary: bool
) -> None:
    """Show the rows added, removed and changed in a table from OLD to NEW.

    OLD and NEW are REPO@REF[:/PATH] (a branch, tag, commit id, master^1); PATH names the
    file when they do not (:/path/table.parquet; CSV and JSON lines too). Rows match by
    their --key columns, which must be unique on both sides.

    \b
      tusk diff table sales@v1 sales@master :/orders.parquet --key id
      tusk diff table sales@master^1 sales@master :/lines.csv --key order,line -o json
    """
    d = get_client(ctx).diff_table(old, new, path, keys)
    fmt = output_format(ctx)
    if fmt == "json":
        click.echo(json.dumps(d.summary() if summary else d.to_dict(), indent=2, default=str))
        return
    if fmt == "csv":
        _diff_csv(d)
        return
    _diff_summary(d)
    if not summary:
        _diff_rows(d)


def _diff_summary(d: TableDiff) -> None:
    s = d.summary()
    fields = [
        ("Old", f"{d.old} ({d.old_rows} rows)"),
        ("New", f"{d.new} ({d.new_rows} rows)"),
        ("Key", ", ".join(d.key)),
        ("Rows", f"{s['added']} added, {s['removed']} removed, {s['changed']} changed"),
    ]
    for label, cols in (
        ("Columns added", d.columns_added),
        ("Columns removed", d.columns_removed),
        ("Columns retyped", d.columns_retyped),
    ):
        if cols:
            fields.append((label, ", ".join(cols)))
    print_fields(fields)


def _section(title: str, columns: Sequence[str], rows: list[list[str]]) -> None:
    if rows:
        click.echo(f"\n{title} ({len(rows)})")
        print_table(columns, rows)


def _diff_rows(d: TableDiff) -> None:
    for title, table in (("added", d.added), ("removed", d.removed)):
        rows = [[_text(v) for v in r.values()] for r in table.to_pylist()]
        _section(title, table.column_names, rows)
    cells = []
    for r in d.changed.to_pylist():
        for col in r["columns"]:
            key = [_text(r[k]) for k in d.key]
            cells.append([*key, col, _text(r["old"][col]), _text(r["new"][col])])
    _section("changed", [*d.key, "COLUMN", "OLD", "NEW"], cells)


def _diff_csv(d: TableDiff) -> None:
    """One line per changed cell, added row or removed row: change, key..., column, old, new."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["change", *d.key, "column", "old", "new"])
    for change, table in (("added", d.added), ("removed", d.removed)):
        for r in table.to_pylist():
            old, new = (None, _json(r)) if change == "added" else (_json(r), None)
            writer.writerow([change, *(r[k] for k in d.key), "", old, new])
    for r in d.changed.to_pylist():
        for col in r["columns"]:
            writer.writerow(["changed", *(r[k] for k in d.key), col, r["old"][col], r["new"][col]])
