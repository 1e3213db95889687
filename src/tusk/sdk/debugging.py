"""One datum, away from the scheduler (``tusk debug datum``): its exact inputs in a folder,
then a shell there or a rerun of its command, so a failed datum is fixed on a laptop.

:meth:`BaseClient.debug_datum` asks for the datum's :class:`DatumRun` (its files, each with
the commit its job read it from, the pipeline version, code and image) and writes a folder::

    FOLDER/pfs/<input>/<path>   the datum's files, read with the client's file reads at the
                                job's commits (never the branch heads)
    FOLDER/pfs/out/             what a rerun writes (emptied before each rerun)
    FOLDER/datum.json           the DatumRun, the executor, the environment the datum got
                                (with /pfs as in the sandbox) and its secrets, by name
    FOLDER/env.sh               that environment for a shell here (/pfs is FOLDER/pfs)
    FOLDER/run.sh               the one command that reruns it (tusk debug datum ... --run)
    FOLDER/logs/                original.txt and rerun.txt after a rerun

``datum.json`` is written last: a folder that holds it is complete, and is used again (its
inputs as they are, edits included) by a later call for the same datum.

A rerun goes through the scheduler's own path: :func:`tusk.pps.tasks.datum_task` builds the
task and :class:`tusk.pps.executor.LocalExecutor` runs it on the host (in the bubblewrap
sandbox where it works, ``$TUSK_SANDBOX``) or, when the job ran in an image, in that image by
digest (from the local image cache: the home's, or ``$TUSK_HOME``'s for a client of a
server; fetched there if missing).

Secrets: values never leave a server, and none is written here. A secret the spec gives as
an env var takes its value from the caller's environment (export it first; it is scrubbed
from the output as the scheduler scrubs it); secrets mounted as files are not given, and the
rerun says so. The job's own identity (``TUSK_TOKEN`` with auth on) is not given either.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tusk.errors import AlreadyExists, InvalidArgument
from tusk.ids import DEFAULT_PROJECT
from tusk.pfs.models import _Dict
from tusk.pps.models import DatumRun
from tusk.values import frozen

if TYPE_CHECKING:
    from tusk.pps.executor import DatumOutcome, DatumTask, LocalExecutor
    from tusk.pps.spec import PipelineSpec
    from tusk.sdk.base import BaseClient

DATUM_FILE = "datum.json"


@frozen
class DatumRerun(_Dict):
    """A rerun of a datum next to its original run: how it ran (``executor``), its exit
    code or error, both runs' lines as {"stream", "line"}, the files it wrote under
    ``pfs/out`` and what of the original environment it could not give (``notes``)."""

    ok: bool
    exit_code: int | None
    error: str
    executor: str
    logs: list[dict[str, str]] = field(default_factory=list)
    original: list[dict[str, str]] = field(default_factory=list)
    original_exit_code: int | None = None
    original_error: str = ""
    outputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class DebugFolder:
    """A datum materialised in ``path`` (see the module doc); ``written`` lists what this
    call wrote (relative paths; empty when an earlier call's folder was used again)."""

    def __init__(
        self, client: BaseClient, run: DatumRun, path: Path, written: list[str], reused: bool
    ) -> None:
        self.client = client
        self.run = run
        self.path = path
        self.written = written
        self.reused = reused
        self._spec: PipelineSpec | None = None

    @property
    def pfs(self) -> Path:
        return self.path / "pfs"

    @property
    def spec(self) -> PipelineSpec:
        """The pipeline version the job ran."""
        if self._spec is None:
            from tusk.pps.spec import load_spec

            self._spec = load_spec(self.run.spec)
        return self._spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.path),
            "reused": self.reused,
            "written": self.written,
            "executor": self.executor(),
            "datum": self.run.to_dict(),
        }

    def executor(self) -> str:
        """How a rerun runs here: in the job's image, or on the host (sandboxed or not)."""
        if self.run.image_digest:
            return f"image {self.run.image} ({self.run.image_digest})"
        from tusk.pps.executor import sandbox_mode

        mode = sandbox_mode()
        return "host, bubblewrap sandbox" if mode == "bwrap" else "host, no sandbox ($TUSK_PFS)"

    # The task, as the scheduler builds it

    def task(
        self, cmd: Sequence[str] | None = None, working_dir: str | None = None
    ) -> tuple[DatumTask, list[str]]:
        """The datum's task, and what of its environment cannot be given here. ``cmd``
        replaces ``transform.cmd`` and ``transform.stdin``; ``working_dir`` the folder it
        runs in (inside the image for an image pipeline)."""
        from tusk.pps.executor import ImageRun
        from tusk.pps.tasks import datum_task

        spec, run = self.spec, self.run
        env, values, notes = _secrets(spec)
        image = None
        if run.image_digest:
            tf = spec.transform
            image = ImageRun(tf.image or "", run.image_digest, tf.user or "", bool(tf.network))
        commits = {(f["repo"], f["branch"]): f["commit"] for f in run.files}
        task = datum_task(
            spec, run.origin, pipeline=run.pipeline, job=run.job, datum=run.datum,
            output_commit=run.output_commit, files=run.files, commits=commits, env=env,
            secret_values=values, image=image, on_host=image is None,
        )  # fmt: skip
        if cmd:
            task.cmd, task.stdin = list(cmd), []
        if working_dir is not None:
            task.working_dir = working_dir
        return task, notes

    def _check_runnable(self, task: DatumTask) -> None:
        spec = self.spec
        if spec.s3_out or any(getattr(leaf, "s3", False) for leaf in spec.inputs()):
            raise InvalidArgument(
                f"pipeline {self.run.pipeline} reads or writes through the S3 gateway (s3 "
                "inputs, s3_out): tusk debug datum materialises its inputs but cannot rerun it"
            )
        cwd = task.working_dir
        if task.image is None and cwd is not None and not os.path.isdir(cwd):
            raise InvalidArgument(
                f"the datum ran in {cwd} (the folder of pipeline {self.run.pipeline}'s spec), "
                "which is not on this machine: give the folder of your copy of the code with "
                "--working-dir (working_dir=)"
            )

    def _executor(self) -> LocalExecutor:
        from tusk.config import default_home
        from tusk.pps.executor import LocalExecutor
        from tusk.pps.images import cache_for

        # A server's image cache is on the server: a client of one uses its own home's.
        home = default_home() if getattr(self.client, "address", None) else self.client.home
        return LocalExecutor(images=cache_for(home) if self.run.image_digest else None)

    # Rerun and shell

    def rerun(self, cmd: Sequence[str] | None = None, working_dir: str | None = None) -> DatumRerun:
        """Run the datum's command again on the inputs in ``pfs/`` (``pfs/out`` emptied
        first), as the scheduler ran it, and return it next to the original run."""
        task, notes = self.task(cmd, working_dir)
        self._check_runnable(task)
        out = self.pfs / "out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        executor = self._executor()
        how = self.executor()
        outcome = self._run(executor, task)
        original = self._original_logs()
        logs = [{"stream": stream, "line": line} for _ts, stream, line in outcome.logs]
        if outcome.error and not outcome.logs:
            logs.append({"stream": "system", "line": outcome.error})
        outputs = sorted(
            "/" + p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir()
        )
        result = DatumRerun(
            ok=outcome.ok,
            exit_code=outcome.exit_code,
            error="" if outcome.ok else outcome.error,
            executor=how,
            logs=logs,
            original=original,
            original_exit_code=self.run.exit_code,
            original_error=self.run.error,
            outputs=outputs,
            notes=notes,
        )
        folder = self.path / "logs"
        folder.mkdir(exist_ok=True)
        (folder / "original.txt").write_text(_log_text(original), encoding="utf-8")
        (folder / "rerun.txt").write_text(_log_text(logs), encoding="utf-8")
        return result

    def _run(self, executor: LocalExecutor, task: DatumTask) -> DatumOutcome:
        pfs = self.pfs.resolve()
        if not task.datum_batching:
            return executor.run(task, pfs)
        from tusk.pps.batching import BatchRunner

        # The batch's /pfs holds each datum's folder and relative links into the current one
        # (they must resolve inside the sandbox too): pfs/ moves in for the run, then back.
        base = self.path.resolve() / ".batch"
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir()
        pfs.rename(base / "datum")
        try:
            return BatchRunner(executor, base).run([(task, base / "datum")], lambda: False)[0]
        finally:
            (base / "datum").rename(pfs)
            shutil.rmtree(base, ignore_errors=True)

    def _original_logs(self) -> list[dict[str, str]]:
        lines: list[dict[str, str]] = []
        after = 0
        while True:
            batch = self.client._t.logs(self.run.pipeline, self.run.job, self.run.datum, after)
            if not batch:
                return lines
            lines.extend({"stream": ln.stream, "line": ln.line} for ln in batch)
            after = batch[-1].id

    def shell(self, working_dir: str | None = None) -> int:
        """An interactive ``$SHELL`` in this folder with the datum's environment (``/pfs`` is
        ``pfs/``, ``$TUSK_PFS``); for a job that ran in an image, a shell in that image with
        ``/pfs`` mounted as the executor mounts it. Returns the shell's exit code."""
        task, notes = self.task(working_dir=working_dir)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        (self.pfs / "out").mkdir(parents=True, exist_ok=True)
        if task.image is None:
            shell = os.environ.get("SHELL") or "/bin/sh"
            return subprocess.call([shell], cwd=self.path, env=self._host_env(task))
        return subprocess.call(self._image_shell(task))

    def _host_env(self, task: DatumTask) -> dict[str, str]:
        from tusk.pps.executor import datum_env

        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.update(datum_env(task, str(self.pfs.resolve())))
        return env

    def _image_shell(self, task: DatumTask) -> list[str]:
        from tusk.pps.executor import datum_env
        from tusk.pps.images import image_argv, image_user

        run = task.image
        assert run is not None
        info, rootfs = self._executor().image(run)
        uid, gid, home = image_user(rootfs, run.user or info.user, run.reference)
        pfs = self.pfs.resolve()
        binds = [(pfs / name, f"/pfs/{name}", False) for name, _, _ in task.inputs]
        binds = [*dict.fromkeys(binds), (pfs / "out", "/pfs/out", True)]
        env = {"HOME": home, **datum_env(task, "/pfs")}
        shell = next(
            (s for s in ("/bin/bash", "/bin/sh") if os.path.lexists(rootfs / s.lstrip("/"))),
            "/bin/sh",
        )
        argv = image_argv(rootfs, info, [shell], binds, env, run.network, (uid, gid),
                          task.working_dir)  # fmt: skip
        return argv


