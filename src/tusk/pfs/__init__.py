"""PFS: the versioned file system (repos, branches, commits, file trees, diff, provenance).

Edges and the SDK call :class:`PfsService` only. It loads on first use, so that the light
modules of this package (models, refs, paths) can be imported without the storage layer.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tusk.pfs.service import PfsService

__all__ = ["PfsService"]


def __getattr__(name: str) -> Any:
    if name == "PfsService":
        from tusk.pfs.service import PfsService

        return PfsService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
