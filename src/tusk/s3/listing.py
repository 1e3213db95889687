"""Keys in S3's order, straight from a commit's tree.

S3 lists keys in lexicographic order of the whole key; a tree lists each directory's names
in order. The two differ where a name sorts between a directory's name and that name plus
``/`` (``a-b`` comes before the keys under ``a/``, since ``-`` < ``/``). :func:`ordered` puts
a directory back in place by its name plus ``/`` with a small heap that only ever holds the
directories still waiting for their turn, so a listing streams page by page from the tree:
no key list is built, sorted or held, and a listing with a prefix or a start key descends
only into the directories that can hold what it wants.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from tusk.pfs.service import PfsService
from tusk.pfs.tree import DirEntry, Entry, FileEntry
from tusk.values import frozen


@frozen
class Item:
    key: str  # a key, or a common prefix (ending with the delimiter)
    entry: FileEntry | None  # None for a common prefix


def ordered(entries: Iterator[tuple[str, Entry]]) -> Iterator[tuple[str, Entry]]:
    """A directory's (name, entry) pairs, from name order into key order."""
    waiting: list[tuple[str, str, int, Entry]] = []
    n = 0
    for name, entry in entries:
        while waiting and waiting[0][0] < name:
            _, wname, _, wentry = heapq.heappop(waiting)
            yield wname, wentry
        if isinstance(entry, DirEntry):
            n += 1
            heapq.heappush(waiting, (name + "/", name, n, entry))
        else:
            yield name, entry
    while waiting:
        _, wname, _, wentry = heapq.heappop(waiting)
        yield wname, wentry


def iter_keys(
    pfs: PfsService, root: bytes, prefix: str, delimiter: str, after: str = ""
) -> Iterator[Item]:
    """Every key (or, with ``delimiter``, common prefix) of the tree ``root`` that starts
    with ``prefix`` and sorts after ``after``, in S3's order."""
    dir_path, _, name_start = prefix.rpartition("/")
    if dir_path:
        entry = pfs.tree_entry(root, "/" + dir_path)
        if not isinstance(entry, DirEntry):
            return
        node, base = entry.node, dir_path + "/"
    else:
        node, base = root, ""
    items = _walk(pfs, node, base, name_start, "/" if delimiter == "/" else "", after)
    if delimiter and delimiter != "/":
        items = _roll_up(items, prefix, delimiter)
    for item in items:
        if item.key > after:
            yield item


def _walk(
    pfs: PfsService, node: bytes, base: str, start: str, delimiter: str, after: str
) -> Iterator[Item]:
    from tusk.pfs.tree import EMPTY_TREE

    if node == EMPTY_TREE:
        return
    for name, entry in ordered(pfs.dir_entries(node)):
        if start and not name.startswith(start):
            # ``start`` holds no "/": the names that start with it are one run in key order.
            if (name + "/" if isinstance(entry, DirEntry) else name) > start:
                break
            continue
        key = base + name
        if isinstance(entry, FileEntry):
            if key > after:
                yield Item(key, entry)
            continue
        below = key + "/"
        if after >= below and not after.startswith(below):
            continue  # every key below sorts before ``after``
        if delimiter:
            if below > after:
                yield Item(below, None)
            continue
        yield from _walk(pfs, entry.node, below, "", delimiter, after)


def _roll_up(items: Iterator[Item], prefix: str, delimiter: str) -> Iterator[Item]:
    """Common prefixes for a delimiter other than ``/`` (keys come in order, so a prefix's
    keys are neighbours)."""
    last = None
    for item in items:
        rest = item.key[len(prefix) :]
        cut = rest.find(delimiter)
        if cut < 0:
            yield item
            continue
        common = prefix + rest[: cut + len(delimiter)]
        if common != last:
            last = common
            yield Item(common, None)
