"""Datums for remote workers: ``tusk worker --address URL`` runs them through the REST API.

A worker that reaches Tusk only over HTTP (a Kubernetes pod with no database or bucket
credentials) asks the server for work instead of claiming it in the metadata store itself. The
server keeps every datum semantic; the worker only moves bytes and runs the command:

* **claim** (``POST /pipelines/{name}/datums/claim``): the server claims up to ``limit``
  pending datums of the pipeline's oldest running job (or datums whose lease ran out: a dead
  worker's) exactly as its own workers claim them (``claim_datums``: the attempt counts), under
  a lease ``remote:<worker>:<random>`` that lasts ``LEASE_SECONDS``. Each datum comes with its
  input files (repo, commit, path: the worker downloads them through the file API) and its
  :class:`~tusk.pps.executor.DatumTask` built by :func:`tusk.pps.tasks.datum_task` as for a
  local run (command, stdin, env with the values of the spec's secrets, working directory,
  err_cmd, accepted codes, ``datum_timeout``, limits). With auth on it also carries a token
  of the pipeline's identity (``pipeline:<name>``: read on its inputs, write on its output
  repo), revoked when the lease's datums are finished: the worker downloads the inputs with
  it and gives it to the datum as ``TUSK_TOKEN`` (with ``TUSK_ADDRESS``), as a local run does.
* **renew** (``POST /pipelines/{name}/jobs/{job}/renew``): the worker's heartbeat. 409 when the
  job is no longer running or the lease is lost (it expired, the datum was restarted or is
  another worker's now): the worker stops the datum.
* **finish** (``POST /pipelines/{name}/jobs/{job}/datums/{datum}/finish?lease=``): one tar
  stream, ``outcome.json`` first (ok, exit code, error, stderr tail, log lines), then what the
  datum wrote to ``/pfs/out`` as ``out/<path>``. The server stores the files and records the
  datum with :func:`tusk.pps.scheduler.record_results`, as its own workers do (retries up to
  ``datum_tries``, logs, the output tree its job merges, lineage). 409 when the lease is not
  the datum's holder or has expired; nothing is recorded then.

The jobs themselves are started, merged and failed by the server's scheduler (``tusk up
--executor workers`` runs no datum itself; plain ``tusk up`` shares the queue with its own
workers). Pipelines that read or write through the S3 gateway are not served to remote
workers (400).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tusk.errors import (
    Conflict,
    DatumNotFound,
    InvalidArgument,
    JobNotFound,
    PipelineNotFound,
)
from tusk.pfs.paths import split_path
from tusk.pps.executor import DatumOutcome
from tusk.pps.scheduler import LEASE_SECONDS, record_results
from tusk.pps.tasks import datum_task, task_to_json

if TYPE_CHECKING:
    from tusk.auth.service import AuthService
    from tusk.pps.service import PpsService
    from tusk.storage.meta.records import DatumRecord

MAX_CLAIM = 32
OUTCOME = "outcome.json"  # the first member of a finish's tar stream
_WORKER = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class WorkQueue:
    """The server's side of remote workers (see the module docstring)."""

    def __init__(self, pps: PpsService, auth: AuthService) -> None:
        self.pps = pps
        self.pfs = pps.pfs
        self.meta = pps.meta
        self.auth = auth
        self._tokens: dict[str, tuple[str, int]] = {}  # lease -> (token id, datums unfinished)
        self._lock = threading.Lock()

    def claim(self, pipeline: str, worker: str, limit: int) -> dict[str, Any]:
        """Up to ``limit`` datums of the pipeline's oldest running job with work, under one
        lease; ``busy`` says whether the pipeline has jobs not done (a worker run with
        ``--once`` stops when it has none)."""
        if not _WORKER.match(worker):
            raise InvalidArgument(
                f"invalid worker name {worker!r}: 1-100 letters, digits, '.', '_' or '-'"
            )
        if not 1 <= limit <= MAX_CLAIM:
            raise InvalidArgument(f"limit must be 1 to {MAX_CLAIM}, not {limit}")
        with self.meta.read() as tx:
            record = tx.get_pipeline(pipeline)
            if record is None:
                raise PipelineNotFound(f"pipeline {pipeline} not found")
            jobs = []
            if record.state == "running":  # a paused pipeline's jobs wait
                jobs = tx.list_jobs(pipeline, states=["created", "running", "egressing"])
        answer: dict[str, Any] = {
            "lease": "", "lease_seconds": LEASE_SECONDS, "busy": bool(jobs), "datums": [],
            "token": "",
        }  # fmt: skip
        for job in sorted(jobs, key=lambda j: j.created_at):
            if job.state != "running":
                continue
            spec, _salt, origin = self.pps.spec_of(pipeline, job.version)
            if spec.uses_s3():
                raise InvalidArgument(
                    f"pipeline {pipeline} reads or writes through the S3 gateway (input.pfs.s3, "
                    "s3_out): remote workers do not run it; run tusk worker on the stores"
                )
            lease = f"remote:{worker}:{secrets.token_hex(8)}"
            now = time.time()
            with self.meta.write() as tx:
                batch = tx.claim_datums(pipeline, job.id, lease, now + LEASE_SECONDS, now, limit)
            if not batch:
                continue
            material = self.pps.secrets.material(spec.transform.secrets)
            ttl = max(3600.0, 2 * (spec.datum_timeout or 0))
            minted = self.auth.mint_for_pipeline(pipeline, ttl, description="remote datum token")
            if minted is not None:
                answer["token"] = minted[1]
                with self._lock:
                    self._tokens[lease] = (minted[0], len(batch))
            datums = []
            for d in batch:
                files = json.loads(d.files)
                commits = {(f["repo"], f["branch"]): f.get("commit", "") for f in files}
                task = datum_task(
                    spec, origin, pipeline=pipeline, job=job.id, datum=d.id,
                    output_commit=job.output_commit, files=files, commits=commits, env=material.env,
                    secret_files=material.files, secret_values=material.values, on_host=False,
                )  # fmt: skip
                datums.append({"job": job.id, "datum": d.id, "files": files,
                               "task": task_to_json(task)})  # fmt: skip
            answer.update(lease=lease, datums=datums)
            return answer
        return answer

    def renew(self, pipeline: str, job: str, lease: str, datums: list[str]) -> dict[str, Any]:
        """Extend the lease of ``datums`` (all held by ``lease``) by ``LEASE_SECONDS``."""
        if not datums:
            raise InvalidArgument("name the datums the lease holds")
        until = time.time() + LEASE_SECONDS
        with self.meta.write() as tx:
            for datum in datums:
                self._held(tx, pipeline, job, datum, lease)
            tx.renew_datum_leases(lease, until)
        return {"lease": lease, "lease_until": until}

    def finish(
        self, pipeline: str, job: str, datum: str, lease: str, members: Iterator[tuple[Any, Any]]
    ) -> dict[str, Any]:
        """Record a datum's end from the tar stream's ``members`` ((path segments, source)
        pairs: ``outcome.json``, then ``out/...``); its output is stored as a local run's."""
        with self.meta.read() as tx:
            record = self._held(tx, pipeline, job, datum, lease)
            job_record = tx.get_job(pipeline, job)
        assert job_record is not None  # _held found its datum
        outcome = _outcome(next(members, None))
        writer = self.pfs.chunks.writer()
        try:
            outputs = []
            for parts, source in members:
                if len(parts) < 2 or parts[0] != "out":
                    raise InvalidArgument(
                        f"tar member {'/'.join(parts)!r} is not under out/ (after {OUTCOME})"
                    )
                path = split_path("/" + "/".join(parts[1:]))
                refs = source.write_to(writer, None)
                if outcome.ok:
                    outputs.append((path, refs))
            index = writer.flush_unindexed()
        finally:
            writer.abort()
        spec = self.pps.spec_of(pipeline, job_record.version)[0]
        with self.meta.read() as tx:
            record = self._held(tx, pipeline, job, datum, lease)  # the upload took its time
        record_results(
            self.pfs, pipeline, job, lease, spec.datum_tries,
            [(record, outcome, sorted(outputs))], index, release=False,
        )  # fmt: skip
        self._done(lease)
        with self.meta.read() as tx:
            after = tx.get_datum(pipeline, job, datum)
        return {"datum": datum, "state": after.state if after is not None else ""}

    def _held(self, tx: Any, pipeline: str, job: str, datum: str, lease: str) -> DatumRecord:
        """The datum, if ``lease`` holds it and has not expired; else NotFound or Conflict."""
        job_record = tx.get_job(pipeline, job)
        if job_record is None:
            if tx.get_pipeline(pipeline) is None:
                raise PipelineNotFound(f"pipeline {pipeline} not found")
            raise JobNotFound(f"job {pipeline}@{job} not found")
        record = tx.get_datum(pipeline, job, datum)
        if record is None:
            raise DatumNotFound(f"datum {datum} of job {pipeline}@{job} not found")
        if job_record.state != "running":
            raise Conflict(
                f"job {pipeline}@{job} is {job_record.state}: its datums are no longer run"
            )
        if record.state != "running" or record.owner != lease:
            taken = " by another worker" if record.state == "running" else ""
            raise Conflict(
                f"datum {datum[:12]} is not held by lease {lease}: it is {record.state}{taken} "
                "(the lease expired, or the datum was restarted)"
            )
        if record.lease_until is not None and record.lease_until < time.time():
            raise Conflict(f"the lease {lease} on datum {datum[:12]} expired")
        return record

    def _done(self, lease: str) -> None:
        """One datum of ``lease`` recorded: its token goes with its last datum."""
        with self._lock:
            held = self._tokens.get(lease)
            if held is None:
                return
            token_id, left = held
            if left > 1:
                self._tokens[lease] = (token_id, left - 1)
                return
            del self._tokens[lease]
        self.auth.revoke_quietly(token_id)


