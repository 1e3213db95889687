"""An existing store moves into project ``default`` in place (migration 0006, issue 20)."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

import tusk
from schemahelpers import undo_migrations
from tusk.storage.meta.store import MetaStore, sqlite_url

ENGINES = ("sqlite", "postgresql")


def test_a_store_of_the_previous_schema_moves_into_default(home: Path, engine: str) -> None:
    with tusk.Client(home) as c:
        c.create_repo("images")
        c.put_file("images@master:/a.png", b"png")
        c.create_pipeline({"pipeline": {"name": "edges"},
                           "input": {"pfs": {"repo": "images", "glob": "/*"}},
                           "transform": {"cmd": ["true"]}})  # fmt: skip
    url = os.environ.get("TUSK_METADATA_URL") or sqlite_url(home / "tusk.db")
    store = MetaStore(url)
    with store.write() as tx:  # back to 0005: no projects, no image digests, names of 63
        for table in ("s3_parts", "s3_uploads", "s3_etags", "projects"):  # 0007 and 0006
            tx.conn.execute(sa.text(f"DROP TABLE {table}"))
        tx.conn.execute(sa.text("ALTER TABLE auth_tokens DROP COLUMN sealed"))
        if not store.is_sqlite:
            tx.conn.execute(sa.text("ALTER TABLE repos ALTER COLUMN name TYPE VARCHAR(63)"))
            tx.conn.execute(sa.text("ALTER TABLE branches ALTER COLUMN repo TYPE VARCHAR(63)"))
        undo_migrations(tx.conn, "0005")
    store.close()
    with tusk.Client(home) as c:  # opening migrates
        projects = c._pfs.list_projects()
        assert [(p.name, p.repos) for p in projects] == [("default", ["edges", "images"])]
        assert c.get_file("images@master:/a.png") == b"png"
        assert c.inspect_pipeline("edges").version == 1
        c._pfs.create_project("p" * 63)
        long = f"{'p' * 63}/{'r' * 63}"  # 127 characters: fits the widened columns
        c.create_repo(long)
        c.put_file(f"{long}@master:/x", b"x")
        assert c.get_file(f"{long}@master:/x") == b"x"
