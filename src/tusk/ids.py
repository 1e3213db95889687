"""Identifiers and names: commit ids, repo and branch names."""

from __future__ import annotations

import re
import uuid

from tusk.errors import InvalidName

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_COMMIT_ID = re.compile(r"^[0-9a-f]{32}$")


def new_commit_id() -> str:
    """A random 32-hex-digit id, the same shape as Pachyderm's commit ids."""
    return uuid.uuid4().hex


def is_commit_id(text: str) -> bool:
    return bool(_COMMIT_ID.match(text))


def check_repo_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidName(f"invalid repo name {name!r}: use 1-63 letters, digits, '_' or '-'")
    return name


def check_branch_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidName(f"invalid branch name {name!r}: use 1-63 letters, digits, '_' or '-'")
    if is_commit_id(name):
        raise InvalidName(
            f"invalid branch name {name!r}: it looks like a commit id; pick another name"
        )
    return name
