"""A worker that reaches Tusk through its REST API only: ``tusk worker --address URL``.

It opens no store (no database, no bucket: a Kubernetes worker pod needs the server's address
and a token, nothing else). In a loop, for each of its pipelines, it claims datums from the
server (``tusk.pps.workqueue`` is the server's side), downloads each datum's input files into
``<datum>/<input>/...``, runs the datum with the executor it was given (this machine's
sandbox, or the user container through ``tusk.pps.handoff``) exactly as the scheduler's own
workers run a batch (:func:`tusk.pps.batch.run_items`), and sends the outcome and ``/pfs/out``
back in one tar stream; the server stores and records it. A heartbeat renews the lease every
third of its length; when the server says the lease is lost (the job ended, the datum was
restarted, or the lease ran out and another worker took it) the datum is stopped and its end
is not sent. A worker that dies holds its datums until the lease runs out; then another
worker claims them (the attempt counts, as for a dead local worker on another host).

This module loads no storage layer: it runs in the remote CLI's import graph.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from tusk.errors import Conflict, InvalidArgument, NotFound, TuskError
from tusk.pps.batch import BatchItem, BatchResult, batch_folders, clear_batch, run_items
from tusk.pps.executor import DatumOutcome, LocalExecutor, collect_outputs
from tusk.pps.tasks import task_from_json

POLL = 0.5  # seconds between two claims while there is nothing to run


class WorkerApi(Protocol):
    """The REST calls a remote worker makes (``tusk.sdk.remote.HttpTransport``)."""

    address: str

    def claim_datums(self, pipeline: str, worker: str, limit: int) -> dict[str, Any]: ...

    def renew_lease(self, pipeline: str, job: str, lease: str, datums: list[str]) -> None: ...

    def finish_datum(
        self,
        pipeline: str,
        job: str,
        datum: str,
        lease: str,
        outcome: dict[str, Any],
        outputs: Sequence[tuple[tuple[str, ...], Path]],
    ) -> dict[str, Any]: ...

    def download_file(
        self, repo: str, commit: str, path: str, dest: Path, token: str | None
    ) -> None: ...


class RemoteWorker:
    """Runs the datums of ``pipelines`` that the server at ``api`` hands out (see the module
    docstring); ``executor`` runs each one (closed when :meth:`run` returns)."""

    def __init__(
        self,
        api: WorkerApi,
        executor: LocalExecutor,
        pipelines: Sequence[str],
        log: Callable[[str], None] | None = None,
        poll: float = POLL,
    ) -> None:
        self.api = api
        self.executor = executor
        self.pipelines = list(pipelines)
        self.log = log or (lambda message: None)
        self.poll = poll
        self.name = f"{socket.gethostname()}-{os.getpid()}"[:100]
        root = Path(os.environ.get("TUSK_SCRATCH") or tempfile.gettempdir())
        self.scratch = root / f"tusk-worker-{self.name}"

    def run(self, stop: threading.Event | None = None, once: bool = False) -> None:
        """Claim and run datums until ``stop`` is set; with ``once``, until none of the
        pipelines has a job left."""
        stop = stop or threading.Event()
        self.log(f"worker {self.name} of {self.api.address}; sandbox: {self.executor.mode}")
        try:
            while not stop.is_set():
                busy = ran = False
                for pipeline in self.pipelines:
                    claim = self.api.claim_datums(pipeline, self.name, 1)
                    busy = busy or bool(claim["busy"])
                    if claim["datums"]:
                        ran = True
                        self.run_claim(pipeline, claim, stop)
                if once and not busy and not ran:
                    return
                if not ran:
                    stop.wait(self.poll)
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.executor.close()

    def run_claim(self, pipeline: str, claim: dict[str, Any], stop: threading.Event) -> None:
        """Run the datums of one claim and send each one's end (unless the lease was lost)."""
        lease, token = claim["lease"], claim.get("token") or None
        job = claim["datums"][0]["job"]
        items = []
        for d in claim["datums"]:
            task = task_from_json(d["task"])
            if token:  # the pipeline's identity, as a local run gives it (tusk.pps.scheduler)
                task.env.update(TUSK_ADDRESS=self.api.address, TUSK_TOKEN=token)
            items.append(BatchItem(task, d["files"]))
        ids = [item.task.datum for item in items]
        root = getattr(self.executor, "scratch_root", None) or self.scratch
        base = Path(root) / pipeline.replace("/", "__") / job / lease.rsplit(":", 1)[-1]
        kept = base.with_name(base.name + ".out")  # each datum's /pfs/out, kept until sent
        lost = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(pipeline, job, lease, ids, claim, lost),
            name=f"lease-{lease}", daemon=True,
        )  # fmt: skip
        beat.start()

        def keep(out: Path) -> list[Any]:
            kept.mkdir(parents=True, exist_ok=True)
            dest = kept / out.parent.name
            shutil.move(out, dest)
            return [dest]

        def cancelled() -> bool:
            return stop.is_set() or lost.is_set()

        clear_batch(base)
        work = batch_folders(base, items)
        try:
            try:
                self._download(work, token)
            except TuskError as exc:
                results = [
                    BatchResult(
                        i.task.datum,
                        DatumOutcome(False, error=f"fetching its inputs failed: {exc.message}"),
                        [],
                    )
                    for i in items
                ]
            else:
                results = run_items(self.executor, base, items, work, keep, cancelled)
            for r in results:
                if lost.is_set():
                    self.log(f"datum {r.datum[:12]}: lease lost; its end is not sent")
                    break
                out = r.outputs[0] if r.outputs else None
                files = [(parts, path) for parts, path in collect_outputs(out)] if out else []
                try:
                    state = self.api.finish_datum(
                        pipeline, job, r.datum, lease, asdict(r.outcome), files
                    )["state"]
                except (Conflict, NotFound) as exc:
                    self.log(f"datum {r.datum[:12]}: not recorded: {exc.message}")
                    continue
                what = "succeeded" if r.outcome.ok else f"failed: {r.outcome.error}"
                self.log(f"datum {r.datum[:12]} of job {pipeline}@{job} {what} ({state})")
        finally:
            lost.set()  # ends the heartbeat
            beat.join()
            clear_batch(base)
            shutil.rmtree(kept, ignore_errors=True)

    def _download(self, work: list[tuple[Path, list[dict]]], token: str | None) -> None:
        """Each datum's input files under its folder, through the file API."""
        for root, files in work:
            for name in {f["input_name"] for f in files}:
                (root / name).mkdir(parents=True, exist_ok=True)
            for f in files:
                parts = [p for p in f["path"].split("/") if p]
                if {f["input_name"], *parts} & {"", ".", ".."} or "/" in f["input_name"]:
                    raise InvalidArgument(f"refusing input file {f['input_name']}:{f['path']}")
                dest = root / f["input_name"] / "/".join(parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if f.get("empty"):
                    dest.touch()
                    continue
                self.api.download_file(f["repo"], f["commit"], f["path"], dest, token)

    def _heartbeat(
        self,
        pipeline: str,
        job: str,
        lease: str,
        ids: list[str],
        claim: dict[str, Any],
        lost: threading.Event,
    ) -> None:
        every = max(0.2, float(claim["lease_seconds"]) / 3)
        while not lost.wait(every):
            try:
                self.api.renew_lease(pipeline, job, lease, ids)
            except (Conflict, NotFound) as exc:
                self.log(f"lease {lease} lost: {exc.message}")
                lost.set()
            except TuskError as exc:  # the server is away for a moment: try again
                self.log(f"lease {lease} not renewed: {exc.message}")
