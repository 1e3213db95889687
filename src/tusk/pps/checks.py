"""Checks: commands that must pass on a commit or a merge result before the branch moves.

Declared in spec files that ``tusk apply`` reads, beside pipelines and repos::

    kind: check
    name: no-empty
    repo: data
    branch: master            # a glob: release-* covers every release branch
    on: [merge]               # commit and/or merge (default both)
    cmd: [sh, -c, 'test -s /pfs/data/rows.csv']
    image: python:3.12-slim   # optional: run in this image (pinned by digest when applied)
    timeout: 10m              # a Go duration or seconds (default 10m)
    env: {MIN_ROWS: "100"}

A check runs like a datum (:class:`tusk.pps.executor.LocalExecutor`: on the host, in the
bubblewrap sandbox where it works, or in its image), reading the candidate commit at
``/pfs/<repo>`` (nothing else of the store) before the branch head moves: when a commit to a
branch it covers finishes (``on: [commit]``), and on a merge result before ``tusk merge`` moves
the target (``on: [merge]``); a protected branch can also require checks on every merge
(``tusk protect branch --require-check``). :mod:`tusk.pfs.gates` decides when; this module
runs them and records each result (state, exit code, duration, log) per commit.

Every check that applies runs, in name order, even after one failed, so a pull request's
author sees every problem at once; then CheckFailed names the ones that did not pass and ends
with the end of the first one's log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tusk.errors import CheckFailed, InvalidSpec, NotFound, TuskError
from tusk.ids import check_repo_name, split_repo
from tusk.pfs.gates import TRIGGERS, CheckRequest
from tusk.pfs.models import CheckRunInfo
from tusk.pps.executor import DatumOutcome, DatumTask, ImageRun, LocalExecutor
from tusk.pps.models import CheckInfo
from tusk.pps.spec import parse_duration
from tusk.storage.meta.store_checks import CheckRecord, CheckRunRecord

if TYPE_CHECKING:
    from tusk.pps.service import PpsService

DEFAULT_TIMEOUT = 600.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_LOG_CHARS = 64 * 1024  # of a check's log kept per run (its end)
_TAIL_LINES = 15  # of the log an error shows
SHM = "/dev/shm"


class CheckSpec(BaseModel):
    """A ``kind: check`` document."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: str = "check"
    name: str
    description: str = ""
    repo: str
    branch: str = "master"
    on: list[str] = Field(default_factory=lambda: list(TRIGGERS))
    cmd: list[str] = Field(default_factory=list)
    stdin: list[str] = Field(default_factory=list)
    pipeline: str | None = None
    image: str | None = None
    image_digest: str | None = None  # pinned when applied (never written by hand)
    timeout: float = DEFAULT_TIMEOUT
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"invalid check name {value[:80]!r}: use 1-63 letters, digits, '_' or '-'"
            )
        return value

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        return check_repo_name(value)

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        if not value or len(value) > 255 or not re.fullmatch(r"[A-Za-z0-9_.*?\[\]!/-]+", value):
            raise ValueError(f"invalid branch glob {value[:80]!r}: a branch name or a glob of one")
        return value

    @field_validator("on", mode="before")
    @classmethod
    def _on(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ValueError("on: give commit and/or merge")
        bad = [v for v in value if v not in TRIGGERS]
        if bad:
            raise ValueError(f"on: {bad[0]!r} is not a trigger; give commit and/or merge")
        return sorted(set(value))

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float:
        return parse_duration(value)

    @model_validator(mode="after")
    def _what(self) -> CheckSpec:
        if self.kind != "check":
            raise ValueError(f"kind is {self.kind!r}, not 'check'")
        if self.pipeline is not None:
            raise ValueError(
                "pipeline: checks that wait for a pipeline's job are not supported yet; "
                "give cmd (tusk merge --run-pipelines gates a merge on its pipelines)"
            )
        if not self.cmd:
            raise ValueError("cmd: a check needs a command to run (cmd: [sh, -c, '...'])")
        return self

    @property
    def input_name(self) -> str:
        """The check's folder under /pfs: its repo's name (without a project)."""
        return split_repo(self.repo)[1]

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"kind"})

    def info(self) -> CheckInfo:
        return CheckInfo(
            self.name, self.repo, self.branch, list(self.on), list(self.cmd), list(self.stdin),
            self.image, self.image_digest, self.timeout, dict(self.env), self.description,
        )  # fmt: skip


def parse_check(doc: dict[str, Any], label: str = "") -> CheckSpec:
    """A ``kind: check`` document, validated: InvalidSpec naming every problem otherwise."""
    if isinstance(doc, dict) and "on" not in doc:  # YAML 1.1 reads a bare `on:` as true
        doc = {("on" if k is True or k == "true" else k): v for k, v in doc.items()}
    try:
        return CheckSpec.model_validate(doc)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'check'}: {_message(e)}" for e in exc.errors()
        )
        name = doc.get("name") if isinstance(doc, dict) else None
        what = f"check {name}" if isinstance(name, str) else "check"
        raise InvalidSpec(f"{label + ': ' if label else ''}invalid {what}: {errors}") from None
    except TuskError as exc:
        raise InvalidSpec(f"{label + ': ' if label else ''}{exc.message}") from None


