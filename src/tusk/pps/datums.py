"""Datums: how a pipeline's input is cut into units of work, as Pachyderm 2.x cuts it.

A *datum* is a set of files, each from one named input, that user code sees together under
``/pfs/<input name>/<path>``. Datums come from globs over each pfs input's commit and are
combined by cross, union, join and group inputs.

Globs (:mod:`tusk.pps.globs`) are matched against absolute paths of files and directories.

Each match is one datum holding the match and, for a directory, every file below it. So ``/*``
on ``/a/x, /a/y, /b`` gives two datums, ``/a`` (x and y) and ``/b``; ``/`` gives one datum with
every file. ``/**`` gives one datum per file *and* one per directory (so a file below a
directory is in several datums), which is what Pachyderm 2.x does (pachyderm issue #3335); to
get one datum per file at any depth, match the files by name, e.g. ``/**.csv``. An input whose
commit has no matching path gives no datums.

A datum's ``id`` is the BLAKE3 of its sorted (input name, matched path) pairs: it names the
datum across commits whatever the content. :meth:`Datum.hash` adds the salt and every file's
(input name, path, content hash), so a job can skip a datum whose hash it has already
processed.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import blake3

from tusk.errors import InvalidPath, InvalidSpec
from tusk.pps.globs import expand_key, glob_to_regex, normalize_glob, template_groups
from tusk.pps.spec import CronInput, Input, PfsInput
from tusk.values import frozen


@frozen
class FileInfo:
    """One file of an input commit, as ``files_for`` returns it."""

    path: str
    hash: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "hash": self.hash, "size": self.size}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileInfo:
        return cls(path=str(data["path"]), hash=str(data["hash"]), size=int(data["size"]))


#: Lists every file of a pfs input's commit, sorted by path.
FilesFor = Callable[[PfsInput], Sequence[FileInfo]]


@frozen
class DatumFile:
    """A file of a datum: where it comes from and how it is mounted."""

    input_name: str
    repo: str
    branch: str
    path: str
    hash: str
    size: int
    lazy: bool = False
    empty: bool = False

    @property
    def mount_path(self) -> str:
        """Where user code sees it: ``/pfs/<input name><path>``."""
        return f"/pfs/{self.input_name}{self.path}"

    def to_json(self) -> dict[str, Any]:
        return {
            "input_name": self.input_name,
            "repo": self.repo,
            "branch": self.branch,
            "path": self.path,
            "hash": self.hash,
            "size": self.size,
            "lazy": self.lazy,
            "empty": self.empty,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DatumFile:
        return cls(
            input_name=str(data["input_name"]),
            repo=str(data["repo"]),
            branch=str(data["branch"]),
            path=str(data["path"]),
            hash=str(data["hash"]),
            size=int(data["size"]),
            lazy=bool(data.get("lazy", False)),
            empty=bool(data.get("empty", False)),
        )


@frozen
class Datum:
    """A unit of work: its stable ``id``, its files sorted by (input name, path), and the
    (input name, matched path) pairs it was made from (a matched path may be a directory)."""

    id: str
    files: tuple[DatumFile, ...]
    matches: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, matches: Iterable[tuple[str, str]], files: Iterable[DatumFile]) -> Datum:
        """Build a datum from its matches and files, computing the id."""
        pairs = tuple(sorted(set(matches)))
        unique = {(f.input_name, f.path): f for f in files}
        ordered = tuple(unique[key] for key in sorted(unique))
        return cls(id=datum_id(pairs), files=ordered, matches=pairs)

    def hash(self, salt: str) -> str:
        """64-hex BLAKE3 of the id, the salt and every file's (input name, path, hash)."""
        body: list[Any] = ["tusk-datum-hash-v1", self.id, salt]
        body.extend([f.input_name, f.path, f.hash] for f in self.files)
        return _blake3_json(body)

    def inputs(self) -> list[str]:
        """Names of the inputs present in this datum, sorted."""
        names = {name for name, _ in self.matches} | {f.input_name for f in self.files}
        return sorted(names)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matches": [list(pair) for pair in self.matches],
            "files": [f.to_json() for f in self.files],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Datum:
        return cls(
            id=str(data["id"]),
            files=tuple(DatumFile.from_json(f) for f in data["files"]),
            matches=tuple((str(name), str(path)) for name, path in data.get("matches", [])),
        )


