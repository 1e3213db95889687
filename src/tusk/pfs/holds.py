"""Holds: what a running process made and lands or removes itself, so that what a killed
process leaves behind is found and removed by ``tusk gc`` (issue 22).

A check's candidate (an open commit on no branch, :mod:`tusk.pfs.gates`), a datum's ``s3_out``
commit and the temporary branches of ``tusk merge --run-pipelines`` and of a pipeline check
(:mod:`tusk.pps.merging`) live only while the process that made them runs: it lands them or
removes them itself. Each is recorded, in the transaction that makes it, as held by
``host:pid``, and released in the one that lands or removes it. A process killed in between
(kill -9, a crash, a lost machine) leaves the hold behind; gc removes what it names once the
hold is older than gc's grace period and its owner is gone: a process of this host that no
longer runs, or, on another host (which this one cannot ask), a day old.

Nothing finished is ever held: what gc removes here was never on a branch anyone reads, so
removing it loses nothing committed.
"""

from __future__ import annotations

import os
import socket

from tusk.storage.meta.store_holds import HoldRecord

HOST = socket.gethostname()
OTHER_HOST_AGE = 24 * 3600.0
COMMIT = "commit"
BRANCH = "branch"


def owner() -> str:
    """This process, as holds name it (asked each time: a forked child is another owner)."""
    return f"{HOST}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def abandoned(hold: HoldRecord, cutoff: float, now: float) -> bool:
    """Whether ``hold`` was left by a process that is gone, and is older than ``cutoff``."""
    if hold.created_at >= cutoff:
        return False
    host, _, pid = hold.owner.rpartition(":")
    if host == HOST and pid.isdigit():
        return not pid_alive(int(pid))
    return hold.created_at < now - OTHER_HOST_AGE
