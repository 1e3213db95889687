"""PFS: the versioned file system (repos, branches, commits, file trees, diff, provenance).

Edges and the SDK call :class:`PfsService` only.
"""

from tusk.pfs.service import PfsService

__all__ = ["PfsService"]
