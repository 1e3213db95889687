"""Glob syntax of pipeline inputs, as Pachyderm 2.x spells it (a leaf: specs check globs
with it and :mod:`tusk.pps.datums` matches files with it).

Globs are matched against absolute paths of files *and* directories
(a directory is ``/a``, without the trailing slash; the root is matched only by the glob
``/``). Syntax, as Pachyderm's glob library:

- ``*`` any run of characters within one path segment, ``?`` one character (not ``/``);
- ``**`` any run of characters including ``/``: ``/**`` matches every file and every
  directory below the root, ``/**.csv`` every ``.csv`` file at any depth. As in git and
  doublestar, ``/**/`` also matches a single ``/``, so ``/a/**/b`` matches ``/a/b`` (Pachyderm's
  library does not; this only ever adds matches);
- ``[abc]``, ``[a-z]``, ``[!abc]`` / ``[^abc]`` one character of a class (never ``/``);
- ``{a,b}`` alternatives (each may hold wildcards);
- ``( )`` capture groups, numbered by their opening parenthesis, used by ``join_on`` and
  ``group_by`` as ``$1``, ``$2``... (``$0`` is the whole matched path, ``$$`` a literal ``$``);
- ``\\x`` the character x literally; everything else is literal. Trailing slashes are ignored.

"""

from __future__ import annotations

import posixpath
import re

from tusk.errors import InvalidSpec

_TEMPLATE_REF = re.compile(r"\$(?:(\$)|(\d+)|\{(\d+)\})")


def normalize_glob(glob: str) -> str:
    """A glob as Pachyderm cleans it (``pfsfile.CleanPath``): always absolute, ``.``/``..``
    segments resolved, repeated and trailing slashes dropped; ``""``, ``"."`` and ``"/"`` are
    the root. So ``*`` means ``/*`` and ``a/`` means ``/a``."""
    if glob.startswith("/") and "//" not in glob and "/." not in glob:
        trimmed = glob.rstrip("/")  # the common case, already clean
        return trimmed if trimmed else "/"
    return "/" + posixpath.normpath("/" + glob).strip("/")


def _glob_error(glob: str, problem: str) -> InvalidSpec:
    return InvalidSpec(f"invalid glob {glob!r}: {problem}")


def glob_to_regex(glob: str) -> re.Pattern[str]:
    """Compile a glob (see the module doc) to a regex that matches whole absolute paths.

    Capture groups of the glob are the regex's groups, in the same order. Raises InvalidSpec
    for an unclosed ``[``, ``(`` or ``{`` or an unbalanced ``)`` or ``}``.
    """
    glob = normalize_glob(glob)
    out: list[str] = []
    stack: list[tuple[str, int]] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "\\":
            if i + 1 == n:
                raise _glob_error(glob, "ends with a lone '\\'; escape it as '\\\\'")
            out.append(re.escape(glob[i + 1]))
            i += 2
        elif c == "*":
            j = i
            while j < n and glob[j] == "*":
                j += 1
            if j - i == 1:
                out.append("[^/]*")
            elif i > 0 and glob[i - 1] == "/" and j < n and glob[j] == "/":
                out.append("(?:.*/)?")  # "/**/": any directories, or none
                j += 1
            else:
                out.append(".*")
            i = j
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            regex, i = _char_class(glob, i)
            out.append(regex)
        elif c == "{":
            stack.append(("{", i))
            out.append("(?:")
            i += 1
        elif c == "," and stack and stack[-1][0] == "{":
            out.append("|")
            i += 1
        elif c == "}":
            if not stack or stack[-1][0] != "{":
                raise _glob_error(glob, f"'}}' at position {i} closes nothing; escape it as '\\}}'")
            stack.pop()
            out.append(")")
            i += 1
        elif c == "(":
            stack.append(("(", i))
            out.append("(")
            i += 1
        elif c == ")":
            if not stack or stack[-1][0] != "(":
                raise _glob_error(glob, f"')' at position {i} closes nothing; escape it as '\\)'")
            stack.pop()
            out.append(")")
            i += 1
        else:
            out.append(re.escape(c))
            i += 1
    if stack:
        opener, pos = stack[-1]
        closer = ")" if opener == "(" else "}"
        raise _glob_error(
            glob, f"'{opener}' at position {pos} is never closed; add '{closer}' or escape it"
        )
    return re.compile(r"\A(?:" + "".join(out) + r")\Z", re.DOTALL)


def _char_class(glob: str, start: int) -> tuple[str, int]:
    """Translate ``[...]`` at ``start``; returns the regex and the index after ``]``."""
    i = start + 1
    negate = i < len(glob) and glob[i] in "!^"
    if negate:
        i += 1
    parts: list[str] = []
    first = True
    while True:
        if i >= len(glob):
            raise _glob_error(
                glob, f"'[' at position {start} is never closed; add ']' or escape it as '\\['"
            )
        c = glob[i]
        if c == "]" and not first:
            i += 1
            break
        if c == "\\" and i + 1 < len(glob):
            parts.append(re.escape(glob[i + 1]))
            i += 2
        else:
            parts.append("-" if c == "-" else re.escape(c))
            i += 1
        first = False
    body = "".join(parts)
    if negate:
        return f"[^/{body}]", i
    return f"(?!/)[{body}]", i


def template_groups(template: str) -> list[int]:
    """Capture-group numbers a ``join_on``/``group_by`` template uses (``$1``, ``${2}``).

    Raises InvalidSpec for a ``$`` that is not followed by a group number or another ``$``.
    """
    return [part for part in _template_parts(template) if isinstance(part, int)]


def _template_parts(template: str) -> list[str | int]:
    parts: list[str | int] = []
    pos = 0
    while True:
        dollar = template.find("$", pos)
        if dollar < 0:
            parts.append(template[pos:])
            return parts
        parts.append(template[pos:dollar])
        m = _TEMPLATE_REF.match(template, dollar)
        if m is None:
            raise InvalidSpec(
                f"{template!r}: '$' at position {dollar} must be followed by a capture group "
                "number like $1 or ${1} (write $$ for a literal '$')"
            )
        if m.group(1):
            parts.append("$")
        else:
            parts.append(int(m.group(2) or m.group(3)))
        pos = m.end()


def expand_key(template: str, match: re.Match[str]) -> str:
    """Substitute a match's capture groups into a ``join_on``/``group_by`` template."""
    out = []
    for part in _template_parts(template):
        if isinstance(part, int):
            group = match.group(part) if part <= (match.re.groups or 0) else None
            out.append(group or "")
        else:
            out.append(part)
    return "".join(out)
