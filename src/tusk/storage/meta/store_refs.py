"""SQL for references (mixed into ``MetaTx``): objects a commit refers to where they live."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.values import frozen


@frozen(slots=True)
class RefRecord:
    id: str
    url: str
    etag: str
    version: str | None
    endpoint: str | None
    size: int
    created_at: float


def _ref(r: sa.Row[tuple[object, ...]]) -> RefRecord:
    return RefRecord(r.id, r.url, r.etag, r.version, r.endpoint, r.size, r.created_at)


class RefTxMixin:
    conn: Connection

    def put_refs(self, rows: Sequence[RefRecord]) -> None:
        """Record references (one already known keeps its row: same id, same object)."""
        ids = [r.id for r in rows]
        known = set(self.get_refs(ids))
        new = [r for r in rows if r.id not in known]
        if new:
            self.conn.execute(
                t.source_refs.insert(),
                [{"id": r.id, "url": r.url, "etag": r.etag, "version": r.version,
                  "endpoint": r.endpoint, "size": r.size, "created_at": r.created_at}
                 for r in new],
            )  # fmt: skip

    def get_refs(self, ids: Sequence[str]) -> dict[str, RefRecord]:
        out: dict[str, RefRecord] = {}
        c = t.source_refs.c
        for i in range(0, len(ids), 500):
            rows = self.conn.execute(sa.select(t.source_refs).where(c.id.in_(ids[i : i + 500])))
            out.update((r.id, _ref(r))
                       for r in rows)  # fmt: skip
        return out

    def live_refs(self) -> list[RefRecord]:
        """References some chunk row still names (what ``fsck --references`` checks)."""
        c = t.source_refs.c
        used = sa.select(t.chunks.c.pack).where(t.chunks.c.codec == 2).distinct()
        q = sa.select(t.source_refs).where(sa.literal("ref:").concat(c.id).in_(used))
        return [_ref(r)
                for r in self.conn.execute(q.order_by(c.url))]  # fmt: skip
