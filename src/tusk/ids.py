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


DEFAULT_PROJECT = "default"


def check_project_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidName(
            f"invalid project name {str(name)[:80]!r}: use 1-63 letters, digits, '_' or '-'"
        )
    return name


def check_repo_name(name: str) -> str:
    """A repo name: ``repo`` (project ``default``) or ``project/repo``, as Pachyderm writes it."""
    project, _, bare = name.rpartition("/") if isinstance(name, str) else ("", "", name)
    bad_project = (bool(project) and not _NAME.match(project)) or name.startswith("/")
    if not isinstance(name, str) or not _NAME.match(bare) or bad_project:
        raise InvalidName(
            f"invalid repo name {str(name)[:80]!r}: use 1-63 letters, digits, '_' or '-', "
            "after 'project/' for a repo of another project than default"
        )
    if project == DEFAULT_PROJECT:
        return bare  # default/images is images
    return name


def split_repo(name: str) -> tuple[str, str]:
    """``project/repo`` -> (project, repo); ``repo`` -> ("default", repo)."""
    project, _, bare = name.rpartition("/")
    return project or DEFAULT_PROJECT, bare


def qualify(project: str | None, repo: str) -> str:
    """The stored name of ``repo`` in ``project``: bare in ``default``; a name that already
    names its project is left as it is."""
    if "/" in repo or not project or project == DEFAULT_PROJECT:
        return repo
    return f"{project}/{repo}"


def check_branch_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidName(f"invalid branch name {name!r}: use 1-63 letters, digits, '_' or '-'")
    if is_commit_id(name):
        raise InvalidName(
            f"invalid branch name {name!r}: it looks like a commit id; pick another name"
        )
    return name
