"""Datums on a Dask distributed cluster: ``tusk up --executor dask://scheduler:8786``.

The scheduler still claims datums and records results; each worker thread ships its batch to
the cluster (``tusk.pps.batch.run_batch`` inside a Dask task). The Dask worker opens the same
stores by URL (metadata and objects: PostgreSQL and S3 across machines, or the SQLite home
and its folder on one machine), reads the input chunks straight from the object store,
runs the user code with the local executor, writes the output chunks to new packs, and sends
back only outcomes, chunk lists and pack index rows. Nothing it wrote is visible until the
scheduler records the batch, so a lost Dask worker costs a rerun, never a half-result.

Dask is imported only here, and only when this executor is chosen.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tusk.errors import InvalidArgument, Unavailable
from tusk.pps.batch import BatchItem, BatchResult, run_batch
from tusk.storage.chunks import IndexEntry
from tusk.values import frozen


@frozen
class StoreSpec:
    """How a Dask worker opens the stores: by URL, never by a live object."""

    home: str
    metadata_url: str
    storage_url: str
    sandbox: str | None


_OPEN: dict[StoreSpec, Any] = {}
_EXECUTORS: dict[StoreSpec, Any] = {}
_OPEN_LOCK = threading.Lock()


def _pfs_for(spec: StoreSpec) -> Any:
    from tusk.pfs import PfsService
    from tusk.storage.store import Storage

    with _OPEN_LOCK:
        pfs = _OPEN.get(spec)
        if pfs is None:
            storage = Storage.open(
                Path(spec.home), metadata_url=spec.metadata_url, storage_url=spec.storage_url
            )
            pfs = _OPEN[spec] = PfsService(storage)
        return pfs


def remote_batch(
    spec: StoreSpec, trees: dict[tuple[str, str], bytes], items: list[BatchItem]
) -> tuple[list[BatchResult], list[IndexEntry]]:
    """What a Dask worker runs: one batch, in a scratch folder of its own."""
    from tusk.pps.executor import LocalExecutor
    from tusk.pps.images import cache_for

    base = Path(tempfile.gettempdir()) / f"tusk-dask-{os.getpid()}" / uuid.uuid4().hex
    executor = _EXECUTORS.get(spec)
    if executor is None:  # one per store: it keeps the images it unpacked
        images = cache_for(Path(spec.home))
        executor = _EXECUTORS[spec] = LocalExecutor(spec.sandbox, images=images)
    return run_batch(_pfs_for(spec), executor, base, trees, items)


def dask_address(url: str) -> str:
    """``dask://host:8786`` -> ``tcp://host:8786`` (a ``tcp://`` address passes unchanged)."""
    if url.startswith("dask://"):
        return "tcp://" + url[len("dask://") :]
    if url.startswith("tcp://"):
        return url
    raise InvalidArgument(f"executor {url!r}: use local, host or dask://host:port")


class DaskExecutor:
    def __init__(self, url: str, spec: StoreSpec) -> None:
        from distributed import Client

        self.address = dask_address(url)
        self.spec = spec
        self.pids_dir: Path | None = None  # processes live on the Dask workers
        try:
            self.client = Client(self.address, timeout=10)
        except OSError as exc:
            raise Unavailable(f"Dask scheduler {url} is unreachable ({exc})") from exc
        self.mode = f"dask ({self.address})"
        self.run_images = True  # each worker fetches the pinned image into its own cache

    def run_batch(
        self,
        trees: dict[tuple[str, str], bytes],
        items: list[BatchItem],
        cancelled: Callable[[], bool] = lambda: False,
    ) -> tuple[list[BatchResult], list[IndexEntry]]:
        from distributed import TimeoutError as DaskTimeout
        from distributed import wait

        future = self.client.submit(remote_batch, self.spec, trees, items, pure=False)
        # Wait in slices to notice a cancelled job, then take the result without a timeout:
        # Future.result(timeout=...) can raise UnboundLocalError from inside distributed when
        # the timeout races the result (dask/distributed#8514; seen in bench/bench_dask.py).
        while not future.done():
            with contextlib.suppress(DaskTimeout, TimeoutError):
                wait([future], timeout=0.5, return_when="FIRST_COMPLETED")
            if not future.done() and cancelled():
                future.cancel()
                return [], []
        result: tuple[list[BatchResult], list[IndexEntry]] = future.result()
        return result

    def close(self) -> None:
        self.client.close()
