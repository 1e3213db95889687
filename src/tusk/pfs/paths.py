"""File paths inside a commit: always absolute, '/'-separated, no '.', '..' or empty segments."""

from __future__ import annotations

from tusk.errors import InvalidPath

_BAD_CHARS = ("\0", "\n", "\r", "/")


def check_parts(parts: tuple[str, ...]) -> tuple[str, ...]:
    """Check path segments that were split already (e.g. names read from a local folder)."""
    # Whole-tuple tests run in C; the loop below only runs to name the bad segment.
    flat = "".join(parts)
    if "" in parts or "." in parts or ".." in parts or any(c in flat for c in _BAD_CHARS):
        for part in parts:
            if part in ("", ".", "..") or any(c in part for c in _BAD_CHARS):
                raise InvalidPath(
                    f"invalid path segment {part!r} in {'/' + '/'.join(parts)!r}: empty, '.', "
                    "'..', '/', NUL and newlines are not allowed"
                )
    return parts


def split_path(path: str) -> tuple[str, ...]:
    """'/a/b/' -> ('a', 'b'); '/' or '' -> (). Refuses '..', '.', NUL and empty segments."""
    if "\0" in path:
        raise InvalidPath(f"invalid path {path!r}: NUL bytes are not allowed")
    trimmed = path.strip("/") if path not in ("", "/") else ""
    if path.startswith("//") or (path.endswith("//") and trimmed):
        raise InvalidPath(f"invalid path {path!r}: empty path segments are not allowed")
    if not trimmed:
        return ()
    parts = tuple(trimmed.split("/"))
    for part in parts:
        if part == "":
            raise InvalidPath(f"invalid path {path!r}: empty path segments are not allowed")
        if part in (".", ".."):
            raise InvalidPath(f"invalid path {path!r}: '.' and '..' segments are not allowed")
        if "\n" in part or "\r" in part:
            raise InvalidPath(f"invalid path {path!r}: newlines are not allowed")
    return parts


def normalize_path(path: str) -> str:
    return "/" + "/".join(split_path(path))


def join_path(*parts: str) -> str:
    return normalize_path("/".join(p.strip("/") for p in parts if p.strip("/")))
