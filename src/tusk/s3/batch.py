"""Small PutObjects into an open commit, written together: one transaction for many.

A job that writes thousands of small objects through S3 into an open commit would pay a
metadata transaction (and a pack, and a flush to disk) per object; the writes queue on the
store's one write lock anyway. Here the requests that arrive while a write to the same
branch is under way wait for it, and the first of them then writes all that gathered as
one ``put_objects``: one pack, one flush, one transaction, the ETags in it too. Every
request still answers only once its bytes are committed.

This only ever merges writes that join an open commit, where they end in the same commit
anyway. On a branch with no open commit each PutObject is its own commit, as S3 users
expect: the gathered writes are then made one after another.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from tusk.pfs.service import PfsService
from tusk.pfs.sources import BytesSource, Source
from tusk.storage.meta.store import MetaTx

SMALL = 1 << 20  # bodies up to this size are gathered (read whole, then written)


@dataclass
class _Put:
    path: str
    data: bytes
    etag: str
    description: str
    done: threading.Event = field(default_factory=threading.Event)
    commit: str = ""
    error: BaseException | None = None


class SmallPuts:
    def __init__(self, pfs: PfsService) -> None:
        self.pfs = pfs
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], list[_Put]] = {}
        self._writing: set[tuple[str, str]] = set()

    def put(self, repo: str, branch: str, path: str, data: bytes, etag: str,
            description: str) -> str:  # fmt: skip
        """Commit one object (alone or with others); returns the commit id."""
        mine = _Put(path, data, etag, description)
        key = (repo, branch)
        with self._lock:
            self._pending.setdefault(key, []).append(mine)
            lead = key not in self._writing
            if lead:
                self._writing.add(key)
        if lead:
            self._drain(repo, branch)
        mine.done.wait()
        if mine.error is not None:
            raise mine.error
        return mine.commit

    def _drain(self, repo: str, branch: str) -> None:
        key = (repo, branch)
        while True:
            with self._lock:
                batch = self._pending.pop(key, [])
                if not batch:
                    self._writing.discard(key)
                    return
            try:
                self._write(repo, branch, batch)
            except BaseException as exc:  # every waiter hears of it, then it goes on
                for p in batch:
                    if not p.done.is_set():
                        p.error = exc
                        p.done.set()
                if not isinstance(exc, Exception):
                    with self._lock:
                        self._writing.discard(key)
                    raise

    def _write(self, repo: str, branch: str, batch: list[_Put]) -> None:
        if len(batch) > 1 and self._open_commit(repo, branch):
            self._put(repo, branch, batch, f"s3: {len(batch)} objects")
            return
        for p in batch:  # each its own commit (or alone in the open one)
            try:
                self._put(repo, branch, [p], p.description)
            except Exception as exc:
                p.error = exc
                p.done.set()

    def _put(self, repo: str, branch: str, batch: Sequence[_Put], description: str) -> None:
        items: list[tuple[str, Source]] = [(p.path, BytesSource(p.data)) for p in batch]
        etags = [p.etag for p in batch]

        def record(tx: MetaTx, ids: list[bytes]) -> None:
            tx.s3_put_etags(list(zip(ids, etags, strict=True)))

        result = self.pfs.put_objects(repo, branch, items, description, record)
        for p in batch:
            p.commit = result.commit.id
            p.done.set()

    def _open_commit(self, repo: str, branch: str) -> bool:
        try:
            head = self.pfs.branch_head(repo, branch)
        except Exception:
            return False
        return head is not None and not head.finished
