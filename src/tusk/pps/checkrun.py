"""Running checks (:mod:`tusk.pps.checks` declares them): each check PFS asks for runs as a
datum does, on the candidate commit copied out to ``/pfs/<repo>``, and its result (state, exit
code, duration, the end of its log) is recorded per commit.

Every check that applies runs, in name order, even after one failed, so a pull request's
author sees every problem at once; then CheckFailed names the ones that did not pass and ends
with the end of the first one's log.

Light on purpose: a ``tusk merge`` or ``tusk put file`` process into a gated branch loads this,
the executor and nothing of the pipeline layer's specs (the stored document is read as the
JSON ``CheckSpec.canonical`` wrote), so a check costs the merge its run, not imports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tusk.errors import CheckFailed, TuskError
from tusk.ids import split_repo
from tusk.pfs import holds
from tusk.pfs.gates import CheckRequest
from tusk.pfs.models import CheckRunInfo
from tusk.pps.executor import DatumOutcome, DatumTask, ImageRun, LocalExecutor
from tusk.storage.meta.store_checks import CheckRunRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from tusk.pfs import PfsService

    # (the request, the check's document) -> how its pipeline's job on the candidate went
    PipelineCheck = Callable[[CheckRequest, dict[str, Any]], DatumOutcome]

_LOG_CHARS = 64 * 1024  # of a check's log kept per run (its end)
_TAIL_LINES = 15  # of the log an error shows
SHM = "/dev/shm"


def run_info(r: CheckRunRecord) -> CheckRunInfo:
    return CheckRunInfo(
        r.commit_id, r.name, r.repo, r.branch, r.trigger, r.state, r.exit_code, r.started_at,
        r.duration, r.log,
    )  # fmt: skip


class CheckRunner:
    """Runs the checks PFS asks for (installed as ``PfsService.check_runner``), on the host
    (in ``sandbox``, default ``$TUSK_SANDBOX``) or in a check's image from ``home``'s cache."""

    def __init__(
        self,
        pfs: PfsService,
        home: Path,
        sandbox: str | None = None,
        pipelines: PipelineCheck | None = None,
    ) -> None:
        self.pfs = pfs
        self.home = Path(home)
        self.sandbox = sandbox
        # Runs a check that names a pipeline (the pipeline layer: PpsService.pipeline_check).
        self.pipelines = pipelines
        self._executor: LocalExecutor | None = None

    def executor(self, image: bool) -> LocalExecutor:
        """The executor; with the home's image cache once a check runs in an image."""
        if self._executor is None or (image and self._executor.images is None):
            images = None
            if image:
                from tusk.pps.images import cache_for

                images = cache_for(self.home)
            self._executor = LocalExecutor(self.sandbox, images=images)
        return self._executor

    def __call__(self, request: CheckRequest) -> list[CheckRunInfo]:
        """Run the checks; record them and raise CheckFailed if one did not pass. Passed runs
        are returned for PFS to record with the move they allowed (one transaction)."""
        runs = [self._run(request, name) for name in request.names]
        infos = [run_info(r) for r in runs]
        failed = [r for r in infos if not r.passed]
        if failed:
            with self.pfs.meta.write() as tx:
                for r in runs:
                    tx.put_check_run(r)
            raise CheckFailed(_failure(request, failed))
        return infos

    def _run(self, request: CheckRequest, name: str) -> CheckRunRecord:
        started = time.time()
        t0 = time.monotonic()
        with self.pfs.meta.read() as tx:
            record = tx.get_check(name)
        if record is None:
            outcome = DatumOutcome(
                False, error=f"check {name} is not defined (the protected branch requires it)"
            )
        else:
            spec = json.loads(record.spec)
            if spec.get("pipeline") and self.pipelines is None:
                outcome = DatumOutcome(
                    False, error=f"check {name} runs a pipeline, which needs the pipeline layer"
                )
            elif spec.get("pipeline"):
                assert self.pipelines is not None
                outcome = self.pipelines(request, spec)
            else:
                outcome = self._execute(request, spec)
        if outcome.ok:
            state = "passed"
        elif outcome.error.startswith("timed out"):
            state = "timed out"
        elif outcome.exit_code is None:
            state = "error"
        else:
            state = "failed"
        return CheckRunRecord(
            request.commit, name, request.repo, request.branch, request.trigger, state,
            outcome.exit_code, started, time.monotonic() - t0, _log_text(outcome),
        )  # fmt: skip

    def _execute(self, request: CheckRequest, spec: dict[str, Any]) -> DatumOutcome:
        """Run one check (its stored document, as ``CheckSpec.canonical`` wrote it)."""
        name, timeout = spec["name"], float(spec["timeout"])
        folder = split_repo(spec["repo"])[1]  # /pfs/<repo>, without a project
        work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_scratch(self.home, request.size)))
        try:
            pfs_root = work / "pfs"
            try:
                self._materialize(request, pfs_root / folder)
            except TuskError as exc:
                return DatumOutcome(False, error=f"cannot read {request.commit}: {exc.message}")
            image = None
            if spec.get("image"):
                image = ImageRun(spec["image"], spec.get("image_digest") or "")
            env = {"TUSK_CHECK": name, "TUSK_CHECK_TRIGGER": request.trigger,
                   "TUSK_CHECK_REPO": folder, "TUSK_CHECK_BRANCH": request.branch,
                   **spec.get("env", {})}  # fmt: skip
            task = DatumTask(
                pipeline=f"check-{name}", job=request.commit, datum=name, output_commit="",
                cmd=list(spec["cmd"]), stdin=list(spec.get("stdin", [])), env=env,
                working_dir=None, err_cmd=[], err_stdin=[], accept_return_code=[],
                timeout=timeout, inputs=[(folder, "/", request.commit)], image=image,
            )  # fmt: skip
            outcome = self.executor(image is not None).run(task, pfs_root)
            if outcome.error.startswith("timed out"):
                outcome.error = f"timed out after {timeout:g}s (the check's timeout)"
            return outcome
        finally:
            _remove(work)

    def _materialize(self, request: CheckRequest, folder: Path) -> None:
        """The candidate's files under ``folder`` (:func:`tusk.pfs.copyout.write_files`)."""
        from tusk.pfs.copyout import tree_files_with_chunks, write_files

        count = self.pfs.reader().summary(request.tree)[1]
        write_files(self.pfs, folder, tree_files_with_chunks(self.pfs, request.tree), count=count)