def _outcome(first: tuple[Any, Any] | None) -> DatumOutcome:
    """The datum's outcome from the first tar member, checked field by field."""
    if first is None or tuple(first[0]) != (OUTCOME,):
        raise InvalidArgument(f"the tar stream must begin with {OUTCOME}")
    source = first[1]
    raw = source.data if hasattr(source, "data") else source.stream.read()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"{OUTCOME} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        raise InvalidArgument(f'{OUTCOME} must be an object with "ok": true or false')
    code = data.get("exit_code")
    logs = data.get("logs", [])
    good = (
        (code is None or (isinstance(code, int) and not isinstance(code, bool)))
        and isinstance(data.get("recovered", False), bool)
        and all(isinstance(data.get(k, ""), str) for k in ("error", "stderr_tail"))
        and isinstance(logs, list)
        and all(
            isinstance(x, list) and len(x) == 3 and isinstance(x[0], int | float)
            and isinstance(x[1], str) and isinstance(x[2], str)
            for x in logs
        )
    )  # fmt: skip
    if not good or set(data) - {"ok", "recovered", "exit_code", "error", "stderr_tail", "logs"}:
        raise InvalidArgument(
            f"{OUTCOME}: ok (bool), recovered (bool), exit_code (int or null), error and "
            "stderr_tail (strings), logs ([time, stream, line] lists); nothing else"
        )
    return DatumOutcome(
        data["ok"], data.get("recovered", False), code, data.get("error", ""),
        data.get("stderr_tail", ""), [(float(t), s, line) for t, s, line in logs],
    )  # fmt: skip
