"""SQL over versioned files (issue 18), in-process: DuckDB reads CSV, Parquet and JSON lines
at any commit through Tusk's file API; table diffs by key; results committed with lineage;
and a locked engine that refuses to write, attach, load or read outside Tusk."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tusk import Client
from tusk.errors import (
    BranchNotFound,
    CommitNotFound,
    CorruptObject,
    FileNotFound,
    InvalidArgument,
    QueryError,
    QueryRefused,
    RepoNotFound,
)
from tusk.sdk.sql import LINEAGE_KEY


def parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


@dataclass
class Sales:
    client: Client
    home: Path
    v1: str  # the first commit's id (also tagged v1)
    v2: str  # master's head


@pytest.fixture(scope="module")
def sales(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sales]:
    """A repo at two commits: orders (Parquet, two files), lines (CSV), events (JSON lines)."""
    home = tmp_path_factory.mktemp("sql") / "home"
    with Client(home) as c:
        c.create_repo("sales")
        first = c.put_files(
            "sales@master",
            [
                ("/orders/jan.parquet", parquet(pa.table({"id": [1, 2], "amount": [10, 20]}))),
                ("/orders/feb.parquet", parquet(pa.table({"id": [3], "amount": [30]}))),
                ("/lines.csv", b"order,line,sku,qty\n1,1,a,2\n1,2,b,1\n2,1,a,5\n"),
                ("/events.jsonl", b'{"kind": "view", "n": 1}\n{"kind": "buy", "n": 2}\n'),
            ],
        ).commit.id
        c.create_tag(f"sales@{first}", "v1")
        second = c.put_files(
            "sales@master",
            [
                ("/orders/feb.parquet", parquet(pa.table({"id": [3, 4], "amount": [35, 40]}))),
                ("/lines.csv", b"order,line,sku,qty\n1,1,a,2\n1,2,b,3\n3,1,c,1\n"),
            ],
        ).commit.id
        yield Sales(c, home, first, second)


def total(c: Client, address: str) -> int:
    return int(c.sql(f"SELECT sum(amount) AS s FROM '{address}'").column("s")[0].as_py())


def test_parquet_and_csv_read_at_each_commit(sales: Sales) -> None:
    c = sales.client
    assert total(c, "sales@master:/orders/*.parquet") == 10 + 20 + 35 + 40
    assert total(c, f"sales@{sales.v1}:/orders/*.parquet") == 10 + 20 + 30  # a commit id
    assert total(c, "sales@v1:/orders/*.parquet") == 60  # a tag
    assert total(c, "sales@master^1:/orders/*.parquet") == 60  # an ancestor
    qty = "SELECT sum(qty) AS q FROM '{}'"
    assert c.sql(qty.format("sales@master:/lines.csv")).column("q")[0].as_py() == 6
    assert c.sql(qty.format("sales@v1:/lines.csv")).column("q")[0].as_py() == 8
    # Both commits in one query: each address pinned to its own commit.
    joined = c.sql(
        "SELECT n.id, o.amount AS old, n.amount AS new FROM 'sales@v1:/orders/feb.parquet' o "
        "JOIN 'sales@master:/orders/feb.parquet' n USING (id)"
    )
    assert joined.to_pylist() == [{"id": 3, "old": 30, "new": 35}]
    # DuckDB's readers with their options, and the file name of each row.
    rows = c.sql(
        "SELECT sku, filename FROM read_csv('sales@master:/lines.csv', header=true, "
        "filename=true) ORDER BY sku"
    ).to_pylist()
    assert [r["sku"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["filename"] == f"tusk://sales@{sales.v2}/lines.csv"


def test_json_lines_arrow_pandas_and_streams(sales: Sales) -> None:
    c = sales.client
    table = c.sql("SELECT kind, n FROM 'sales@master:/events.jsonl' ORDER BY n")
    assert isinstance(table, pa.Table)
    assert table.to_pylist() == [{"kind": "view", "n": 1}, {"kind": "buy", "n": 2}]
    df = c.sql_df("SELECT count(*) AS n FROM read_json('sales@master:/events.jsonl')")
    assert df["n"].tolist() == [2]
    reader = c.sql_reader("SELECT * FROM range(5) t(i) WHERE i > 10")
    assert reader.schema.names == ["i"] and reader.read_all().num_rows == 0
    with c.sql_rows("SELECT kind, n FROM 'sales@master:/events.jsonl' ORDER BY n") as rows:
        assert rows.columns == ["kind", "n"]
        assert list(rows) == [("view", 1), ("buy", 2)]
    rows = c.sql_rows("SELECT * FROM range(100000) t(i)", batch_rows=1000)
    assert next(iter(rows)) == (0,)
    rows.close()  # half read: closing ends the query and its connection


def test_missing_repo_ref_or_file_is_one_error_naming_it(sales: Sales) -> None:
    c = sales.client
    with pytest.raises(RepoNotFound, match="repo nosuch not found"):
        c.sql("SELECT * FROM 'nosuch@master:/x.csv'")
    with pytest.raises(BranchNotFound, match="branch dev not found in repo sales"):
        c.sql("SELECT * FROM 'sales@dev:/lines.csv'")
    with pytest.raises(CommitNotFound):
        c.sql("SELECT * FROM 'sales@0123456789abcdef0123456789abcdef:/lines.csv'")
    with pytest.raises(FileNotFound, match=r"no such file sales@master:/nope\.csv"):
        c.sql("SELECT * FROM 'sales@master:/nope.csv'")
    with pytest.raises(FileNotFound, match=r"no file matches sales@v1:/orders/\*\.csv"):
        c.sql("SELECT * FROM 'sales@v1:/orders/*.csv'")
    with pytest.raises(QueryError, match="Binder Error"):
        c.sql("SELECT nosuch FROM 'sales@master:/lines.csv'")
    with pytest.raises(QueryError, match="syntax error"):
        c.sql("SELEC 1")


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd.csv'",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_csv('file:///etc/passwd')",
        "SELECT * FROM read_csv('https://example.com/x.csv')",
        "SELECT * FROM read_csv('tusk://sales@master/../../etc/passwd')",
        "COPY (SELECT 1) TO '{tmp}/out.csv'",
        "COPY (SELECT 1) TO 'tusk://sales@master/out.csv'",
        "EXPORT DATABASE '{tmp}/export'",
        "ATTACH '{tmp}/x.db'",
        "ATTACH 'tusk://sales@master/x.db' AS x",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "CREATE TABLE t AS SELECT 1",
        "SELECT 1; COPY (SELECT 1) TO '{tmp}/out.csv'",
    ],
)
def test_writing_attaching_loading_or_reading_outside_is_refused(
    sales: Sales, tmp_path: Path, statement: str
) -> None:
    with pytest.raises(QueryRefused):
        sales.client.sql(statement.format(tmp=tmp_path))
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_diff_table_with_a_composite_key(sales: Sales) -> None:
    c = sales.client
    d = c.diff_table("sales@v1", "sales@master", ":/lines.csv", key=["order", "line"])
    assert d.summary() | {"old": "", "new": ""} == {
        "old": "",
        "new": "",
        "key": ["order", "line"],
        "old_rows": 3,
        "new_rows": 3,
        "added": 1,
        "removed": 1,
        "changed": 1,
        "columns_added": [],
        "columns_removed": [],
        "columns_retyped": [],
    }
    assert d.old == f"sales@{sales.v1}:/lines.csv" and d.new == f"sales@{sales.v2}:/lines.csv"
    assert d.added.to_pylist() == [{"order": 3, "line": 1, "sku": "c", "qty": 1}]
    assert d.removed.to_pylist() == [{"order": 2, "line": 1, "sku": "a", "qty": 5}]
    [changed] = d.changed.to_pylist()
    assert (changed["order"], changed["line"], changed["columns"]) == (1, 2, ["qty"])
    assert (changed["old"]["qty"], changed["new"]["qty"]) == (1, 3)
    # "a,b" is the same key; Parquet, with the path in the addresses.
    same = c.diff_table("sales@master:/lines.csv", "sales@master:/lines.csv", key=["order,line"])
    assert (same.added.num_rows, same.removed.num_rows, same.changed.num_rows) == (0, 0, 0)
    feb = c.diff_table("sales@v1:/orders/feb.parquet", "sales@master:/orders/feb.parquet")
    assert [r["id"] for r in feb.added.to_pylist()] == [4]
    assert feb.changed.to_pylist()[0]["columns"] == ["amount"]
    json.dumps(d.to_dict(), default=str)  # -o json's rows

    with pytest.raises(InvalidArgument, match="key order is not unique"):
        c.diff_table("sales@v1", "sales@master", ":/lines.csv", key=["order"])
    with pytest.raises(InvalidArgument, match="key column nope is not in OLD"):
        c.diff_table("sales@v1", "sales@master", ":/lines.csv", key=["nope"])
    with pytest.raises(InvalidArgument, match="name the table's file"):
        c.diff_table("sales@v1", "sales@master", key=["id"])


def test_sql_to_commits_the_result_with_its_lineage(sales: Sales) -> None:
    c = sales.client
    query = "SELECT id, amount * 2 AS doubled FROM 'sales@master:/orders/*.parquet' ORDER BY id"
    result = c.sql_to(query, "sales@reports:/doubled.parquet", description="nightly")
    assert result.rows == 4 and result.path == "/doubled.parquet"
    assert result.commit.branch == "reports"
    read = [f"sales@{sales.v2}:/orders/feb.parquet", f"sales@{sales.v2}:/orders/jan.parquet"]
    assert sorted(result.files_read) == read
    info = c.inspect_commit("sales@reports")
    assert info.id == result.commit.id
    assert info.provenance == [f"sales@{sales.v2}"]  # recorded as a job's inputs are
    (inp,) = c.lineage("sales@reports:/doubled.parquet").inputs
    assert (inp.repo, inp.commit) == ("sales", sales.v2)
    assert info.description.splitlines()[0] == "nightly"
    assert f"commits read: sales@{sales.v2}" in info.description
    assert all(f in info.description for f in read)
    data = c.get_file("sales@reports:/doubled.parquet")
    assert pq.read_table(io.BytesIO(data)).column("doubled").to_pylist() == [20, 40, 70, 80]
    lineage = json.loads(pq.read_metadata(io.BytesIO(data)).metadata[LINEAGE_KEY])
    assert lineage["query"] == query
    assert lineage["inputs"][0]["commit"] == sales.v2
    # The result reads back like any table; CSV and JSON lines by extension.
    doubled = c.sql("SELECT sum(doubled) AS s FROM 'sales@reports:/doubled.parquet'")
    assert doubled.column("s")[0].as_py() == 210
    c.sql_to("SELECT 1 AS a", "sales@reports:/one.csv")
    assert c.get_file("sales@reports:/one.csv") == b"a\n1\n"
    c.sql_to("SELECT 1 AS a", "sales@reports:/one.jsonl")
    assert c.get_file("sales@reports:/one.jsonl") == b'{"a": 1}\n'
    with pytest.raises(InvalidArgument, match="extension"):
        c.sql_to("SELECT 1", "sales@reports:/out.txt")
    with pytest.raises(RepoNotFound):
        c.sql_to("SELECT 1", "nosuch@master:/out.csv")


def test_a_file_reader_reads_any_range_and_checks_every_chunk(tmp_path: Path) -> None:
    rng = random.Random(18)
    noise = rng.randbytes(3 * 1024 * 1024)  # chunks stored raw
    text = b"".join(b"row %d,%d\n" % (i, i % 7) for i in range(200_000))  # zstd chunks
    data = noise[:1_000_000] + text + noise[1_000_000:]
    with Client(tmp_path / "home") as c:
        c.create_repo("r")
        c.put_file("r@master:/f", data)
        reader = c.file_reader("r@master:/f")
        assert reader.size == len(data)
        for _ in range(200):
            start = rng.randrange(len(data) + 10)
            stop = start + rng.choice([1, 100, 128 * 1024, 600_000, 3_000_000])
            assert reader.read(start, stop) == data[start:stop], (start, stop)
        pos = 0
        while pos < len(data):  # a scan, as DuckDB reads
            n = rng.choice([8, 70_000, 2_000_000])
            assert reader.read(pos, pos + n) == data[pos : pos + n]
            pos += n
        # A damaged pack is caught, not read as data.
        packs = [p for p in (tmp_path / "home" / "objects" / "packs").rglob("*") if p.is_file()]
        pack = max(packs, key=lambda p: p.stat().st_size)
        raw = bytearray(pack.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        pack.write_bytes(bytes(raw))
        with pytest.raises(CorruptObject):
            fresh = c.file_reader("r@master:/f")
            for start in range(0, len(data), 1_000_000):
                fresh.read(start, start + 1_000_000)


def test_reads_assemble_raw_and_compressed_chunks_from_several_packs(tmp_path: Path) -> None:
    """The reader behind ``tusk sql`` builds each answer in place: raw chunks read straight
    into their place, compressed or cut ones through a buffer of their own, a run of
    neighbours in a pack at a time. A file whose chunks interleave two packs and both
    codecs reads back exactly, from two threads at once (as DuckDB's) and through a backend
    without ``read_into`` (S3's path), and a damaged chunk of either kind is caught."""
    import concurrent.futures

    from tusk.storage.packs import CODEC_RAW, pack_key

    rng = random.Random(1818)
    old = rng.randbytes(2 * 1024 * 1024)
    text = b"".join(b"row %d,%d\n" % (i, i % 7) for i in range(60_000))  # zstd chunks
    fresh = rng.randbytes(1024 * 1024)
    data = old[:1_000_000] + text + fresh + old[1_000_000:] + text[:300_000]
    home = tmp_path / "home"
    with Client(home) as c:
        c.create_repo("r")
        c.put_file("r@master:/old", old)  # the first pack: /f's copies of `old` dedup to it
        c.put_file("r@master:/f", data)
        reader = c.file_reader("r@master:/f")
        span = reader._span  # type: ignore[attr-defined]
        locs = span._locations(0, len(span._refs) - 1)
        assert len({loc.pack for loc in locs}) >= 2
        assert {loc.codec for loc in locs} >= {CODEC_RAW} and any(
            loc.codec != CODEC_RAW for loc in locs
        )

        def check(n: int, seed: int) -> None:
            r = random.Random(seed)
            for _ in range(n):
                start = r.randrange(len(data))
                stop = start + r.choice([1, 5000, 70_000, 300_000, 1_500_000, len(data)])
                assert reader.read(start, stop) == data[start:stop], (start, stop)

        check(150, 1)
        pos = 0
        while pos < len(data):  # a scan, each read starting in the chunk the last ended in
            n = rng.choice([65_536, 250_000, 1_000_000])
            assert reader.read(pos, pos + n) == data[pos : pos + n]
            pos += n
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda seed: check(60, seed), [2, 3]))
        span._read_into = None  # as on a backend that can only get a range
        check(60, 4)

        def damage(codec_raw: bool) -> tuple[int, int]:
            """Flip a byte in the middle of a chunk of that kind; its place in the file."""
            k = next(
                i
                for i, loc in enumerate(locs)
                if (loc.codec == CODEC_RAW) == codec_raw and 0 < i < len(locs) - 1
            )
            loc = locs[k]
            pack = home / "objects" / pack_key(loc.pack)
            raw = bytearray(pack.read_bytes())
            raw[loc.offset + loc.length // 2] ^= 0xFF
            pack.write_bytes(bytes(raw))
            return span._ends[k - 1], span._ends[k]

        for codec_raw in (True, False):
            lo, hi = damage(codec_raw)
            for start, stop in ((lo - 10, hi + 10), (lo + 1, hi - 1), (lo - 10, lo + 10)):
                with pytest.raises(CorruptObject):
                    c.file_reader("r@master:/f").read(start, stop)  # whole, cut, its edge
