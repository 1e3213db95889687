"""Egress end to end (issue 21): each finished output commit to S3, a folder or SQL tables.

Real services only: an S3 endpoint (moto in server mode, tests/s3server.py), a PostgreSQL
started by the tests (tests/pgserver.py; logins of the egress roles need their password) and
SQLite files; everything written is read back with boto3 or SQL. Under CI=true a missing
service fails the tests instead of skipping them.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import s3server
import tusk
from pgserver import PgServer
from tusk.errors import InvalidSpec

s3_server = s3server.s3_server
s3_url = s3server.s3_url

# One datum over the whole input repo: its files land in the output at the same paths.
COPY = 'cp -R "$TUSK_PFS"/in/. "$TUSK_PFS"/out/'
_roles = itertools.count(1)


def spec(egress: dict[str, Any], name: str = "out", cmd: str = COPY) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": "in", "glob": "/", "name": "in"}},
        "transform": {"cmd": ["sh", "-c", cmd]},
        "egress": egress,
    }


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tusk.Client]:
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    monkeypatch.delenv("TUSK_METADATA_URL", raising=False)
    monkeypatch.setenv("TUSK_EGRESS_RETRY_DELAY", "0.01")
    c = tusk.Client(tmp_path / "home")
    c.create_repo("in")
    yield c
    c.close()


def run(c: tusk.Client, pipeline: str = "out") -> tusk.JobInfo:
    c.run_scheduler(once=True)
    job = c.list_jobs(pipeline)[0]
    assert job.done, job
    return job


def output_files(c: tusk.Client, pipeline: str = "out") -> set[str]:
    return {f.path for f in c.glob_files(f"{pipeline}@master:/**") if f.type == "file"}


# PostgreSQL: a server of this module's own, where egress roles log in with a password.


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    server = PgServer()
    server.require_passwords()
    yield server
    server.stop()


class Db:
    """A fresh database owned by a fresh role with a password: what egress logs in as."""

    def __init__(self, server: PgServer) -> None:
        n = next(_roles)
        self.user, self.password = f"egress{os.getpid()}_{n}", f"pw-{n}-secret"
        self.name = f"eg{os.getpid()}_{n}"
        with psycopg.connect(f"{server.url}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
            conn.execute(f"CREATE DATABASE {self.name} OWNER {self.user}")
        self.admin = f"{server.url}/{self.name}"
        self.url = f"postgresql://{self.user}@127.0.0.1:{server.port}/{self.name}"

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.admin) as conn:
            cur = conn.execute(statement)
            rows = cur.fetchall() if cur.description else []
            conn.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {self.user}")
            return rows


@pytest.fixture
def db(pg: PgServer) -> Db:
    return Db(pg)


def secret(c: tusk.Client, name: str, password: str) -> dict[str, str]:
    c.create_secret(
        {"kind": "Secret", "metadata": {"name": name}, "stringData": {"password": password}}
    )
    return {"name": name, "key": "password"}


def sql_egress(
    url: str, kind: str = "CSV", columns: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    file_format: dict[str, Any] = {"type": kind}
    if columns is not None:
        file_format["columns"] = columns
    return {"sql_database": {"url": url, "file_format": file_format, **extra}}


USERS = "CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL, score double precision)"
EVENTS = "CREATE TABLE events (at date, kind text, payload jsonb)"


# Object storage and folders


def test_egress_to_s3_streams_every_file_and_reads_back(
    client: tusk.Client, s3_server: s3server.S3Server, s3_url: str
) -> None:
    big = os.urandom(3 << 20) * 4  # 12 MiB: above the threshold set below, so multipart
    client.put_files("in@master", [("/a.txt", b"alpha\n"), ("/d/e/b.bin", big)])
    bucket = s3_server.new_bucket()
    # Pachyderm's (Go CDK's) option names, as its users write them.
    url = (
        f"s3://{bucket}/exports/run?endpoint_url={s3_server.endpoint}&s3ForcePathStyle=true"
        "&multipart_threshold=5MiB&part_size=5MiB"
    )
    client.create_pipeline(spec({"URL": url}))
    job = run(client)
    assert (job.state, job.reason) == ("success", "")
    s3 = s3_server.client()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {"exports/run/a.txt", "exports/run/d/e/b.bin"}
    assert s3.get_object(Bucket=bucket, Key="exports/run/a.txt")["Body"].read() == b"alpha\n"
    body = s3.get_object(Bucket=bucket, Key="exports/run/d/e/b.bin")["Body"].read()
    assert body == big
    # A multipart upload's ETag ends in -<parts>: the 12 MiB went up in 5 MiB parts.
    etag = s3.head_object(Bucket=bucket, Key="exports/run/d/e/b.bin")["ETag"]
    assert etag.strip('"').endswith("-3")


def test_object_storage_url_is_the_same_as_url(
    client: tusk.Client, s3_server: s3server.S3Server, s3_url: str, tmp_path: Path
) -> None:
    client.put_file("in@master:/x", b"x")
    client.create_pipeline(spec({"object_storage": {"url": f"file://{tmp_path / 'dest'}"}}))
    assert client.inspect_pipeline("out").spec["egress"] == {"url": f"file://{tmp_path}/dest"}
    assert run(client).state == "success"
    assert (tmp_path / "dest" / "x").read_bytes() == b"x"


def test_egress_to_a_bucket_that_does_not_exist_fails_the_job_and_keeps_the_commit(
    client: tusk.Client,
    s3_server: s3server.S3Server,
    s3_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TUSK_EGRESS_RETRY_DELAY", "0.4")  # long enough to see it retrying
    client.put_file("in@master:/a.txt", b"a")
    url = f"s3://no-such-bucket-{os.getpid()}/p?endpoint={s3_server.endpoint}"
    client.create_pipeline(spec({"URL": url}))
    seen: set[tuple[str, str]] = set()
    loop = threading.Thread(target=client.run_scheduler, kwargs={"once": True})
    loop.start()
    while loop.is_alive():  # what tusk list job shows meanwhile: egressing, and why
        for j in client.list_jobs("out"):
            seen.add((j.state, re.sub(r"\(last: .*", "", j.reason)))
        time.sleep(0.02)
    loop.join()
    target = f"s3://no-such-bucket-{os.getpid()}/p"
    assert ("egressing", f"egressing to {target}: attempt 2 of 3 ") in seen, seen
    job = client.list_jobs("out")[0]
    assert job.state == "failure"
    assert job.reason == (
        f"egress to s3://no-such-bucket-{os.getpid()}/p failed after 3 attempts: bucket "
        f"'no-such-bucket-{os.getpid()}' does not exist at {s3_server.endpoint}: create it first"
    )
    assert output_files(client) == {"/a.txt"}  # the output commit stays
    assert client.inspect_commit(f"out@{job.output_commit}").finished


def test_egress_without_credentials_says_so(
    client: tusk.Client, s3_server: s3server.S3Server, s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto checks signatures only with its IAM enforcement on; what Tusk can check for sure
    # is that a missing set of credentials is named as such.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    client.put_file("in@master:/a.txt", b"a")
    client.create_pipeline(spec({"URL": s3_url}))
    job = run(client)
    assert job.state == "failure"
    assert "no usable credentials for s3://" in job.reason, job.reason
    assert "\n" not in job.reason


# SQL: PostgreSQL


def test_csv_with_header_into_postgres_one_table_per_folder(client: tusk.Client, db: Db) -> None:
    db.sql(USERS)
    db.sql("CREATE TABLE untouched (n int)")
    db.sql("INSERT INTO untouched VALUES (7)")
    client.put_files(
        "in@master",
        [
            # The header names the columns in any order; an unquoted empty field is NULL.
            ("/users/part-1.csv", b'name,id,score\nada,1,9.5\n"bob, jr",2,\n'),
            ("/users/part-2.csv", b'id,score,name\n3,1.25,"multi\nline"\n'),
        ],
    )
    egress = sql_egress(db.url, "CSV", ["id", "name", "score"])
    egress["sql_database"]["secret"] = secret(client, "pg", db.password)
    client.create_pipeline(spec(egress))
    job = run(client)
    assert (job.state, job.reason) == ("success", ""), job.reason
    assert db.sql("SELECT id, name, score FROM users ORDER BY id") == [
        (1, "ada", 9.5),
        (2, "bob, jr", None),
        (3, "multi\nline", 1.25),
    ]
    assert db.sql("SELECT n FROM untouched") == [(7,)]  # a table the commit does not name


def test_a_second_job_replaces_the_rows_in_one_transaction(client: tusk.Client, db: Db) -> None:
    db.sql(USERS)
    db.sql(EVENTS)
    client.put_files(
        "in@master",
        [
            ("/users/u.csv", b"1,ada,1\n2,bob,2\n"),
            ("/events/e.csv", b"2024-01-01,a,{}\n"),
        ],
    )
    egress = sql_egress(db.url, "CSV", secret=secret(client, "pg", db.password))  # no header
    client.create_pipeline(spec(egress))
    assert run(client).state == "success"
    assert db.sql("SELECT count(*) FROM users") == [(2,)]
    client.put_file("in@master:/users/u.csv", b"5,eve,5\n")
    job = run(client)
    assert (job.state, job.reason) == ("success", "")
    assert db.sql("SELECT id, name FROM users") == [(5, "eve")]  # replaced, as Pachyderm does
    assert db.sql("SELECT kind FROM events") == [("a",)]  # the commit still holds events/e.csv


def test_json_lines_into_postgres(client: tusk.Client, db: Db) -> None:
    db.sql(EVENTS)
    lines = [
        b'{"at": "2024-05-01", "kind": "login", "payload": {"ip": "10.0.0.1"}, "extra": 1}',
        b'{"kind": "logout"}',
        b"",
        b'{"at": "2024-05-03", "kind": "x", "payload": [1, 2]}',
    ]
    client.put_file("in@master:/events/2024.jsonl", b"\n".join(lines) + b"\n")
    egress = sql_egress(db.url, "JSON", ["at", "kind", "payload"])
    egress["sql_database"]["secret"] = secret(client, "pg", db.password)
    client.create_pipeline(spec(egress))
    job = run(client)
    assert (job.state, job.reason) == ("success", ""), job.reason
    rows = db.sql("SELECT at::text, kind, payload FROM events ORDER BY kind")
    assert rows == [
        ("2024-05-01", "login", {"ip": "10.0.0.1"}),
        (None, "logout", None),
        ("2024-05-03", "x", [1, 2]),
    ]


def test_bad_json_and_empty_files_in_postgres(client: tusk.Client, db: Db) -> None:
    db.sql(USERS)
    db.sql(EVENTS)
    db.sql("INSERT INTO events (kind) VALUES ('kept')")
    client.put_files(
        "in@master",
        [
            ("/events/a.jsonl", b'{"kind": "ok"}\n{"kind": oops}\n'),
            ("/users/empty.csv", b""),  # no header, no rows: nothing to check
        ],
    )
    egress = sql_egress(db.url, "JSON", ["kind"], secret=secret(client, "pg", db.password))
    client.create_pipeline(spec(egress))
    job = run(client)
    assert job.state == "failure"
    assert (
        job.reason
        == f"egress to {db.url} failed: /events/a.jsonl line 2: not JSON (Expecting value)"
    )
    assert db.sql("SELECT kind FROM events") == [("kept",)]
    client.delete_pipeline("out")
    client.delete_file("in@master:/events/a.jsonl")
    egress = sql_egress(db.url, "CSV", ["id", "name"], secret={"name": "pg", "key": "password"})
    client.create_pipeline(spec(egress))
    job = run(client)
    assert (job.state, job.reason) == ("success", "")
    assert db.sql("SELECT count(*) FROM users") == [(0,)]


def test_a_bad_value_rolls_back_every_table_and_fails_at_once(client: tusk.Client, db: Db) -> None:
    db.sql(USERS)
    db.sql(EVENTS)
    db.sql("INSERT INTO users VALUES (9, 'kept', 0)")
    db.sql("INSERT INTO events (kind) VALUES ('kept')")
    client.put_files(
        "in@master",
        [
            ("/events/e.csv", b"2024-01-01,new,{}\n"),  # written first, then rolled back
            ("/users/u.csv", b"1,ada,1\nnot-a-number,bob,2\n"),
        ],
    )
    egress = sql_egress(db.url, "CSV", secret=secret(client, "pg", db.password))
    client.create_pipeline(spec(egress))
    job = run(client)
    assert job.state == "failure"
    target = db.url
    assert job.reason.startswith(f"egress to {target} failed: database {db.name} at "), job.reason
    assert "/users/u.csv: invalid input syntax for type integer" in job.reason
    assert "line 2" in job.reason and "after 3 attempts" not in job.reason  # not retried
    assert db.sql("SELECT name FROM users") == [("kept",)]  # no partial table
    assert db.sql("SELECT kind FROM events") == [("kept",)]
    assert output_files(client) == {"/events/e.csv", "/users/u.csv"}


def test_wrong_password_in_the_secret(client: tusk.Client, db: Db) -> None:
    db.sql(USERS)
    db.sql("INSERT INTO users VALUES (9, 'kept', 0)")
    client.put_file("in@master:/users/u.csv", b"1,ada,1\n")
    egress = sql_egress(db.url, "CSV", secret=secret(client, "pg", "not-the-password"))
    client.create_pipeline(spec(egress))
    job = run(client)
    assert job.state == "failure"
    assert job.reason == (
        f"egress to {db.url} failed after 3 attempts: PostgreSQL at 127.0.0.1:"
        f"{db.url.split(':')[2].split('/')[0]} refused the credentials of user {db.user} (the "
        "password from secret pg, key password): check the secret"
    )
    assert db.sql("SELECT name FROM users") == [("kept",)]
    assert output_files(client) == {"/users/u.csv"}


def test_a_database_that_does_not_exist(client: tusk.Client, db: Db, pg: PgServer) -> None:
    client.put_file("in@master:/users/u.csv", b"1,ada,1\n")
    url = f"postgresql://{db.user}@127.0.0.1:{pg.port}/nosuchdb"
    client.create_pipeline(spec(sql_egress(url, secret=secret(client, "pg", db.password))))
    job = run(client)
    assert job.state == "failure"
    assert job.reason == (
        f"egress to {url} failed after 3 attempts: database nosuchdb does not exist at "
        f"127.0.0.1:{pg.port}: create it first"
    )


def test_a_table_that_does_not_exist_or_lacks_a_column(client: tusk.Client, db: Db) -> None:
    db.sql(USERS)
    client.put_file("in@master:/people/p.csv", b"1,ada\n")
    client.create_pipeline(spec(sql_egress(db.url, secret=secret(client, "pg", db.password))))
    job = run(client)
    assert job.state == "failure"
    assert re.search(
        r"failed after 3 attempts: table people does not exist in database \S+ at "
        r"127\.0\.0\.1:\d+: create it first",
        job.reason,
    ), job.reason
    client.delete_pipeline("out")
    client.delete_file("in@master:/people/p.csv")
    client.put_file("in@master:/users/u.csv", b"id,nick\n1,ada\n")
    egress = sql_egress(db.url, "CSV", ["id", "nick"], secret={"name": "pg", "key": "password"})
    client.create_pipeline(spec(egress))
    job = run(client)
    assert job.state == "failure"
    assert "table users has no column nick" in job.reason, job.reason
    assert "its columns: id, name, score" in job.reason


# SQL: SQLite


def test_csv_and_json_into_sqlite(client: tusk.Client, tmp_path: Path) -> None:
    path = tmp_path / "out.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, ok BOOLEAN)")
        conn.execute("CREATE TABLE stale (n INTEGER)")
        conn.execute("INSERT INTO users VALUES (99, 'old', 0)")
    conn.close()
    client.put_files("in@master", [("/users/a.csv", b"ok,id,name\ntrue,1,ada\nf,2,\n")])
    egress = sql_egress(f"sqlite:///{path}", "CSV", ["id", "name", "ok"])  # no secret needed
    client.create_pipeline(spec(egress))
    job = run(client)
    assert (job.state, job.reason) == ("success", ""), job.reason
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT id, name, ok FROM users ORDER BY id").fetchall()
    conn.close()
    assert rows == [(1, "ada", 1), (2, None, 0)]

    client.delete_pipeline("out")
    client.delete_file("in@master:/users/a.csv")
    client.put_file("in@master:/users/b.jsonl", b'{"id": 7, "name": "eve", "ok": true}\n')
    client.create_pipeline(spec(sql_egress(f"sqlite:///{path}", "JSON")))  # columns: the table's
    assert run(client).state == "success"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id, name, ok FROM users").fetchall() == [(7, "eve", 1)]
    conn.close()


def test_sqlite_bad_row_rolls_back(client: tusk.Client, tmp_path: Path) -> None:
    path = tmp_path / "out.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users VALUES (99, 'kept')")
    conn.close()
    client.put_file("in@master:/users/a.csv", b"1,ada\nx,bob\n")
    client.create_pipeline(spec(sql_egress(f"sqlite:///{path}")))
    job = run(client)
    assert job.state == "failure"
    assert job.reason == (
        f"egress to sqlite:///{path} failed: /users/a.csv line 2: column id: 'x' is not a "
        "valid integer"
    )
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id, name FROM users").fetchall() == [(99, "kept")]
    conn.close()


def test_a_file_outside_a_table_folder_is_refused(client: tusk.Client, tmp_path: Path) -> None:
    client.put_file("in@master:/loose.csv", b"1\n")
    client.create_pipeline(spec(sql_egress(f"sqlite:///{tmp_path / 'x.db'}")))
    job = run(client)
    assert job.state == "failure"
    assert "/loose.csv is not in a folder" in job.reason


def test_a_header_that_does_not_name_the_columns(client: tusk.Client, tmp_path: Path) -> None:
    path = tmp_path / "out.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    conn.close()
    client.put_file("in@master:/users/a.csv", b"id,nickname\n1,ada\n")
    client.create_pipeline(spec(sql_egress(f"sqlite:///{path}", "CSV", ["id", "name"])))
    job = run(client)
    assert job.state == "failure"
    assert job.reason == (
        f"egress to sqlite:///{path} failed: /users/a.csv: the CSV header (id, nickname) does "
        "not name the columns of file_format.columns (id, name); the first row of each file "
        "must be a header naming them"
    )


# Specs


def test_egress_specs_are_checked_when_the_pipeline_is_made(client: tusk.Client) -> None:
    with pytest.raises(InvalidSpec, match=r"egress\.sql_database\.secret: secret pg does not"):
        client.create_pipeline(
            spec(sql_egress("postgresql://u@h/db", secret={"name": "pg", "key": "password"}))
        )
    with pytest.raises(InvalidSpec, match=r"egress\.sql_database\.secret: required"):
        client.create_pipeline(spec(sql_egress("postgresql://u@h/db")))
    with pytest.raises(InvalidSpec, match=r"file_format\.type: 'XML' is not a file format"):
        client.create_pipeline(spec(sql_egress("sqlite:////tmp/x.db", "XML")))
    with pytest.raises(InvalidSpec, match="give exactly one of URL"):
        client.create_pipeline(spec({"URL": "/tmp/x"} | sql_egress("sqlite:////tmp/x.db")))
    assert "out" not in [r.name for r in client.list_repos()]


# Through a real server: `tusk up` in a subprocess, the CLI and the SDK over HTTP.


def _spawn_up(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    full = {k: v for k, v in os.environ.items() if k not in ("TUSK_ADDRESS", "TUSK_DEBUG")}
    full.update(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tusk.cli.main", "--home", str(home), "up", "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        m = re.search(r"REST API on (https?://\S+)/api/v1", line)
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep it drained
            return proc, m.group(1)
    proc.kill()
    raise AssertionError(f"tusk up printed no address: {''.join(seen)}")


def test_egress_through_tusk_up(
    tmp_path: Path, db: Db, s3_server: s3server.S3Server, s3_url: str
) -> None:
    db.sql(USERS)
    bucket = s3_server.new_bucket()
    proc, url = _spawn_up(
        tmp_path / "home", {"TUSK_SANDBOX": "none", "TUSK_EGRESS_RETRY_DELAY": "0.01"}
    )
    try:
        manifest = tmp_path / "secret.yaml"
        manifest.write_text(
            "kind: Secret\nmetadata: {name: pg}\ndata: {password: "
            f"{base64.b64encode(db.password.encode()).decode()}}}\n"
        )
        env = {**os.environ, "TUSK_ADDRESS": url}
        cli = [sys.executable, "-m", "tusk.cli.main"]
        subprocess.run([*cli, "create", "secret", "-f", str(manifest)], env=env, check=True)
        with tusk.Client(address=url) as c:
            c.create_repo("in")
            c.put_files("in@master", [("/users/u.csv", b"id,name\n1,ada\n2,bob\n")])
            sql = sql_egress(
                db.url, "CSV", ["id", "name"], secret={"name": "pg", "key": "password"}
            )
            c.create_pipeline(spec(sql, name="to-pg"))
            c.create_pipeline(
                spec({"URL": f"s3://{bucket}/p?endpoint={s3_server.endpoint}"}, name="to-s3")
            )
            deadline = time.monotonic() + 60
            while True:
                jobs = [j for p in ("to-pg", "to-s3") for j in c.list_jobs(p)]
                if len(jobs) == 2 and all(j.done for j in jobs):
                    break
                assert time.monotonic() < deadline, jobs
                time.sleep(0.1)
            assert [(j.state, j.reason) for j in jobs] == [("success", "")] * 2
        assert db.sql("SELECT id, name FROM users ORDER BY id") == [(1, "ada"), (2, "bob")]
        obj = s3_server.client().get_object(Bucket=bucket, Key="p/users/u.csv")
        assert obj["Body"].read() == b"id,name\n1,ada\n2,bob\n"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