def _remove(folder: Path) -> None:
    """Remove a check's copy of its candidate without waiting: removing thousands of files
    takes longer than copying them, and the branch need not wait for it. ``rm -rf`` runs in
    its own session, so it finishes when this process exits first; a thread waits for it, so
    a long-running server collects no zombies. Where it cannot start, the folder is removed
    here."""
    try:
        proc = subprocess.Popen(
            ["rm", "-rf", "--", os.fspath(folder)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return
    threading.Thread(target=proc.wait, name="tusk-check-cleanup", daemon=True).start()


def _scratch(home: Path, size: int) -> Path:
    """Where a check's copy of its candidate goes: this process's folder (``<host>-<pid>``,
    which ``tusk gc`` removes once the process is gone) on a RAM-backed tmpfs
    (``/dev/shm``) when the candidate takes at most a quarter of its free space (creating
    thousands of small files there costs a fraction of what it costs on disk), else under
    ``<home>/checks``."""
    fast, slow = scratch_roots(home)
    root = slow
    try:
        st = os.statvfs(SHM)
        if size <= st.f_bavail * st.f_frsize // 4 and os.access(SHM, os.W_OK):
            root = fast
    except OSError:
        pass
    folder = root / f"{holds.HOST}-{os.getpid()}"
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.mkdir(exist_ok=True)
    except OSError:
        if root == slow:
            raise
        folder = slow / folder.name
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def scratch_roots(home: Path) -> list[Path]:
    """Where checks copy their candidates, each process in a ``<host>-<pid>`` folder: the
    tmpfs one first."""
    return [Path(SHM) / f"tusk-checks-{os.getuid()}", Path(home) / "checks"]


def _log_text(outcome: DatumOutcome) -> str:
    lines = [text for _t, _stream, text in outcome.logs]
    if outcome.error:
        lines.append(f"({outcome.error})")
    text = "\n".join(lines)
    return text[-_LOG_CHARS:]


def _failure(request: CheckRequest, failed: list[CheckRunInfo]) -> str:
    what = (
        f"the merge into {request.repo}@{request.branch}"
        if request.trigger == "merge"
        else f"a commit to {request.repo}@{request.branch}"
    )
    names = ", ".join(
        f"{r.name} ({r.state}" + (f", exit code {r.exit_code})" if r.exit_code else ")")
        for r in failed
    )
    first = failed[0]
    moved = (
        f"{request.repo}@{request.branch} did not move"
        if request.candidate
        else "the commit stays open: fix it and finish it again"
    )
    tail = first.log.splitlines()[-_TAIL_LINES:] or ["(no output)"]
    shown = "\n".join(f"    {line}" for line in tail)
    return (
        f"check {names} failed on {what} ({request.commit}): {moved}; "
        f"tusk inspect check {request.repo}@{request.commit} {first.name} shows its log, "
        f"which ends:\n{shown}"
    )
