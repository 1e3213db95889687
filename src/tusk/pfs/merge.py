"""Three-way merge of file trees, and the merge base of two commits.

:func:`merge_trees` merges ``theirs`` into ``ours`` against ``base`` at file level. It walks
only what ``theirs`` changed: a directory whose node is equal in ``base`` and ``theirs`` is
skipped whole, one that only ``theirs`` changed is taken whole (one entry, whatever it holds),
and inside a directory both sides changed only the pages of ``theirs`` that differ from
``base`` are read. So merging a branch that changed 100,000 files in folders the target left
alone costs a handful of node reads, and the cost elsewhere follows what both sides changed.

The result is a list of edits to apply to ``ours`` (a path and the entry it takes, or None to
delete it) and the conflicts: paths both sides changed differently, including one side
deleting what the other changed and a file on one side where the other has a directory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from tusk.pfs.tree import DirEntry, Entry, FileEntry, TreeReader
from tusk.values import frozen

# A path's edit: the entry it takes in the merge result, or None where it is deleted.
Edit = tuple[tuple[str, ...], Entry | None]


@frozen(slots=True)
class TreeConflict:
    parts: tuple[str, ...]
    base: Entry | None
    ours: Entry | None
    theirs: Entry | None

    @property
    def path(self) -> str:
        return "/" + "/".join(self.parts)


def same(a: Entry | None, b: Entry | None) -> bool:
    """Equal content: files by content id and size, directories by node."""
    if a is None or b is None:
        return a is b
    if isinstance(a, FileEntry) and isinstance(b, FileEntry):
        return a.hash == b.hash and a.size == b.size
    if isinstance(a, DirEntry) and isinstance(b, DirEntry):
        return a.node == b.node
    return False


def merge_trees(
    reader: TreeReader, base: bytes | None, ours: bytes | None, theirs: bytes | None
) -> tuple[list[Edit], list[TreeConflict]]:
    """The edits that merge ``theirs`` into ``ours`` (root nodes; None for an empty tree)."""
    edits: list[Edit] = []
    conflicts: list[TreeConflict] = []
    _merge_dir(reader, (), base, ours, theirs, edits, conflicts)
    return edits, conflicts


def _node(e: Entry | None) -> bytes | None:
    return e.node if isinstance(e, DirEntry) else None


def _merge_dir(
    reader: TreeReader,
    parts: tuple[str, ...],
    base: bytes | None,
    ours: bytes | None,
    theirs: bytes | None,
    edits: list[Edit],
    conflicts: list[TreeConflict],
) -> None:
    if theirs == base or ours == theirs:
        return
    for name in _changed_names(reader, base, theirs):
        eb = reader.child(base, name) if base else None
        eo = reader.child(ours, name) if ours else None
        et = reader.child(theirs, name) if theirs else None
        path = (*parts, name)
        if same(et, eb) or same(eo, et):
            continue
        if same(eo, eb):
            edits.append((path, et))
        elif isinstance(eo, DirEntry) and isinstance(et, DirEntry):
            # Both changed a folder (or both made one): merge inside it, file by file.
            _merge_dir(reader, path, _node(eb), eo.node, et.node, edits, conflicts)
        else:
            conflicts.append(TreeConflict(path, eb, eo, et))


def _changed_names(reader: TreeReader, base: bytes | None, theirs: bytes | None) -> Iterator[str]:
    """Names whose entry may differ between two directory nodes: those on pages they do not
    share (a page equal on both sides holds equal entries)."""
    base_pages = reader.pages(base) if base else []
    their_pages = reader.pages(theirs) if theirs else []
    common = {p.node for p in base_pages} & {p.node for p in their_pages}
    names: set[str] = set()
    for ref in (*base_pages, *their_pages):
        if ref.node not in common:
            names.update(reader.page(ref.node).names)
    return iter(sorted(names))


def merge_bases(
    graph: Mapping[str, tuple[str | None, str | None, float]], a: str, b: str
) -> list[str]:
    """The best common ancestors of commits ``a`` and ``b`` (each may be its own): those that
    are no ancestor of another common one. More than one is a criss-cross merge. Newest first.

    ``graph`` maps every commit of the repo to (parent, merge parent, started_at).
    """
    ours = ancestors(graph, [a])
    common: set[str] = set()
    stack, seen = [b], set()
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        if cid in ours:
            common.add(cid)  # its own ancestors are common too, and never best
            continue
        stack.extend(p for p in graph.get(cid, (None, None, 0.0))[:2] if p is not None)
    below: set[str] = set()
    for cid in common:
        below |= ancestors(graph, [p for p in graph[cid][:2] if p is not None])
    best = [cid for cid in common if cid not in below]
    return sorted(best, key=lambda cid: (-graph[cid][2], cid))


def ancestors(
    graph: Mapping[str, tuple[str | None, str | None, float]], starts: Sequence[str]
) -> set[str]:
    """``starts`` and every commit reachable from them through parents."""
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        cid = stack.pop()
        if cid in seen or cid not in graph:
            continue
        seen.add(cid)
        stack.extend(p for p in graph[cid][:2] if p is not None)
    return seen
