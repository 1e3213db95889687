"""FUSE for the mount tests (tests/test_mount.py, tests/test_mount_write.py): whether it can
run here, and a module fixture that skips without it (and fails in CI, where dev.sh installs
fuse3 and mfusepy)."""

from __future__ import annotations

import os
import shutil

import pytest


def fuse_missing() -> str | None:
    """Why FUSE cannot run here, or None."""
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (apt-get install fuse3)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist"
    try:
        os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy or libfuse 3 is missing: {exc} (pip install 'tusk-data[mount]')"
    return None


def need_fuse() -> None:
    missing = fuse_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"FUSE is needed in CI: {missing}")
        pytest.skip(missing)