def _message(error: Any) -> str:
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def record_of(spec: CheckSpec, created_at: float, now: float) -> CheckRecord:
    return CheckRecord(
        spec.name, spec.repo, spec.branch, "commit" in spec.on, "merge" in spec.on,
        json.dumps(spec.canonical(), sort_keys=True), created_at, now,
    )  # fmt: skip


def spec_of(record: CheckRecord) -> CheckSpec:
    return CheckSpec.model_validate(json.loads(record.spec))


def run_info(r: CheckRunRecord) -> CheckRunInfo:
    return CheckRunInfo(
        r.commit_id, r.name, r.repo, r.branch, r.trigger, r.state, r.exit_code, r.started_at,
        r.duration, r.log,
    )  # fmt: skip


class CheckRunner:
    """Runs the checks PFS asks for (installed as ``PfsService.check_runner``)."""

    def __init__(self, pps: PpsService) -> None:
        self.pps = pps
        self._executor: LocalExecutor | None = None

    @property
    def executor(self) -> LocalExecutor:
        if self._executor is None:
            self._executor = LocalExecutor(self.pps.sandbox, images=self.pps.images)
        return self._executor

    def __call__(self, request: CheckRequest) -> list[CheckRunInfo]:
        runs = [self._run(request, name) for name in request.names]
        with self.pps.meta.write() as tx:
            for r in runs:
                tx.put_check_run(r)
        infos = [run_info(r) for r in runs]
        failed = [r for r in infos if not r.passed]
        if failed:
            raise CheckFailed(_failure(request, failed))
        return infos

    def _run(self, request: CheckRequest, name: str) -> CheckRunRecord:
        started = time.time()
        t0 = time.monotonic()
        with self.pps.meta.read() as tx:
            record = tx.get_check(name)
        if record is None:
            outcome = DatumOutcome(
                False, error=f"check {name} is not defined (the protected branch requires it)"
            )
        else:
            outcome = self._execute(request, spec_of(record))
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

    def _execute(self, request: CheckRequest, spec: CheckSpec) -> DatumOutcome:
        scratch = _scratch(self.pps.home, request.size)
        work = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=scratch))
        try:
            pfs_root = work / "pfs"
            try:
                self._materialize(request, pfs_root / spec.input_name)
            except TuskError as exc:
                return DatumOutcome(False, error=f"cannot read {request.commit}: {exc.message}")
            image = None
            if spec.image:
                image = ImageRun(spec.image, spec.image_digest or "")
            task = DatumTask(
                pipeline=f"check-{spec.name}", job=request.commit, datum=spec.name,
                output_commit="", cmd=list(spec.cmd), stdin=list(spec.stdin),
                env={"TUSK_CHECK": spec.name, "TUSK_CHECK_TRIGGER": request.trigger,
                     "TUSK_CHECK_REPO": spec.input_name,
                     "TUSK_CHECK_BRANCH": request.branch, **spec.env},
                working_dir=None, err_cmd=[], err_stdin=[], accept_return_code=[],
                timeout=spec.timeout, inputs=[(spec.input_name, "/", request.commit)],
                image=image,
            )  # fmt: skip
            outcome = self.executor.run(task, pfs_root)
            if outcome.error.startswith("timed out"):
                outcome.error = f"timed out after {spec.timeout:g}s (the check's timeout)"
            return outcome
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _materialize(self, request: CheckRequest, folder: Path) -> None:
        """The candidate's files under ``folder``, all chunks read in one pass (neighbours in
        a pack with one ranged read), written with plain ``os`` calls: a candidate of
        thousands of small files costs mostly their creation."""
        pfs = self.pps.pfs
        reader = pfs.reader()
        files = [(path, list(reader.chunks(e))) for path, e in pfs.tree_files(request.tree)]
        base = os.fspath(folder)
        os.makedirs(base, exist_ok=True)
        for parent in sorted({os.path.dirname(path) for path, _ in files}):
            os.makedirs(base + parent, exist_ok=True)
        chunks = pfs.chunks.read_chunks([c for _, refs in files for c in refs])
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        for path, refs in files:
            fd = os.open(base + path, flags, 0o444)
            try:
                for _ in refs:
                    os.write(fd, next(chunks))
            finally:
                os.close(fd)


def _scratch(home: Path, size: int) -> Path:
    """Where a check's copy of its candidate goes: a RAM-backed tmpfs (``/dev/shm``) when
    the candidate takes at most a quarter of its free space (creating thousands of small
    files there costs a fraction of what it costs on disk), else ``<home>/checks``."""
    shm = Path(SHM)
    try:
        st = os.statvfs(shm)
        if size <= st.f_bavail * st.f_frsize // 4 and os.access(shm, os.W_OK):
            folder = shm / f"tusk-checks-{os.getuid()}"
            folder.mkdir(mode=0o700, exist_ok=True)
            return folder
    except OSError:
        pass
    folder = home / "checks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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


def need_check(pps: PpsService, name: str) -> CheckRecord:
    with pps.meta.read() as tx:
        record = tx.get_check(name)
    if record is None:
        raise NotFound(f"check {name} is not defined (tusk list check lists them)")
    return record
