"""Waiting on an embedded store runs its pending jobs when no scheduler does.

A newcomer's ``tusk wait commit p@master`` on a store where no ``tusk up`` runs would
otherwise wait forever. Between two checks of what it waits for, a waiter asks the store's
scheduler lock (:mod:`tusk.storage.meta.presence`): if no scheduler and no other waiter holds
it, this waiter takes it alone and runs the scheduler's passes in its own thread, with the
progress lines ``tusk up --once`` prints, until what it waits for is done. A waiter that finds
the lock taken waits passively and tries again at each check, so it takes over if the other
waiter ends first. A passive waiter (``run=False``) says once that nothing runs the jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tusk.pps.dask_executor import DaskExecutor
    from tusk.pps.executor import LocalExecutor
    from tusk.pps.scheduler import Scheduler
    from tusk.pps.service import PpsService

Log = Callable[[str], None]

_TICK = 0.1  # at most this long between two scheduler passes while running jobs here


class WaitRunner:
    """The ``pause`` between a wait's checks, for an in-process client.

    ``run``: run pending jobs here when nothing else does; else only say so (``warn``) once.
    ``executor``: makes the executor when this waiter starts running jobs.
    """

    def __init__(
        self,
        pps: PpsService,
        *,
        run: bool,
        log: Log,
        warn: Log,
        executor: Callable[[], LocalExecutor | DaskExecutor],
    ) -> None:
        self.pps = pps
        self.run = run
        self.log = log
        self.warn = warn
        self.executor = executor
        self.presence = pps.meta.scheduler_presence()
        self.scheduler: Scheduler | None = None
        self._said = False

    def pause(self, delay: float) -> None:
        if self.scheduler is None and self.run and self.presence.try_run():
            self._start()
        if self.scheduler is not None:
            self.scheduler.tick()
            self.scheduler.pause(min(delay, _TICK))
            return
        if not self.run and not self._said:
            self._said = True
            if not self.presence.others_running():
                self.warn(
                    f"no scheduler is running on {self.pps.home}, so jobs do not run: start one "
                    "with 'tusk up', or wait without --no-run to run them in this process"
                )
        time.sleep(delay)

    def _start(self) -> None:
        from tusk.pps.scheduler import Scheduler

        said = False

        def log(message: str) -> None:
            # Said before the first progress line: a wait with no job to run stays quiet.
            nonlocal said
            if not said:
                said = True
                self.log(
                    f"no scheduler is running on {self.pps.home}: running its jobs in this "
                    "process until the wait ends"
                )
            self.log(message)

        scheduler = Scheduler(self.pps, self.executor(), log=log)
        scheduler.begin()
        self.scheduler = scheduler

    def close(self) -> None:
        """Stop the jobs run here (unfinished datums go back to the queue), free the lock."""
        try:
            if self.scheduler is not None:
                self.scheduler.end()
                self.scheduler.executor.close()
        finally:
            self.scheduler = None
            self.presence.release()
