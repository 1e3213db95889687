"""``tusk sql`` and ``tusk diff table`` (issue 18): -o table|json|csv, --to, bad input."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from clihelpers import Tusk

from tusk import Client


@pytest.fixture(scope="module")
def tusk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tusk]:
    home = tmp_path_factory.mktemp("cli-sql") / "home"
    with Client(home) as c:
        c.create_repo("shop")
        c.put_file("shop@master:/items.csv", b"id,name,price\n1,pen,1.5\n2,ink,3\n")
        c.put_file("shop@master:/items.csv", b"id,name,price\n1,pen,1.5\n2,ink,4\n3,pad,\n")
    yield Tusk(home)


Q = "SELECT id, name, price FROM 'shop@master:/items.csv' ORDER BY id"


def test_sql_prints_a_table_json_or_csv(tusk: Tusk) -> None:
    table = tusk("sql", Q).lines
    assert table[0].split() == ["id", "name", "price"]
    assert table[3].split() == ["3", "pad", "NULL"]
    assert tusk.json("sql", Q) == [
        {"id": 1, "name": "pen", "price": 1.5},
        {"id": 2, "name": "ink", "price": 4.0},
        {"id": 3, "name": "pad", "price": None},
    ]
    rows = list(csv.reader(io.StringIO(tusk("sql", Q, "-o", "csv").stdout)))
    assert rows == [["id", "name", "price"], ["1", "pen", "1.5"], ["2", "ink", "4.0"],
                    ["3", "pad", ""]]  # fmt: skip
    old = "SELECT sum(price) AS total FROM 'shop@master^1:/items.csv'"
    assert tusk.json("sql", old) == [{"total": 4.5}]
    empty = "SELECT * FROM 'shop@master:/items.csv' WHERE id > 9"
    assert tusk("sql", empty, "-o", "csv").stdout == "id,name,price\n"
    assert tusk.json("sql", empty) == []
    assert tusk("sql", "-f", "-", "-o", "json", input="SELECT 42 AS answer").json() == [
        {"answer": 42}
    ]


def test_sql_prints_without_loading_pyarrow(tusk: Tusk) -> None:
    """PyArrow takes 0.15 s to import here: the rows `tusk sql` prints come from DuckDB's
    own Python rows (a fresh interpreter, the real entry point)."""
    probe = (
        "import sys; from tusk.cli.main import main\n"
        f"sys.argv = ['tusk', '--home', {str(tusk.home)!r}, 'sql', {Q!r}, '-o', 'csv']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code\n"
        "print('PYARROW', 'pyarrow' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:2] == ["id,name,price", "1,pen,1.5"]
    assert out.stdout.splitlines()[-1] == "PYARROW False"


def test_sql_to_commits_and_diff_table_shows_rows(tusk: Tusk) -> None:
    out = tusk.json("sql", Q, "--to", "shop@reports:/items.parquet", "-d", "snapshot")
    assert out["rows"] == 3 and out["path"] == "/items.parquet"
    desc = tusk.json("inspect", "commit", "shop@reports")["description"]
    assert desc.startswith("snapshot\ntusk sql: 3 rows to /items.parquet")
    assert f"shop@{out['inputs'][0]['commit']}:/items.csv" in desc

    text = tusk("diff", "table", "shop@master^1", "shop@master", ":/items.csv", "--key", "id")
    assert "Rows: 1 added, 0 removed, 1 changed" in " ".join(text.stdout.split())
    assert ["2", "price", "3.0", "4.0"] in [line.split() for line in text.lines]
    full = tusk.json("diff", "table", "shop@master^1", "shop@master", ":/items.csv", "-k", "id")
    assert full["summary"]["added"] == 1
    assert full["added"] == [{"id": 3, "name": "pad", "price": None}]
    assert full["changed"][0]["columns"] == ["price"]
    assert full["changed"][0]["old"]["price"] == 3.0
    summary = tusk.json(
        "diff", "table", "shop@master^1:/items.csv", "shop@master:/items.csv", "-k", "id,name",
        "--summary",
    )  # fmt: skip
    assert (summary["key"], summary["changed"]) == (["id", "name"], 1)


def test_bad_sql_is_one_line_and_an_exit_code(tusk: Tusk) -> None:
    missing = tusk.fails("sql", "SELECT * FROM 'nope@master:/x.csv'", code=3)
    assert missing == "repo nope not found (list repos with: tusk list repo)"
    refused = tusk.fails("sql", "COPY (SELECT 1) TO '/tmp/tusk-sql-refused.csv'", code=2)
    assert refused.startswith("only queries run: COPY statements are refused")
    assert "/etc/passwd" in tusk.fails("sql", "SELECT * FROM read_csv('/etc/passwd')", code=2)
    assert "give the query" in tusk.fails("sql", code=2)
    nokey = tusk.fails("diff", "table", "shop@v0", "shop@master", ":/items.csv", "-k", "x", code=3)
    assert nokey.startswith("branch v0 not found")
    wrong = tusk.fails("diff", "table", "shop@master", "shop@master", ":/items.csv", "-k", "x",
                       code=2)  # fmt: skip
    assert wrong.startswith("key column x is not in OLD")
