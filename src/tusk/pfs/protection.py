"""Overriding branch protection: a clusterAdmin's forced write (``tusk --force-protected``).

A protected branch refuses direct writes in PFS's write path (``PfsService._not_protected``).
An edge that has checked that its caller may override (a clusterAdmin, or anyone on an
embedded store, which has no identities) runs the call inside :func:`overriding`; PFS then
lets the write through and notes each protected branch it wrote, which the edge records in
the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_OVERRIDE: ContextVar[list[str] | None] = ContextVar("tusk_override_protection", default=None)


@contextmanager
def overriding() -> Iterator[list[str]]:
    """Within: writes to protected branches go through; yields the branches so written."""
    forced: list[str] = []
    token = _OVERRIDE.set(forced)
    try:
        yield forced
    finally:
        _OVERRIDE.reset(token)


def overridden(branch: str) -> bool:
    """Whether a write to protected ``branch`` (``repo@name``) is let through, noting it."""
    forced = _OVERRIDE.get()
    if forced is None:
        return False
    if branch not in forced:
        forced.append(branch)
    return True