def debug_datum(
    client: BaseClient,
    pipeline: str,
    job: str,
    datum: str,
    folder: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
) -> DebugFolder:
    """Materialise datum ``datum`` of job ``pipeline@job`` in ``folder`` (see the module doc;
    default: ``datum-<first 12 digits of its id>`` in the current directory).

    A folder that exists and is not empty is refused (AlreadyExists) unless ``force`` (its
    ``pfs/`` is then replaced, other files are left) or it holds this datum already (then it
    is used as it is)."""
    run = client._t.datum_run(pipeline, job, datum)
    path = Path(folder).expanduser() if folder is not None else Path(f"datum-{run.datum[:12]}")
    if path.exists() and not path.is_dir():
        raise AlreadyExists(f"{path} exists and is not a folder")
    if not force and _holds(path, run):
        return DebugFolder(client, run, path, [], True)
    if path.is_dir() and any(path.iterdir()) and not force:
        raise AlreadyExists(
            f"folder {path} exists and is not empty: give another --dir, or --force to write "
            "the datum into it (its pfs/ is replaced)"
        )
    (path / DATUM_FILE).unlink(missing_ok=True)  # written last: the folder is complete
    shutil.rmtree(path / "pfs", ignore_errors=True)
    written: list[str] = []
    for f in run.files:
        rel = _relative(f["input_name"], f["path"])
        dest = path / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as out:
            if not f.get("empty"):  # empty_files: an empty file stands for it
                client.get_file_to(f"{_named(client, f['repo'])}@{f['commit']}:{f['path']}", out)
        written.append(rel)
    for name in {f["input_name"] for f in run.files}:
        (path / "pfs" / name).mkdir(parents=True, exist_ok=True)
    (path / "pfs" / "out").mkdir(parents=True, exist_ok=True)
    debug = DebugFolder(client, run, path, written, False)
    task, _notes = debug.task()
    (path / "env.sh").write_text(_env_script(debug, task), encoding="utf-8")
    script = path / "run.sh"
    script.write_text(_run_script(client, run), encoding="utf-8")
    script.chmod(0o755)
    record = {
        **run.to_dict(),
        "executor": run.executor,
        "env": _env(debug, task, "/pfs"),  # as the datum saw it in the sandbox or an image
        "working_dir": task.working_dir,
        "secrets": [m.model_dump(exclude_defaults=True) for m in debug.spec.transform.secrets],
    }
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    (path / DATUM_FILE).write_text(text, encoding="utf-8")
    written += ["env.sh", "run.sh", DATUM_FILE]
    return debug


