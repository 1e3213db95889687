"""Whether a scheduler runs on a store, known from locks that end with their process.

Every ``tusk up`` holds a *shared* scheduler lock while it runs (several may share a store).
A ``tusk wait`` on an embedded store that finds the lock free takes it *exclusively* and runs
the pending jobs itself; a second waiter, or a ``tusk up`` started meanwhile, then sees it
taken. Nothing here is guessed from timing: the operating system releases a file lock, and
PostgreSQL a session's advisory lock, the moment the holding process dies.

SQLite homes lock a file beside the database (``flock``: locks on two open files conflict
even inside one process, so two clients of one home behave as two processes would).
PostgreSQL stores use a session advisory lock on a connection kept for that purpose, so a
scheduler on another host that shares the database is seen as well.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

_PG_SCHEDULER_LOCK = 7_356_238_502  # beside store._PG_WRITE_LOCK


class SchedulerPresence:
    """One holder's handle on the store's scheduler lock (not shared between threads)."""

    def hold_shared(self) -> bool:
        """Take the lock shared (a scheduler runs); False while a waiter holds it alone."""
        raise NotImplementedError

    def try_run(self) -> bool:
        """Take the lock exclusively (no other scheduler or waiter runs); False if taken."""
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    @property
    def held(self) -> bool:
        raise NotImplementedError

    def others_running(self) -> bool:
        """Whether another holder has the lock now (this handle must not hold it)."""
        if self.held:
            raise RuntimeError("others_running() on a handle that holds the lock")
        if self.try_run():
            self.release()
            return False
        return True


class FileSchedulerPresence(SchedulerPresence):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _take(self, mode: int) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def hold_shared(self) -> bool:
        return self._take(fcntl.LOCK_SH)

    def try_run(self) -> bool:
        return self._take(fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops its lock
            self._fd = None


class PgSchedulerPresence(SchedulerPresence):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def _take(self, function: str) -> bool:
        if self._conn is not None:
            return True
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.exec_driver_sql(f"SELECT {function}({_PG_SCHEDULER_LOCK})").scalar()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def hold_shared(self) -> bool:
        return self._take("pg_try_advisory_lock_shared")

    def try_run(self) -> bool:
        return self._take("pg_try_advisory_lock")

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.exec_driver_sql("SELECT pg_advisory_unlock_all()")
            except Exception:
                conn.invalidate()  # never back to the pool holding the lock
            conn.close()
