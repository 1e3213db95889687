"""Waiting for something another process does: poll with a growing delay, up to a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tusk.errors import Timeout

T = TypeVar("T")


def poll_until(
    check: Callable[[], tuple[bool, T]],
    timeout: float | None,
    still: Callable[[T], str],
    max_delay: float = 0.25,
    pause: Callable[[float], None] | None = None,
) -> T:
    """Call ``check`` until it says done; return its value.

    ``check`` returns (done, value). After ``timeout`` seconds (None: never) raise
    :class:`Timeout` with the message ``still(value)`` (what is still not done). Between two
    checks ``pause(delay)`` runs (default: sleep), for waiters that do work meanwhile.
    """
    pause = pause or time.sleep
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.02
    while True:
        done, value = check()
        if done:
            return value
        if deadline is not None and time.monotonic() >= deadline:
            raise Timeout(f"{still(value)} after {timeout:g}s")
        left = delay if deadline is None else deadline - time.monotonic()
        pause(max(0.0, min(delay, left)))
        delay = min(delay * 2, max_delay)
