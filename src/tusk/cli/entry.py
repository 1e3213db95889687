"""The ``tusk`` command's entry point.

Two things only the command (not a program importing ``tusk.cli.main``) does:

* Python's cyclic collector is paused before the CLI loads (click, the command table), not
  only once ``main()`` runs: ~20 collections, a few milliseconds of every command (see
  tusk.gcpause).
* A command that is done leaves with ``os._exit`` once the exit handlers have run and the
  output is flushed: Python's own teardown (every module's namespace cleared, each of the
  few hundred thousand objects SQLAlchemy and the store loaded freed one by one) took ~10 ms
  of `tusk list repo`, and the operating system frees the process's memory at once. Only
  when the main thread is the last one: a command that leaves threads running (none should)
  gets the usual shutdown, which waits for them. Files and connections are closed by the
  commands themselves (the client is a context manager); the exit handlers (``atexit``,
  which also flush logging) run as they would.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def main() -> None:
    from tusk.gcpause import pause_start_up

    pause_start_up()
    from tusk.cli.main import main as run

    finish(run)


def finish(run: Callable[[], None]) -> None:
    """Run the command ``run`` and leave as the module's doc says (``python -m
    tusk.cli.main`` calls this with its own ``main``, not importing main.py twice)."""
    try:
        run()
    except SystemExit as done:
        _leave(done.code)
        raise
    _leave(0)


def _leave(code: object) -> None:
    import threading

    if threading.active_count() > 1 or not (code is None or isinstance(code, int)):
        return  # the usual shutdown: it joins the threads, or prints the message
    import atexit
    import os

    atexit._run_exitfuncs()  # what Python's shutdown runs first (logging's flush among them)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # a closed or broken pipe: let the usual shutdown report it
    os._exit(code or 0)
