"""SQL for secrets (mixed into ``MetaTx``): names, key names and one ciphertext each.

Only :mod:`tusk.pps.secrets` calls these; it encrypts before and decrypts after, so no value
is ever in clear here.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.values import frozen


@frozen
class SecretRecord:
    name: str
    keys: list[str]
    ciphertext: bytes
    created_at: float
    updated_at: float
    created_by: str


def _record(row: sa.Row) -> SecretRecord:
    return SecretRecord(
        row.name,
        list(json.loads(row.keys)),
        bytes(row.ciphertext),
        row.created_at,
        row.updated_at,
        row.created_by,
    )


class SecretTxMixin:
    conn: Connection
    is_sqlite: bool

    def get_secret(self, name: str) -> SecretRecord | None:
        row = self.conn.execute(sa.select(t.secrets).where(t.secrets.c.name == name)).first()
        return _record(row) if row is not None else None

    def list_secrets(self) -> list[SecretRecord]:
        rows = self.conn.execute(sa.select(t.secrets).order_by(t.secrets.c.name))
        return [_record(r) for r in rows]

    def insert_secret(self, record: SecretRecord) -> None:
        self.conn.execute(
            t.secrets.insert().values(
                name=record.name,
                keys=json.dumps(record.keys),
                ciphertext=record.ciphertext,
                created_at=record.created_at,
                updated_at=record.updated_at,
                created_by=record.created_by,
            )
        )

    def delete_secret(self, name: str) -> bool:
        """Delete one secret; whether it existed."""
        res = self.conn.execute(t.secrets.delete().where(t.secrets.c.name == name))
        return bool(res.rowcount)
