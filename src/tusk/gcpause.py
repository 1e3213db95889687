"""Pausing Python's cyclic garbage collector while bulk work allocates many small objects.

Ingesting 20,000 small files allocates a few hundred thousand acyclic objects (paths, chunk
references, tree entries), and every burst of allocations triggers collections that walk
all live objects: measured in-process, a put of D1 took 2.30-2.50 s with the collector on
and 2.04-2.06 s with it paused. Reference counting frees the objects as usual while paused;
only reference cycles wait until the last pause ends. Pauses nest, across threads too.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off (restored when the last pause ends)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
