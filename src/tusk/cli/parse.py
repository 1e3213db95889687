"""Turning command-line text into SDK arguments: durations, ``put file`` sources and targets.

Pure functions, no I/O beyond reading list files and local file sizes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Literal

import click

from tusk.cli.core import fail
from tusk.values import frozen

STDIN = "-"

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d|w)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """``0``, ``90``, ``1.5s``, ``30m``, ``1h``, ``1h30m``, ``2d`` -> seconds."""
    s = text.strip().lower()
    if not s:
        raise ValueError("empty duration")
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2) or "s"]
        pos = m.end()
    return total


class Duration(click.ParamType):
    """A click parameter for durations like ``1h``, ``30m``, ``0`` or ``0.5``."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a duration; use e.g. 0, 45s, 30m, 1h or 1h30m", param, ctx)


def is_url(src: str) -> bool:
    from tusk.sdk import is_url as sdk_is_url  # the SDK's rule; imported only when putting

    return sdk_is_url(src)


def source_name(src: str) -> str:
    """The base name a source keeps when put into a directory (the SDK's rule)."""
    from tusk.sdk import source_name as sdk_source_name

    return sdk_source_name(src)


def read_source_list(text: str) -> list[str]:
    """One source per line; blank lines and ``#`` comments are skipped."""
    out = []
    for line in text.splitlines():
        item = line.strip()
        if item and not item.startswith("#"):
            out.append(item)
    return out


@frozen
class Target:
    """``repo@branch[:/path]`` split where ``put file`` needs it."""

    head: str  # repo@branch
    path: str | None  # the text after ':', as typed
    is_dir: bool  # the path ends with '/': put sources into it under their own names

    def join(self, name: str) -> str:
        base = (self.path or "/").rstrip("/")
        return f"{self.head}:{base}/{name}"


def split_target(address: str) -> Target:
    head, sep, path = address.partition(":")
    if not sep:
        return Target(head, None, False)
    return Target(head, path, path.endswith("/"))


@frozen
class PutPlan:
    """Which SDK call ``put file`` makes: ``put_file``, ``put_files`` or ``put_dir``."""

    kind: Literal["file", "files", "dir", "objects"]
    address: str
    # "file" and "dir": one ("", source); "files": (name under address, source) pairs.
    items: tuple[tuple[str, str], ...]


def plan_put(address: str, files: Sequence[str], listed: Sequence[str], recursive: bool) -> PutPlan:
    """Decide the SDK call for ``put file ADDRESS -f ... [-i ...] [-r]``."""
    sources = [*files, *listed]
    if not sources:
        fail("put file needs a source: -f FILE|URL|- or -i LISTFILE")
    target = split_target(address)
    if recursive:
        if len(sources) != 1 or listed:
            fail("put file -r takes exactly one directory (-f DIR)")
        src = sources[0]
        if src.startswith("s3://"):  # every object below the prefix
            return PutPlan("objects", address, (("", src),))
        if src == STDIN or is_url(src):
            fail("put file -r needs a local directory or an s3:// prefix, not stdin or a URL")
        # As in pachctl: the directory's contents go under PATH (default: /<dir name>).
        return PutPlan("dir", address, (("", src),))
    if len(files) == 1 and not listed:
        src = files[0]
        if target.path is None or target.is_dir:
            address = target.join(source_name(src))
        return PutPlan("file", address, (("", src),))
    items: list[tuple[str, str]] = []
    seen: set[str] = set()
    for src in sources:
        name = source_name(src)
        if name in seen:
            fail(f"two sources are named {name!r}; put them in separate commands")
        seen.add(name)
        items.append((name, src))
    return PutPlan("files", address, tuple(items))


def local_total(plan: PutPlan) -> int | None:
    """Bytes the plan will read, for a progress bar; None when a URL or stdin is involved."""
    total = 0
    for _name, src in plan.items:
        if src == STDIN or is_url(src):
            return None
        try:
            if plan.kind == "dir":
                for dirpath, _dirs, names in os.walk(src):
                    for n in names:
                        full = os.path.join(dirpath, n)
                        if os.path.isfile(full):
                            total += os.path.getsize(full)
            else:
                total += os.path.getsize(src)
        except OSError:
            return None
    return total