def _holds(path: Path, run: DatumRun) -> bool:
    """Whether ``path`` is a complete debug folder of this very datum."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((path / DATUM_FILE).read_text(encoding="utf-8"))
        return (data.get("pipeline"), data.get("job"), data.get("datum")) == (
            run.pipeline,
            run.job,
            run.datum,
        )
    return False


def _relative(input_name: str, path: str) -> str:
    """``pfs/<input>/<path>``; a name or path that would lead out of the folder is refused
    (the server names them: trust none of it with the caller's disk)."""
    parts = [p for p in path.split("/") if p]
    bad = {"", ".", ".."}
    if "/" in input_name or input_name in bad or not parts or any(p in bad for p in parts):
        raise InvalidArgument(f"refusing to write input {input_name!r} file {path!r}")
    return "/".join(["pfs", input_name, *parts])


def _named(client: BaseClient, repo: str) -> str:
    """A stored repo name as an address names it whatever the client's current project."""
    if "/" in repo or client.project == DEFAULT_PROJECT:
        return repo
    return f"{DEFAULT_PROJECT}/{repo}"


def _secrets(spec: PipelineSpec) -> tuple[dict[str, str], list[bytes], list[str]]:
    """The env-var secrets found in this process's environment, their values (to scrub),
    and a note for each secret that cannot be given."""
    env: dict[str, str] = {}
    values: list[bytes] = []
    notes: list[str] = []
    for m in spec.transform.secrets:
        if m.env_var:
            value = os.environ.get(m.env_var)
            if value is None:
                notes.append(
                    f"secret {m.name} (key {m.key}) is ${m.env_var} in the datum: not set here "
                    f"(export {m.env_var} to give it; values never leave the server)"
                )
            else:
                env[m.env_var] = value
                values.append(value.encode("utf-8", "surrogateescape"))
        if m.mount_path:
            notes.append(
                f"secret {m.name} is mounted at {m.mount_path} in the datum: not mounted here "
                "(values never leave the server)"
            )
    return env, values, notes


def _log_text(lines: list[dict[str, str]]) -> str:
    return "".join(f"[{ln['stream']}] {ln['line']}\n" for ln in lines)


def _tusk_argv() -> list[str]:
    beside = Path(sys.executable).parent / "tusk"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    return [sys.executable, "-m", "tusk.cli.main"]


def _run_script(client: BaseClient, run: DatumRun) -> str:
    address = getattr(client, "address", None)
    where = ["--address", address] if address else ["--home", str(client.home)]
    project, _, name = run.pipeline.rpartition("/")
    argv = [*_tusk_argv(), *where, "--project", project or DEFAULT_PROJECT]
    argv += ["debug", "datum", name, run.job, run.datum]
    command = " ".join(shlex.quote(a) for a in argv)
    return (
        "#!/bin/sh\n"
        "# Reruns the datum on the inputs in pfs/ as the scheduler runs it, and shows its log\n"
        "# next to the original run's (tusk debug datum --run). Arguments are passed on:\n"
        "#   ./run.sh --working-dir ~/code     ./run.sh -- python3 fixed.py\n"
        f"# pipeline {run.pipeline}, job {run.job}, datum {run.datum}\n"
        f'exec {command} --dir "$(dirname "$0")" --run "$@"\n'
    )


def _env(debug: DebugFolder, task: DatumTask, mount: str) -> dict[str, str]:
    """The datum's own environment (``/pfs`` at ``mount``), secrets left out: a value found
    in this process's environment is never written down."""
    from tusk.pps.executor import datum_env

    secret = {m.env_var for m in debug.spec.transform.secrets if m.env_var}
    return {k: v for k, v in datum_env(task, mount).items() if k not in secret}


def _env_script(debug: DebugFolder, task: DatumTask) -> str:
    run = debug.run
    lines = [
        f"# The environment of datum {run.datum} of job {run.pipeline}@{run.job}, for a shell",
        "# on this machine: . ./env.sh (tusk debug datum --shell sets it for you). /pfs is",
        "# this folder's pfs/, named by $TUSK_PFS.",
    ]
    for key, value in _env(debug, task, str(debug.pfs.resolve())).items():
        lines.append(f"export {key}={shlex.quote(value)}")
    for m in debug.spec.transform.secrets:
        if m.env_var:
            lines.append(f"# secret {m.name} (key {m.key}) is ${m.env_var}: export it yourself")
        if m.mount_path:
            lines.append(f"# secret {m.name} is mounted at {m.mount_path}: not given here")
    if task.working_dir:
        lines.append(f"# the command ran in {task.working_dir}")
    lines.append(f"# the command: {shlex.join(task.cmd)}")
    lines.extend(f"#   stdin: {line}" for line in task.stdin)
    return "\n".join(lines) + "\n"
