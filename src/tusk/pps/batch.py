"""One batch of datums, start to finish except recording: inputs out of the store, user code,
outputs into the store. The scheduler runs it in a worker thread (local executor) or ships it
to a Dask worker (``tusk.pps.dask_executor``), which opens the same stores by URL; either way
the result comes back as data (outcomes, chunk lists, pack index rows) for the scheduler to
record in one transaction, so what a batch wrote becomes visible only with that record.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tusk.pfs import PfsService
from tusk.pps.executor import DatumOutcome, DatumTask, LocalExecutor, collect_outputs
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
    outputs: list[tuple[tuple[str, ...], list[ChunkRef]]]


def materialize(
    pfs: PfsService,
    trees: dict[tuple[str, str], bytes],
    work: list[tuple[Path, list[dict]]],
) -> None:
    """Write every input file of a batch, reading all their chunks in one pass."""
    targets: list[tuple[Path, list[ChunkRef]]] = []
    for root, files in work:
        for name in {f["input_name"] for f in files}:
            (root / name).mkdir(parents=True, exist_ok=True)
        for f in files:
            dest = root / f["input_name"] / f["path"].lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if f.get("empty"):
                dest.touch()
                continue
            tree = trees[(f["repo"], f["branch"])]
            targets.append((dest, pfs.file_chunks(tree, f["path"])))
    chunks = pfs.chunks.read_chunks([c for _, refs in targets for c in refs])
    for dest, refs in targets:
        with open(dest, "wb") as out:
            for _ in refs:
                out.write(next(chunks))


def run_batch(
    pfs: PfsService,
    executor: LocalExecutor,
    base: Path,
    trees: dict[tuple[str, str], bytes],
    items: list[BatchItem],
    cancelled: Callable[[], bool] = lambda: False,
) -> tuple[list[BatchResult], list[IndexEntry]]:
    """Run ``items`` under ``base``; their outputs are stored (durably) but not yet indexed."""
    shutil.rmtree(base, ignore_errors=True)
    work = [(base / item.task.datum[:16], item.files) for item in items]
    writer = pfs.chunks.writer()
    results: list[BatchResult] = []
    try:
        materialize(pfs, trees, work)
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
            outputs = []
            if outcome.ok:
                for parts, local in collect_outputs(root / "out"):
                    outputs.append((parts, writer.write_file(local)))
            results.append(BatchResult(item.task.datum, outcome, outputs))
        index = writer.flush_unindexed()
    finally:
        writer.abort()
        shutil.rmtree(base, ignore_errors=True)
    return results, index
