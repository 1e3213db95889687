"""Pausing Python's cyclic garbage collector while bulk work allocates many small objects.

Ingesting 20,000 small files allocates a few hundred thousand acyclic objects (paths, chunk
references, tree entries), and every burst of allocations triggers collections that walk
all live objects: measured in-process, a put of D1 took 2.30-2.50 s with the collector on
and 2.04-2.06 s with it paused. Reference counting frees the objects as usual while paused;
only reference cycles wait until the last pause ends. Pauses nest, across threads too.

Across threads, though, pauses can overlap for ever: a server with puts arriving faster
than they finish always has one in progress, so "the last pause ends" may never come. Under
``bench/bench_load.py`` (50 clients) the collector was found off in the middle of the run
with 125,000 objects waiting in the young generation, 70,000 of them garbage cycles, and the
server's RSS grew with them. So the collector stays off for at most ``MAX_PAUSE`` seconds in
a row: a pause that starts or ends after that, while others keep it off, first runs a full
collection (tens of milliseconds, so at most a few per cent of a core under constant writes;
one long put alone is not interrupted: it has no boundary to do it at).

The ``tusk`` command also keeps the collector off while it starts (:func:`pause_start_up`):
loading the CLI, the SDK, SQLAlchemy and the store allocates a few hundred thousand objects
that live as long as the process, and the collector walked them ~125 times while they loaded,
finding nothing: 50-70 ms of the 0.3-0.4 s of ``tusk list repo`` (gc callbacks, measured
in-process). Opening a store or a server connection ends that pause
(:func:`start_up_done`): what loaded by then is frozen (``gc.freeze``: never walked again)
and the collector runs as usual from there, so long commands (``tusk up``, mounts, big puts)
collect cycles as any process does. Without the ``tusk`` command (a program importing the
SDK), neither does anything.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

MAX_PAUSE = 5.0  # seconds the collector may stay off while overlapping pauses hold it

_now = time.monotonic
_lock = threading.Lock()
_depth = 0
_was_enabled = False
_since = 0.0  # when the collector was turned off, or last collected during a pause
_starting = False  # the tusk command's start-up pause is on


def _collect_if_overdue() -> None:
    global _since
    with _lock:
        if _depth == 0 or not _was_enabled or _now() - _since < MAX_PAUSE:
            return
        _since = _now()
    gc.collect()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off (restored when the last pause ends; a
    full collection at a pause's start or end once it has been off ``MAX_PAUSE`` s)."""
    global _depth, _was_enabled, _since
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
            _since = _now()
        _depth += 1
    _collect_if_overdue()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
        _collect_if_overdue()


def pause_start_up() -> None:
    """Turn the collector off while the ``tusk`` command loads (see the module's doc)."""
    global _starting
    if gc.isenabled():
        gc.disable()
        _starting = True


def start_up_done() -> None:
    """End :func:`pause_start_up`'s pause, freezing what loaded; a no-op without one. Under
    a :func:`gc_paused` block the collector comes back when the block ends."""
    global _starting, _was_enabled
    with _lock:
        if not _starting:
            return
        _starting = False
        gc.freeze()
        if _depth:
            _was_enabled = True
        else:
            gc.enable()
