"""One batch of datums, start to finish except recording: inputs out of the store, user code,
outputs into the store. The scheduler runs it in a worker thread (local executor) or ships it
to a Dask worker (``tusk.pps.dask_executor``), which opens the same stores by URL; either way
the result comes back as data (outcomes, chunk lists, pack index rows) for the scheduler to
record in one transaction, so what a batch wrote becomes visible only with that record.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tusk.errors import NotFound, TuskError
from tusk.pps.executor import DatumOutcome, DatumTask, LocalExecutor, collect_outputs

if TYPE_CHECKING:  # a remote worker (tusk.pps.remote_worker) runs batches without a store
    from tusk.pfs import PfsService
    from tusk.pps.lazy import LazyView
    from tusk.storage.chunks import ChunkRef, IndexEntry


@dataclass
class BatchItem:
    """A datum to run: the task for the executor and the input files to put under /pfs."""

    task: DatumTask
    files: list[dict]  # DatumFile.to_json() of each input file


@dataclass
class BatchResult:
    datum: str
    outcome: DatumOutcome
    # what ``keep`` made of its /pfs/out: (path segments, chunk refs) when stored here
    outputs: list[Any]


def materialize(
    pfs: PfsService,
    trees: dict[tuple[str, str], bytes],
    work: list[tuple[Path, list[dict]]],
    lazy: LazyView | None = None,
) -> None:
    """Write every input file of a batch, reading all their chunks in one pass. With
    ``lazy``, the files of lazy inputs are added to that view instead (each datum's
    ``<root>/<input>`` a link to its folder there: tusk.pps.lazy)."""
    from tusk.pfs.tree import FileEntry

    targets: list[tuple[Path, list[ChunkRef]]] = []
    for root, files in work:
        names = {f["input_name"] for f in files}
        lazy_names = set()
        if lazy is not None:
            lazy_names = names - {f["input_name"] for f in files if not f.get("lazy")}
        for name in names - lazy_names:
            (root / name).mkdir(parents=True, exist_ok=True)
        for f in files:
            if f["input_name"] in lazy_names:
                assert lazy is not None
                tree = trees[(f["repo"], f["branch"])]
                entry = None if f.get("empty") else pfs.tree_entry(tree, f["path"])
                if entry is not None and not isinstance(entry, FileEntry):
                    raise NotFound(f"{f['repo']}@{f['branch']}:{f['path']} is not a file")
                lazy.add(root.name, f["input_name"], f["path"], entry)
                continue
            dest = root / f["input_name"] / f["path"].lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if f.get("empty"):
                dest.touch()
                continue
            tree = trees[(f["repo"], f["branch"])]
            targets.append((dest, pfs.file_chunks(tree, f["path"])))
        for name in sorted(lazy_names):
            assert lazy is not None
            root.mkdir(parents=True, exist_ok=True)
            os.symlink(lazy.folder(root.name, name), root / name)
    chunks = pfs.chunks.read_chunks([c for _, refs in targets for c in refs])
    for dest, refs in targets:
        with open(dest, "wb") as out:
            for _ in refs:
                out.write(next(chunks))


def _lazy_view(base: Path, pfs: PfsService, items: list[BatchItem]) -> tuple[LazyView | None, str]:
    """A view for the batch's lazy inputs, or None (and why, when some were lazy)."""
    if not any(f.get("lazy") and not f.get("empty") for item in items for f in item.files):
        return None, ""
    from tusk.errors import ToolMissing
    from tusk.fuse import load_fuse
    from tusk.pps.lazy import LazyView

    try:
        load_fuse()
    except ToolMissing as exc:
        return None, f"lazy inputs copied instead: {exc.message}"
    return LazyView(pfs, base / ".lazy"), ""


def run_batch(
    pfs: PfsService,
    executor: LocalExecutor,
    base: Path,
    trees: dict[tuple[str, str], bytes],
    items: list[BatchItem],
    cancelled: Callable[[], bool] = lambda: False,
) -> tuple[list[BatchResult], list[IndexEntry]]:
    """Run ``items`` under ``base``; their outputs are stored (durably) but not yet indexed."""
    clear_batch(base)
    work = batch_folders(base, items)
    writer = pfs.chunks.writer()
    lazy, lazy_note = _lazy_view(base, pfs, items)

    def keep(out: Path) -> list[Any]:
        return [(parts, writer.write_file(local)) for parts, local in collect_outputs(out)]

    try:
        materialize(pfs, trees, work, lazy)
        if lazy is not None:
            try:
                lazy.start()
            except TuskError as exc:  # copy them after all: lazy saves, it never fails a datum
                lazy, lazy_note = None, f"lazy inputs copied instead: {exc.message}"
                clear_batch(base)
                materialize(pfs, trees, work)
        results = run_items(executor, base, items, work, keep, cancelled, lazy, lazy_note)
        index = writer.flush_unindexed()
    finally:
        if lazy is not None:
            lazy.stop()
        writer.abort()
        clear_batch(base)
    return results, index


def batch_folders(base: Path, items: list[BatchItem]) -> list[tuple[Path, list[dict]]]:
    """Each datum's folder under ``base`` (its ``/pfs``) and the input files to write there."""
    return [(base / item.task.datum[:16], item.files) for item in items]


def run_items(
    executor: LocalExecutor,
    base: Path,
    items: list[BatchItem],
    work: list[tuple[Path, list[dict]]],
    keep: Callable[[Path], list[Any]],
    cancelled: Callable[[], bool] = lambda: False,
    lazy: LazyView | None = None,
    lazy_note: str = "",
) -> list[BatchResult]:
    """Run the datums of a batch whose inputs are written (``work``: :func:`batch_folders`),
    one process each or one for all (datum batching); ``keep(out)`` takes what a successful
    datum wrote to its ``/pfs/out`` before the folder goes (stored here by :func:`run_batch`,
    sent to the server by a remote worker)."""
    results: list[BatchResult] = []
    pairs = list(zip(items, work, strict=True))
    if items and items[0].task.datum_batching:  # one process for them all
        from tusk.pps.batching import BatchRunner

        runner = BatchRunner(executor, base)
        done = runner.run([(item.task, root) for item, (root, _f) in pairs], cancelled)
        outcomes = iter(done)
        pairs = pairs[: len(done)]
    for item, (root, _files) in pairs:
        if cancelled() and not items[0].task.datum_batching:
            break
        if items[0].task.datum_batching:
            outcome = next(outcomes)
        else:
            outcome = executor.run(item.task, root, cancelled)
        if lazy is not None and any(f.get("lazy") for f in item.files):
            outcome.logs.append((time.time(), "stderr", lazy.stats_line(root.name)))
        elif lazy_note:
            outcome.logs.append((time.time(), "stderr", lazy_note))
        outputs = keep(root / "out") if outcome.ok else []
        results.append(BatchResult(item.task.datum, outcome, outputs))
    return results


def clear_batch(base: Path) -> None:
    """Remove a batch's folder, with any lazy view a killed process left mounted in it."""
    if base.exists():
        clear_mounts(base)
        shutil.rmtree(base, ignore_errors=True)


def clear_mounts(folder: Path) -> None:
    """Unmount what is mounted below ``folder`` (a dead lazy view: tusk.pps.lazy)."""
    from tusk.fuse import detach, mounts_below

    for point in mounts_below(folder):
        detach(point)