def datum_id(matches: Iterable[tuple[str, str]]) -> str:
    """64-hex BLAKE3 of the sorted (input name, matched path) pairs."""
    return _blake3_json(["tusk-datum-v1", [list(pair) for pair in sorted(set(matches))]])


def _blake3_json(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return blake3.blake3(text.encode("utf-8")).hexdigest()


# --- datums ------------------------------------------------------------------------------


@frozen
class _Match:
    """One glob match of one pfs input: the datum piece it contributes."""

    input_name: str
    path: str
    files: tuple[DatumFile, ...]
    match: re.Match[str] | None
    source: str = ""  # repo@branch (or repo@commit) the match comes from


_Combo = tuple[_Match, ...]


def cron_as_pfs(cron: CronInput) -> PfsInput:
    """A cron input is read as the pfs input ``<cron repo>@master`` with glob ``/*``."""
    if not cron.repo:
        raise InvalidSpec(
            f"cron input {cron.name!r} has no repo; validate the whole spec with load_spec, "
            "which fills in <pipeline>_<name>"
        )
    return PfsInput(repo=cron.repo, branch="master", glob="/*", name=cron.name)


def pfs_matches(pfs: PfsInput, files: Sequence[FileInfo]) -> list[tuple[str, list[FileInfo]]]:
    """The glob's matches over ``files`` (sorted by path), each with the files it holds."""
    ordered = sorted(files, key=lambda f: f.path)
    paths = [f.path for f in ordered]
    for path in paths:
        if not path.startswith("/") or path == "/":
            raise InvalidPath(
                f"file path {path!r} of input {pfs.name!r} is not an absolute file path; "
                "files_for must return paths like '/dir/file'"
            )
    glob = normalize_glob(pfs.glob)
    if glob == "/":
        return [("/", list(ordered))] if ordered else []
    pattern = glob_to_regex(glob)
    candidates: set[str] = set()
    for path in paths:
        candidates.add(path)
        cut = path.rfind("/")
        while cut > 0:
            parent = path[:cut]
            if parent in candidates:
                break
            candidates.add(parent)
            cut = path.rfind("/", 0, cut)
    out = []
    for match_path in sorted(candidates):
        if pattern.match(match_path) is None:
            continue
        out.append((match_path, _files_under(match_path, paths, ordered)))
    return out


def _files_under(match_path: str, paths: list[str], files: list[FileInfo]) -> list[FileInfo]:
    out = []
    i = bisect.bisect_left(paths, match_path)
    if i < len(paths) and paths[i] == match_path:
        out.append(files[i])
    prefix = match_path + "/"
    i = bisect.bisect_left(paths, prefix)
    while i < len(paths) and paths[i].startswith(prefix):
        out.append(files[i])
        i += 1
    return out


def _matches(pfs: PfsInput, files_for: FilesFor) -> list[_Match]:
    glob = normalize_glob(pfs.glob)
    pattern = glob_to_regex(glob)
    out = []
    for path, files in pfs_matches(pfs, files_for(pfs)):
        datum_files = _datum_files(pfs, files)
        out.append(_Match(pfs.name, path, datum_files, pattern.match(path), _source(pfs)))
    return out


def _datum_files(pfs: PfsInput, files: Iterable[FileInfo]) -> tuple[DatumFile, ...]:
    return tuple(
        DatumFile(
            input_name=pfs.name,
            repo=pfs.repo,
            branch=pfs.branch,
            path=f.path,
            hash=f.hash,
            size=f.size,
            lazy=pfs.lazy,
            empty=pfs.empty_files,
        )
        for f in files
    )


def match_datum(pfs: PfsInput, path: str, files: Iterable[FileInfo]) -> Datum:
    """The datum of one glob match ``path`` of a pipeline whose input is the single pfs input
    ``pfs``, holding ``files`` (the match itself, or every file below it): the same datum
    :func:`compute_datums` makes for that match."""
    return _datum((_Match(pfs.name, path, _datum_files(pfs, files), None, _source(pfs)),))


def files_reference(job: str) -> str:
    """What a datum carried forward unchanged records as its files: the job whose record of
    the same datum holds the list (see :func:`datum_files`)."""
    return json.dumps({"same_as": job}, separators=(",", ":"))


def datum_files(text: str, lookup: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """A datum record's files as a list of :meth:`DatumFile.to_json` dicts: the list itself,
    or, for a reference (:func:`files_reference`), the list of the record that
    ``lookup(job)`` returns (the same datum in that job; [] if it is gone)."""
    data = json.loads(text)
    if isinstance(data, dict):
        found = lookup(str(data.get("same_as", "")))
        data = json.loads(found) if found is not None else []
        if isinstance(data, dict):  # references always name a record with the list
            data = []
    return list(data)


def glob_segments(glob: str) -> list[Callable[[str], bool]] | None:
    """One test per path segment, equivalent to ``glob`` when each of its segments matches
    exactly one path segment (no ``**``, braces, groups or escapes; ``/`` itself is not
    cut): a path matches the glob iff it has that many segments and each passes its test.
    None for other globs. Lets a caller find the matches by walking the tree to that depth
    (``/*`` over a million files reads the top directory, not the files)."""
    glob = normalize_glob(glob)
    if glob == "/" or "**" in glob or any(c in glob for c in "{}()\\"):
        return None
    tests: list[Callable[[str], bool]] = []
    for seg in glob[1:].split("/"):
        try:
            regex = glob_to_regex("/" + seg)
        except InvalidSpec:  # a class cut by "/", e.g. "[a/b]": not segment by segment
            return None
        tests.append(_segment_test(regex))
    return tests


def _segment_test(regex: re.Pattern[str]) -> Callable[[str], bool]:
    def test(name: str) -> bool:
        return regex.match("/" + name) is not None

    return test


def compute_datums(
    input: Input,
    files_for: FilesFor,
    *,
    cron: Callable[[CronInput], PfsInput] = cron_as_pfs,
) -> list[Datum]:
    """Every datum of an input tree, in a deterministic order (see the module doc).

    - pfs/cron: one datum per glob match, by path;
    - cross: the cartesian product of the children's datums, first child outermost;
    - union: the children's datums one child after another, a repeated datum kept once
      (branches may share an input name; a datum then also records which repo it is from);
    - join: per join key (``join_on`` with the glob's groups substituted, keys in sorted
      order), the product of every child's matches with that key; if some child has no match
      for a key, the product of the ``outer_join`` children's matches that do (nothing if
      none of them is outer). A child without ``join_on`` gives every match the key ``""``,
      as Pachyderm does (see ``Input._exactly_one``), so a join of such children is their
      cross;
    - group: per ``group_by`` key (sorted), one datum with every child's matches of that key.

    ``cron`` turns a cron input into the pfs input that reads its ticks (default
    :func:`cron_as_pfs`); a caller may pin the tick commit through it.
    """
    return list(iter_datums(input, files_for, cron=cron))


def iter_datums(
    input: Input,
    files_for: FilesFor,
    *,
    cron: Callable[[CronInput], PfsInput] = cron_as_pfs,
) -> Iterator[Datum]:
    """:func:`compute_datums` one datum at a time (children are still listed up front)."""
    shared = _shared_names(input, cron)
    for combo in _combos(input, files_for, cron):
        yield _datum(combo, shared)


def _source(pfs: PfsInput) -> str:
    return f"{pfs.repo}@{pfs.commit or pfs.branch}"


def _shared_names(input: Input, cron: Callable[[CronInput], PfsInput]) -> frozenset[str]:
    """Input names that several leaves with different sources present (only the branches of
    a union may share a name; see spec.py)."""
    sources: dict[str, set[str]] = {}
    for leaf in input.leaves():
        pfs = leaf if isinstance(leaf, PfsInput) else cron(leaf)
        sources.setdefault(pfs.name, set()).add(_source(pfs))
    return frozenset(name for name, found in sources.items() if len(found) > 1)


def _datum(combo: _Combo, shared: frozenset[str] = frozenset()) -> Datum:
    datum = Datum.of(
        ((m.input_name, m.path) for m in combo),
        (f for m in combo for f in m.files),
    )
    qualified = sorted((m.input_name, m.source, m.path) for m in combo if m.input_name in shared)
    if not qualified:
        return datum
    # Two union branches under one name may match the same path in different repos: the
    # datum id then also names the source, as Pachyderm's (name, repo, branch, path) does.
    # Ids of datums without a shared name are unchanged.
    body = ["tusk-datum-v1", [list(pair) for pair in datum.matches], [list(q) for q in qualified]]
    return Datum(id=_blake3_json(body), files=datum.files, matches=datum.matches)


def _combo_key(combo: _Combo) -> tuple[tuple[str, str, str], ...]:
    return tuple(sorted({(m.input_name, m.source, m.path) for m in combo}))


def _combos(
    node: Input, files_for: FilesFor, cron: Callable[[CronInput], PfsInput]
) -> Iterator[_Combo]:
    if node.pfs is not None:
        for m in _matches(node.pfs, files_for):
            yield (m,)
    elif node.cron is not None:
        for m in _matches(cron(node.cron), files_for):
            yield (m,)
    elif node.cross is not None:
        lists = [list(_combos(child, files_for, cron)) for child in node.cross]
        for parts in itertools.product(*lists):
            yield tuple(m for part in parts for m in part)
    elif node.union is not None:
        seen: set[tuple[tuple[str, str, str], ...]] = set()
        for child in node.union:
            for combo in _combos(child, files_for, cron):
                key = _combo_key(combo)
                if key not in seen:
                    seen.add(key)
                    yield combo
    elif node.join is not None:
        yield from _join(node.join, files_for)
    elif node.group is not None:
        yield from _group(node.group, files_for)


def _keyed(children: list[Input], files_for: FilesFor, field: str) -> list[dict[str, list[_Match]]]:
    """Per child, its matches by key (``join_on`` or ``group_by`` with groups substituted)."""
    out = []
    for child in children:
        pfs = child.pfs
        if pfs is None:  # load_spec refuses this; an Input built by hand may not
            raise InvalidSpec(f"a {field.split('_')[0]} input takes pfs inputs only")
        template = getattr(pfs, field)
        by_key: dict[str, list[_Match]] = {}
        for m in _matches(pfs, files_for):
            key = expand_key(template, m.match) if m.match is not None else template
            by_key.setdefault(key, []).append(m)
        out.append(by_key)
    return out


def _join(children: list[Input], files_for: FilesFor) -> Iterator[_Combo]:
    keyed = _keyed(children, files_for, "join_on")
    outer = [child.pfs is not None and child.pfs.outer_join for child in children]
    for key in sorted({k for by_key in keyed for k in by_key}):
        present = [i for i, by_key in enumerate(keyed) if key in by_key]
        if len(present) < len(children):
            present = [i for i in present if outer[i]]
            if not present:
                continue
        for parts in itertools.product(*(keyed[i][key] for i in present)):
            yield tuple(parts)


def _group(children: list[Input], files_for: FilesFor) -> Iterator[_Combo]:
    keyed = _keyed(children, files_for, "group_by")
    for key in sorted({k for by_key in keyed for k in by_key}):
        yield tuple(m for by_key in keyed for m in by_key.get(key, []))


__all__ = [
    "Datum",
    "DatumFile",
    "FileInfo",
    "FilesFor",
    "compute_datums",
    "cron_as_pfs",
    "datum_files",
    "datum_id",
    "expand_key",
    "files_reference",
    "glob_segments",
    "glob_to_regex",
    "iter_datums",
    "match_datum",
    "normalize_glob",
    "pfs_matches",
    "template_groups",
]
