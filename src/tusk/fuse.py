"""FUSE, where Tusk uses it: loading the binding, and finding and removing mounts.

Shared by ``tusk mount`` (tusk.sdk.mount) and pipelines' lazy inputs (tusk.pps.lazy). The
binding is mfusepy over Debian's libfuse 3; tusk.sdk.mount says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from types import ModuleType

from tusk.errors import ToolMissing

INSTALL_HINT = "apt-get install fuse3, then pip install 'tusk-data[mount]'"


def load_fuse() -> ModuleType:
    """mfusepy over libfuse 3, or ToolMissing saying how to install what is missing.

    ``fusermount3`` must be on PATH (libfuse mounts with it when not root, and
    ``tusk unmount`` runs it). mfusepy loads libfuse 3 (``$FUSE_LIBRARY_NAME``, default
    ``fuse3`` here: mfusepy itself would take libfuse 2 first where both are installed)."""
    if shutil.which("fusermount3") is None:
        raise ToolMissing(f"FUSE is not available: fusermount3 is not on PATH ({INSTALL_HINT})")
    if not os.path.exists("/dev/fuse"):
        raise ToolMissing(
            "FUSE is not available: /dev/fuse does not exist (load the fuse kernel module; in a "
            "container, give it --device /dev/fuse)"
        )
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    try:
        import mfusepy
    except ImportError:
        raise ToolMissing(
            f"FUSE's Python binding mfusepy is not installed ({INSTALL_HINT})"
        ) from None
    except OSError as exc:  # mfusepy found no libfuse
        raise ToolMissing(f"FUSE is not available: {exc} ({INSTALL_HINT})") from None
    return mfusepy


def is_mounted(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a mount point, a dead FUSE mount (its process killed) included:
    ``os.path.ismount`` cannot stat those."""
    target = os.path.abspath(path)
    try:
        return target in _mount_points()
    except OSError:
        return os.path.ismount(target)


def mounts_below(path: str | os.PathLike[str]) -> list[str]:
    """Mount points at or below ``path`` (deepest first), dead FUSE mounts included."""
    top = os.path.abspath(path)
    below = top.rstrip("/") + "/"
    try:
        points = _mount_points()
    except OSError:
        return []
    return sorted((p for p in points if p == top or p.startswith(below)), key=len, reverse=True)


def _mount_points() -> list[str]:
    """Every mount point of this process's mount namespace (OSError where /proc is not)."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return [_unescape(fields[4]) for line in f if len(fields := line.split(" ")) > 4]


def _unescape(field: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes are octal escapes there."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def detach(path: str | os.PathLike[str]) -> bool:
    """Unmount ``path`` lazily (``fusermount3 -u -z``: gone from the tree now, released when
    the last file open in it closes); whether it worked. For mounts whose server is gone or
    going, so that their folder can be removed."""
    tool = shutil.which("fusermount3")
    if tool is None:
        return False
    done = subprocess.run([tool, "-u", "-z", os.fspath(path)], capture_output=True, check=False)
    return done.returncode == 0
