"""Reading what ``tusk apply`` applies: spec files and folders, and the git facts behind them.

``read_documents`` takes files and folders (every ``*.yaml``, ``*.yml``, ``*.json`` and
``*.jsonnet`` below a folder, in path order), renders Jsonnet templates (with the arguments of
their ``.args.yaml`` and ``--arg``), splits multi-document files, and gives each document its
origin:
the spec file, the folder it runs from, and, when the file is in a git work tree, the
commit SHA, the remote URL (credentials removed), the branch and whether the tree had
uncommitted changes. A pipeline version records that origin, so ``tusk lineage`` leads from
an output file to the code commit.

Git is read with the ``git`` command (present wherever a repository is checked out; a
library would add a dependency for four read-only questions). In GitHub Actions the
checkout is a detached HEAD, so the branch comes from ``GITHUB_HEAD_REF`` (pull requests)
or ``GITHUB_REF_NAME``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tusk.errors import InvalidArgument, SourceError
from tusk.pps.apply import (
    ARGS_SUFFIX,
    TEMPLATE_SUFFIX,
    Document,
    documents_of,
    spec_files,
)


def parse_template_args(items: Iterable[str]) -> dict[str, str]:
    """``--arg name=value`` options as a mapping (as pachctl reads them: the value is a
    string, everything after the first ``=``; a name given twice keeps the last value)."""
    args: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise InvalidArgument(
                f"invalid template argument {item!r}: write it as name=value, "
                "e.g. --arg image=python:3.12"
            )
        args[name] = value
    return args


def _orphan_args(top: Path, found: list[Path]) -> list[str]:
    templates = {p for p in found if p.suffix == TEMPLATE_SUFFIX}
    orphans = []
    for args in sorted(top.rglob("*" + ARGS_SUFFIX)):
        if any(part.startswith(".") for part in args.relative_to(top).parts):
            continue
        template = args.with_name(args.name[: -len(ARGS_SUFFIX)] + TEMPLATE_SUFFIX)
        if template not in templates:
            orphans.append(f"{args}: arguments for {template.name}, which is not there")
    return orphans


def read_documents(
    paths: list[str | os.PathLike[str]], *, jsonnet_args: Mapping[str, Any] | None = None
) -> list[Document]:
    """Every document in the files and folders, with its origin; all parse errors at once.

    ``*.jsonnet`` templates are rendered with the arguments of their sibling ``.args.yaml``
    and ``jsonnet_args`` (``tusk apply --arg``), which win over the file's.
    """
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = spec_files(path)
            orphans = _orphan_args(path, found)
            if orphans:
                raise InvalidArgument(
                    "; ".join(orphans) + f"; name it after its template (x{TEMPLATE_SUFFIX} "
                    f"takes x{ARGS_SUFFIX})"
                )
            if not found:
                raise SourceError(
                    f"{str(path)!r} holds no .yaml, .yml, .json or .jsonnet spec files"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise SourceError(f"no such spec file or folder {str(path)!r}")
    facts: dict[Path, dict[str, Any] | None] = {}

    def origin_of(file: Path) -> dict[str, Any]:
        folder = file.resolve().parent
        if folder not in facts:
            facts[folder] = git_facts(folder)
        origin: dict[str, Any] = {"spec_file": str(file.resolve()), "working_dir": str(folder)}
        git = facts[folder]
        if git is not None:
            origin["git"] = {**git, "path": os.path.relpath(file.resolve(), git["root"])}
        return origin

    return documents_of(
        ((file, str(file), origin_of(file)) for file in files), jsonnet_args=jsonnet_args
    )


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_facts(folder: Path) -> dict[str, Any] | None:
    """SHA, remote, branch and dirtiness of the git work tree holding ``folder``, or None."""
    root = _git(folder, "rev-parse", "--show-toplevel")
    sha = _git(folder, "rev-parse", "HEAD") if root else None
    if root is None or sha is None:
        return None
    facts: dict[str, Any] = {"sha": sha, "root": root}
    remote = _git(folder, "remote", "get-url", "origin")
    if remote is None:
        names = (_git(folder, "remote") or "").split()
        remote = _git(folder, "remote", "get-url", names[0]) if names else None
    if remote:
        facts["remote"] = _without_credentials(remote)
    branch = _git(folder, "symbolic-ref", "--quiet", "--short", "HEAD")
    branch = branch or os.environ.get("GITHUB_HEAD_REF") or os.environ.get("GITHUB_REF_NAME")
    if branch:
        facts["branch"] = branch
    status = _git(folder, "status", "--porcelain")
    facts["dirty"] = bool(status)
    return facts


def _without_credentials(url: str) -> str:
    """A remote URL without the user and token an HTTPS clone in CI may carry."""
    if "://" not in url:
        return url  # scp-like git@github.com:org/repo.git carries no secret
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def as_documents(documents: list[Document | dict[str, Any]]) -> list[Document]:
    """Documents as given to ``Client.apply``: a plain dict is a document without origin."""
    return [d if isinstance(d, Document) else Document(dict(d)) for d in documents]
