"""SQL against a server (issue 18): the query runs in the client, which reads byte ranges of
the files over REST (``Range`` on GET .../files/...), so every read passes the server's one
permission check as any file read does."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apihelpers import Live, start_live, stop_live

from tusk import Client
from tusk.errors import PermissionDenied, QueryRefused, RepoNotFound
from tusk.sdk.remote import RemoteClient

API = "/api/v1"


def parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, str]]:
    """A server on a home with a table at two commits, auth on; (live, the root token)."""
    home = tmp_path_factory.mktemp("sql-remote") / "home"
    with Client(home) as c:
        c.create_repo("m")
        c.put_file("m@master:/big.bin", bytes(range(256)) * 4096)  # 1 MiB
        c.put_file("m@master:/t.parquet", parquet(pa.table({"k": [1, 2], "v": ["a", "b"]})))
        c.put_file("m@master:/t.parquet", parquet(pa.table({"k": [1, 3], "v": ["z", "c"]})))
    live = start_live(home)
    with RemoteClient(live.url) as anyone:
        root = anyone.auth_activate()
    try:
        yield live, root
    finally:
        stop_live(live)


def test_sql_diff_and_sql_to_over_http(served: tuple[Live, str]) -> None:
    live, root = served
    with RemoteClient(live.url, token=root) as c:
        now = c.sql("SELECT k, v FROM 'm@master:/t.parquet' ORDER BY k").to_pylist()
        before = c.sql_df("SELECT k, v FROM 'm@master^1:/t.parquet' ORDER BY k")
        assert now == [{"k": 1, "v": "z"}, {"k": 3, "v": "c"}]
        assert before.to_dict("records") == [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}]
        d = c.diff_table("m@master^1", "m@master", ":/t.parquet", key=["k"])
        assert (d.added.num_rows, d.removed.num_rows, d.changed.num_rows) == (1, 1, 1)
        out = c.sql_to("SELECT count(*) AS n FROM 'm@master:/t.parquet'", "m@out:/n.csv")
        assert c.get_file("m@out:/n.csv") == b"n\n2\n"
        assert out.inputs[0].commit in c.inspect_commit("m@out").description
        with pytest.raises(RepoNotFound):
            c.sql("SELECT * FROM 'nope@master:/t.parquet'")
        with pytest.raises(QueryRefused):
            c.sql("SELECT * FROM read_csv('/etc/passwd')")


def test_a_caller_without_read_on_the_repo_cannot_query_it(served: tuple[Live, str]) -> None:
    live, root = served
    with RemoteClient(live.url, token=root) as admin:
        _info, token = admin.create_token("user:bob")
        with RemoteClient(live.url, token=token) as bob:
            with pytest.raises(PermissionDenied):
                bob.sql("SELECT * FROM 'm@master:/t.parquet'")
            admin.set_repo_roles("m", "user:bob", ["repoReader"])
            assert bob.sql("SELECT count(*) AS n FROM 'm@master:/t.parquet'").to_pylist() == [
                {"n": 2}
            ]


def test_ranged_file_reads(served: tuple[Live, str]) -> None:
    live, root = served
    data = bytes(range(256)) * 4096
    url = f"{live.url}{API}/repos/m/commits/master/files/big.bin"
    with httpx.Client(headers={"authorization": f"Bearer {root}"}) as web:
        r = web.get(url, headers={"range": "bytes=1000-299999"})
        assert r.status_code == 206 and r.content == data[1000:300000]
        assert r.headers["content-range"] == f"bytes 1000-299999/{len(data)}"
        tail = web.get(url, headers={"range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == data[-10:]
        assert web.get(url, headers={"range": f"bytes={len(data)}-"}).status_code == 416
        whole = web.get(url, headers={"range": "bytes=5-1"})  # not a range: the whole file
        assert whole.status_code == 200 and whole.content == data
    with RemoteClient(live.url, token=root) as c:
        reader = c.file_reader("m@master:/big.bin")
        assert reader.size == len(data)
        assert reader.read(70_000, 70_010) == data[70_000:70_010]
        assert reader.read(len(data) - 5, len(data) + 100) == data[-5:]
