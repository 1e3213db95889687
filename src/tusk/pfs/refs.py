"""Addresses as users type them: ``repo``, ``repo@branch``, ``repo@<commit>^2:/path``."""

from __future__ import annotations

import re

from tusk.errors import InvalidArgument
from tusk.ids import check_repo_name
from tusk.pfs.paths import normalize_path
from tusk.values import frozen

DEFAULT_BRANCH = "master"
_REF = re.compile(r"^(?P<base>[A-Za-z0-9_-]+)(?P<anc>(?:[\^~][0-9]*)*)$")
_ANC = re.compile(r"([\^~])([0-9]*)")


@frozen(slots=True)
class Ref:
    """A branch name or commit id, and how many ancestors to step back from it."""

    base: str
    ancestors: int = 0

    def __str__(self) -> str:
        return self.base + (f"~{self.ancestors}" if self.ancestors else "")


@frozen(slots=True)
class Address:
    repo: str
    ref: Ref
    path: str | None  # normalised, or None when the address has no ':path' part
    explicit_ref: bool = True
    trailing_slash: bool = False  # 'repo@b:/dir/' names a directory

    def __str__(self) -> str:
        return f"{self.repo}@{self.ref}" + (f":{self.path}" if self.path is not None else "")


def parse_ref(text: str) -> Ref:
    m = _REF.match(text)
    if not m:
        raise InvalidArgument(
            f"invalid reference {text!r}: use a branch name or commit id, optionally with ^N or ~N"
        )
    steps = 0
    for sign, num in _ANC.findall(m.group("anc")):
        steps += int(num) if num else 1
        del sign
    return Ref(m.group("base"), steps)


def parse_address(text: str, *, default_branch: str = DEFAULT_BRANCH) -> Address:
    """Parse ``[project/]repo[@ref][:path]``."""
    if not text:
        raise InvalidArgument("empty address: use repo@branch:/path")
    head, sep, path = text.partition(":")
    repo, at, ref = head.partition("@")
    repo = check_repo_name(repo)  # default/images is images
    if at and not ref:
        raise InvalidArgument(f"invalid address {text!r}: nothing after '@'; use repo@branch")
    return Address(
        repo=repo,
        ref=parse_ref(ref) if ref else Ref(default_branch),
        path=normalize_path(path) if sep else None,
        explicit_ref=bool(at),
        trailing_slash=bool(sep) and path.endswith("/"),
    )
