"""Run one datum's user code on this machine, with ``/pfs`` mapped as Pachyderm maps it.

Two modes (``TUSK_SANDBOX``):

* ``bwrap`` (chosen by ``auto`` when bubblewrap works here): the code runs in a private mount
  namespace. The host's directories are mounted read-only, ``/tmp`` is a private tmpfs, each
  input is mounted read-only at ``/pfs/<input name>`` and ``/pfs/out`` is the only writable
  place that is kept. Unchanged Pachyderm code that reads ``/pfs/images`` and writes
  ``/pfs/out`` runs as it is; a write anywhere else fails (read-only file system) or vanishes
  with the private ``/tmp``.
* ``none`` (where namespaces are unavailable): the same tree is built in a per-datum working
  directory whose path is in ``$TUSK_PFS``; code that reads ``os.environ.get("TUSK_PFS",
  "/pfs")`` runs in both modes. Nothing stops this code from writing elsewhere.

A datum whose pipeline names ``transform.image`` runs in that image instead (unless the
executor is ``host``): the image's rootfs (``tusk.pps.images``), read-only, is ``/`` of a private
mount, user, PID, IPC and UTS namespace (network too unless ``transform.network``), with
``/pfs/<input>`` read-only, ``/pfs/out`` writable and a private ``/tmp``; nothing of the host's
files or environment is visible. The image is the one the pipeline version pinned by digest.

The environment names the job, the datum and each input as Pachyderm's does: ``PACH_JOB_ID``,
``PACH_DATUM_ID``, ``PACH_OUTPUT_COMMIT_ID``, ``PPS_PIPELINE_NAME``, ``<input>`` (the path of
the input's first file in this datum) and ``<input>_COMMIT``; the same with ``TUSK_`` names.
The directory of the Python that runs Tusk comes first on ``PATH``, so ``python3`` in a spec
finds the packages Tusk's environment has.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tusk.errors import InvalidArgument, TuskError
from tusk.pps.resources import Limits
from tusk.pps.secret_mounts import (
    SANDBOX_SECRETS,
    bwrap_secret_args,
    scrub_output,
    scrub_values,
    scrubbing,
    write_secret_files,
)
from tusk.values import frozen

if TYPE_CHECKING:  # loaded by the first run in an image; checks and host datums never load it
    from tusk.pps.images import ImageCache, ImageInfo

_LOG_LINES = 2000  # kept per stream per datum attempt
_TAIL_CHARS = 2000


@frozen
class ImageRun:
    """The image a datum runs in: the spec's reference, the digest its version pinned."""

    reference: str
    digest: str
    user: str = ""  # transform.user; "" means the image's User
    network: bool = False


@dataclass
class DatumTask:
    pipeline: str
    job: str
    datum: str
    output_commit: str
    cmd: list[str]
    stdin: list[str]
    env: dict[str, str]
    working_dir: str | None
    err_cmd: list[str]
    err_stdin: list[str]
    accept_return_code: list[int]
    timeout: float | None
    inputs: list[tuple[str, str, str]]  # (input name, first file path, commit id)
    limits: Limits | None = None  # resource_limits, set on each process (tusk.pps.resources)
    # transform.secrets with mount_path: (secret name, mount path, {key: value}), written for
    # the datum and removed after it; every value given (env or file), scrubbed from its output
    secret_files: list[tuple[str, str, dict[str, bytes]]] = field(default_factory=list)
    secret_values: list[bytes] = field(default_factory=list)
    image: ImageRun | None = None  # run in this image (else on the host)
    datum_batching: bool = False  # one process for the batch (tusk.pps.batching)


@dataclass
class DatumOutcome:
    ok: bool
    recovered: bool = False
    exit_code: int | None = None
    error: str = ""
    stderr_tail: str = ""
    logs: list[tuple[float, str, str]] = field(default_factory=list)


@functools.cache
def bwrap_works() -> bool:
    """True if bubblewrap is installed and can make a mount namespace here.

    A success is remembered until the machine restarts (a marker named for the boot, the
    user and the bwrap binary in the temp folder): every process that runs a datum or a
    check would otherwise pay a trial run of bwrap first (about 10 ms). A failure is not
    remembered: it is tried again, in case bubblewrap was installed since."""
    exe = shutil.which("bwrap")
    if exe is None:
        return False
    marker = _bwrap_marker(exe)
    if marker is not None and marker.exists():
        return True
    try:
        r = subprocess.run(
            [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    if r.returncode == 0 and marker is not None:
        with contextlib.suppress(OSError):
            marker.touch()
    return r.returncode == 0


def _bwrap_marker(exe: str) -> Path | None:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        st = os.stat(exe)
    except OSError:
        return None
    key = f"{boot}:{os.getuid()}:{exe}:{st.st_mtime_ns}:{st.st_size}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
    return Path(tempfile.gettempdir()) / f"tusk-bwrap-ok-{digest}"


def sandbox_mode(requested: str | None = None) -> str:
    """'bwrap' or 'none', from the argument, else ``$TUSK_SANDBOX`` (default 'auto')."""
    mode = (requested or os.environ.get("TUSK_SANDBOX") or "auto").lower()
    if mode not in ("auto", "bwrap", "none"):
        raise InvalidArgument(f"TUSK_SANDBOX must be auto, bwrap or none, not {mode!r}")
    if mode == "auto":
        return "bwrap" if bwrap_works() else "none"
    if mode == "bwrap" and not bwrap_works():
        raise InvalidArgument(
            "TUSK_SANDBOX=bwrap but bubblewrap does not work here (install the bubblewrap "
            "package, or set TUSK_SANDBOX=none)"
        )
    return mode


def _bwrap_args(
    pfs_root: Path,
    input_names: Sequence[str],
    cwd: str,
    pfs_folder: Path | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """bubblewrap's arguments for a datum: the host read-only, ``/tmp`` private, each input
    at ``/pfs/<name>`` read-only and ``/pfs/out`` writable; with ``pfs_folder``, that folder
    is ``/pfs`` instead (datum batching moves its links from datum to datum). ``extra``
    arguments (more mounts) come before ``--chdir``."""
    exe = shutil.which("bwrap") or "bwrap"
    args = [exe, "--die-with-parent"]
    for name in sorted(os.listdir("/")):
        path = "/" + name
        if name in ("proc", "dev", "tmp", "pfs"):
            continue
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    # The working directory (and Tusk's own Python) may live under /tmp, which is private now.
    for keep in {cwd, sys.prefix}:
        if keep.startswith("/tmp/") and os.path.isdir(keep):
            args += ["--ro-bind", keep, keep]
    if pfs_folder is not None:
        args += ["--bind", str(pfs_folder), "/pfs"]
    else:
        args += ["--dir", "/pfs"]
        for name in input_names:
            args += ["--ro-bind", str(pfs_root / name), f"/pfs/{name}"]
        args += ["--bind", str(pfs_root / "out"), "/pfs/out"]
    return [*args, *extra, "--chdir", cwd, "--"]


def _tail(text: str) -> str:
    return text[-_TAIL_CHARS:]


def _lines(stream: str, data: bytes, now: float) -> list[tuple[float, str, str]]:
    lines = data.decode("utf-8", "replace").splitlines()
    if len(lines) > _LOG_LINES:
        skipped = len(lines) - _LOG_LINES
        lines = [f"... {skipped} earlier lines not kept", *lines[-_LOG_LINES:]]
    return [(now, stream, line) for line in lines]


def datum_env(task: DatumTask, mount: str) -> dict[str, str]:
    """The spec's env and what names the job, the datum and its inputs (``mount``: where
    the datum sees ``/pfs``), on top of the host's or the image's environment."""
    env = dict(task.env)
    ids = {
        "JOB_ID": task.job,
        "DATUM_ID": task.datum,
        "OUTPUT_COMMIT_ID": task.output_commit,
    }
    for key, value in ids.items():
        env[f"PACH_{key}"] = value
        env[f"TUSK_{key}"] = value
    env["PPS_PIPELINE_NAME"] = env["TUSK_PIPELINE"] = task.pipeline
    env["TUSK_PFS"] = mount
    for name, path, commit in task.inputs:
        env[name] = f"{mount}/{name}{path}"
        env[f"{name}_COMMIT"] = commit
    return env


_EXEC_MISSING = re.compile(r"bwrap: execvp (\S+): No such file or directory")


class LocalExecutor:
    """Runs datums as child processes of this process (one per datum, several at once).

    ``images``: where images are cached (a scheduler sets it to its home's); ``run_images``
    False is ``--executor host``: a spec's image is recorded, its command runs on the host.
    """

    def __init__(
        self,
        sandbox: str | None = None,
        pids_dir: Path | None = None,
        images: ImageCache | None = None,
        run_images: bool = True,
    ) -> None:
        self.mode = sandbox_mode(sandbox)
        self.pids_dir = pids_dir
        self.images = images
        self.run_images = run_images
        self._unpacked: dict[str, tuple[ImageInfo, Path]] = {}
        self._unpacking = threading.Lock()

    def close(self) -> None:
        """Nothing to release (the Dask executor's ``close`` ends its client)."""

    def run(
        self,
        task: DatumTask,
        pfs_root: Path,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> DatumOutcome:
        """Run ``task`` on the inputs materialised under ``pfs_root`` (outputs in ``out/``).

        Its secret files exist while it runs, and the values of its secrets are scrubbed from
        what it prints (``tusk.pps.secret_mounts``).
        """
        folder = pfs_root.with_name(pfs_root.name + ".secrets")
        secrets = write_secret_files(folder, task.secret_files)
        try:
            with scrubbing(scrub_values(task.secret_values)):
                if task.image is not None:
                    return self._run_in_image(task, task.image, pfs_root, cancelled, secrets)
                return self._run_datum(task, pfs_root, cancelled, secrets)
        finally:
            if secrets is not None:
                shutil.rmtree(secrets, ignore_errors=True)

    def image(self, run: ImageRun) -> tuple[ImageInfo, Path]:
        """The pinned image of ``run`` and its unpacked rootfs, fetched into this machine's
        cache if it is not there (a Dask worker elsewhere), unpacked once per process."""
        with self._unpacking:
            found = self._unpacked.get(run.digest)
            if found is not None and found[1].is_dir():  # (gone if the cache was emptied)
                return found
            if self.images is None:
                raise InvalidArgument("this executor has no image cache to run images from")
            try:
                info = self.images.lookup(run.digest)
            except TuskError:
                from tusk.pps.images import pinned_reference

                info = self.images.resolve(pinned_reference(run.reference, run.digest))
                if info.digest != run.digest:
                    raise InvalidArgument(
                        f"image {run.reference} is now {info.digest}, not {run.digest} as the "
                        "pipeline version pinned it; update the pipeline to run the new image"
                    ) from None
            found = self._unpacked[run.digest] = (info, self.images.rootfs(info))
            return found

    def _run_in_image(
        self,
        task: DatumTask,
        run: ImageRun,
        pfs_root: Path,
        cancelled: Callable[[], bool],
        secrets: Path | None,
    ) -> DatumOutcome:
        (pfs_root / "out").mkdir(parents=True, exist_ok=True)
        try:
            info, rootfs = self.image(run)
            from tusk.pps.images import image_argv, image_user, make_mount_point

            uid, gid, home = image_user(rootfs, run.user or info.user, run.reference)
        except TuskError as exc:
            return DatumOutcome(False, error=str(exc))
        binds = [(pfs_root / name, f"/pfs/{name}", False) for name, _, _ in task.inputs]
        binds = list(dict.fromkeys(binds))
        binds.append((pfs_root / "out", "/pfs/out", True))
        env = {"HOME": home, **self._datum_env(task, "/pfs")}
        if secrets is not None:
            env["TUSK_SECRETS"] = SANDBOX_SECRETS
            for name, mount_path, _values in task.secret_files:
                if not make_mount_point(rootfs, mount_path):
                    return DatumOutcome(
                        False,
                        error=f"secret {name}: mount path {mount_path} cannot be made in image "
                        f"{run.reference} (a part of it is a file or a symlink)",
                    )
                binds.append((secrets / name, os.path.normpath(mount_path), False))
            binds.append((secrets, SANDBOX_SECRETS, False))

        def argv(cmd: list[str]) -> list[str]:
            args = image_argv(
                rootfs, info, cmd, binds, env, run.network, (uid, gid), task.working_dir
            )
            return (task.limits.prefix() if task.limits is not None else []) + args

        try:
            wrapped = argv(task.cmd)
        except TuskError as exc:
            return DatumOutcome(False, error=str(exc))
        shown = task.cmd[:1] or (info.entrypoint + info.cmd)[:1]
        outcome = self._run_one(wrapped, task.stdin, None, str(pfs_root), task.timeout, cancelled)
        self._explain(outcome, wrapped[0], shown[0], run.reference)

        def err(cmd: list[str], stdin: list[str]) -> DatumOutcome:
            return self._run_one(argv(cmd), stdin, None, str(pfs_root), task.timeout, cancelled)

        return settle(task, outcome, True, err)

    @staticmethod
    def _explain(outcome: DatumOutcome, wrapper: str, shown: str, ref: str) -> None:
        """Name the user's command, not bubblewrap, in a failure; say when it is not in the
        image ("sh: not found in image busybox:1.36")."""
        missing = _EXEC_MISSING.search(outcome.stderr_tail)
        if missing and outcome.exit_code not in (0, None):
            outcome.error = f"{missing.group(1)}: not found in image {ref}"
        elif outcome.error.startswith(wrapper):
            outcome.error = shown + outcome.error[len(wrapper) :]

    def _run_datum(
        self,
        task: DatumTask,
        pfs_root: Path,
        cancelled: Callable[[], bool],
        secrets: Path | None,
    ) -> DatumOutcome:
        (pfs_root / "out").mkdir(parents=True, exist_ok=True)
        sandboxed = self.mode == "bwrap"
        mount = "/pfs" if sandboxed else str(pfs_root)
        env = self._env(task, mount)
        if secrets is not None:
            env["TUSK_SECRETS"] = SANDBOX_SECRETS if sandboxed else str(secrets)
        cwd = task.working_dir or os.getcwd()
        if not os.path.isdir(cwd):
            return DatumOutcome(False, error=f"working directory {cwd} does not exist")
        input_names = sorted({name for name, _, _ in task.inputs})
        prefix = _bwrap_args(pfs_root, input_names, cwd) if sandboxed else []
        if sandboxed and secrets is not None:
            prefix = bwrap_secret_args(prefix, secrets, task.secret_files)
        if task.limits is not None:  # set before bubblewrap or the command runs; inherited
            prefix = task.limits.prefix() + prefix
        outcome = self._run_one(prefix + task.cmd, task.stdin, env, cwd, task.timeout, cancelled)
        if prefix and outcome.error.startswith(prefix[0]):  # name the command, not a wrapper
            outcome.error = task.cmd[0] + outcome.error[len(prefix[0]) :]

        def err(cmd: list[str], stdin: list[str]) -> DatumOutcome:
            return self._run_one(prefix + cmd, stdin, env, cwd, task.timeout, cancelled)

        return settle(task, outcome, sandboxed, err)

    def _env(self, task: DatumTask, mount: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.update(self._datum_env(task, mount))
        return env

    @staticmethod
    def _datum_env(task: DatumTask, mount: str) -> dict[str, str]:
        return datum_env(task, mount)

    def _run_one(
        self,
        cmd: list[str],
        stdin: list[str],
        env: dict[str, str] | None,
        cwd: str,
        timeout: float | None,
        cancelled: Callable[[], bool],
    ) -> DatumOutcome:
        data = ("\n".join(stdin) + "\n").encode() if stdin else None
        try:
            proc = spawn(cmd, env, cwd, stdin)
        except OSError as exc:
            return DatumOutcome(False, error=f"cannot start {cmd[0]}: {exc.strerror}")
        # A note of the process group, so that whoever cleans up after a killed worker can end
        # what it started (a SIGKILLed worker cannot; see Scheduler._clean_scratch).
        note = self.pids_dir / str(proc.pid) if self.pids_dir is not None else None
        if note is not None:
            note.touch()
        try:
            return self._wait(proc, data, cmd, timeout, cancelled)
        finally:
            if note is not None:
                note.unlink(missing_ok=True)

    def _wait(
        self,
        proc: subprocess.Popen[bytes],
        data: bytes | None,
        cmd: list[str],
        timeout: float | None,
        cancelled: Callable[[], bool],
    ) -> DatumOutcome:
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True
        error = ""
        while True:
            step = 0.5
            if deadline is not None:
                step = max(0.01, min(step, deadline - time.monotonic()))
            try:
                out, err = proc.communicate(input=data if first else None, timeout=step)
                break
            except subprocess.TimeoutExpired:
                first = False
                if deadline is not None and time.monotonic() >= deadline:
                    error = f"timed out after {timeout:g}s (datum_timeout)"
                elif cancelled():
                    error = "stopped: the job was stopped or failed"
                else:
                    continue
                _kill(proc)
                out, err = proc.communicate()
                break
        out, err = scrub_output(out), scrub_output(err)  # the datum's secret values: ***
        now = time.time()
        logs = _lines("stdout", out, now) + _lines("stderr", err, now)
        tail = _tail(err.decode("utf-8", "replace"))
        code = proc.returncode
        if error:
            return DatumOutcome(False, exit_code=code, error=error, stderr_tail=tail, logs=logs)
        if code != 0:
            what = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            return DatumOutcome(
                False, exit_code=code, error=f"{cmd[0]} {what}", stderr_tail=tail, logs=logs
            )
        return DatumOutcome(True, exit_code=0, stderr_tail=tail, logs=logs)


def settle(
    task: DatumTask,
    outcome: DatumOutcome,
    sandboxed: bool,
    run_err: Callable[[list[str], list[str]], DatumOutcome],
) -> DatumOutcome:
    """What every executor does once the command ended: name the resource limit it ran into,
    count an accepted exit code as success, and run Pachyderm's ``err_cmd`` (``run_err(cmd,
    stdin)``) after a failure: if that succeeds, the datum is recovered, not failed."""
    if task.limits is not None and not outcome.ok:
        hit = task.limits.explain(outcome.exit_code, outcome.stderr_tail, sandboxed)
        if hit is not None and not outcome.error.startswith(("stopped", "timed out")):
            outcome.error = f"{hit}: {outcome.error}"
    if outcome.ok or outcome.error.startswith("stopped"):
        return outcome
    if outcome.exit_code is not None and outcome.exit_code in task.accept_return_code:
        outcome.ok = True
        return outcome
    if task.err_cmd:
        err = run_err(task.err_cmd, task.err_stdin)
        outcome.logs.extend(err.logs)
        outcome.recovered = err.ok
    return outcome


@dataclass
class Reading:
    """A process's stdout and stderr read line by line on threads of their own, with the
    values of ``secrets`` scrubbed, kept until :meth:`take` (for long-lived processes: a
    spout, a service, a batch's user code). At most ``keep`` lines wait; more are counted."""

    popen: subprocess.Popen[bytes]
    secrets: Sequence[bytes] = ()
    keep: int = 20_000
    lines: list[tuple[float, str, str]] = field(default_factory=list)
    dropped: int = 0
    tail: list[str] = field(default_factory=list)  # the last stderr lines
    lock: threading.Lock = field(default_factory=threading.Lock)
    readers: list[threading.Thread] = field(default_factory=list)

    def start(self, stdin: Sequence[str] = ()) -> Reading:
        for stream, pipe in (("stdout", self.popen.stdout), ("stderr", self.popen.stderr)):
            t = threading.Thread(target=self._read, args=(stream, pipe), daemon=True)
            t.start()
            self.readers.append(t)
        if stdin and self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.write(("\n".join(stdin) + "\n").encode())
                self.popen.stdin.close()
        return self

    def _read(self, stream: str, pipe: Any) -> None:
        with scrubbing(scrub_values(self.secrets)):  # the scrubbed values are per thread
            for raw in iter(pipe.readline, b""):
                line = scrub_output(raw).decode("utf-8", "replace").rstrip("\n")
                with self.lock:
                    if len(self.lines) < self.keep:
                        self.lines.append((time.time(), stream, line))
                    else:
                        self.dropped += 1
                    if stream == "stderr":
                        self.tail = [*self.tail[-4:], line]
        pipe.close()

    def take(self) -> tuple[list[tuple[float, str, str]], int]:
        """The lines read since the last call, and how many more were not kept."""
        with self.lock:
            lines, self.lines = self.lines, []
            dropped, self.dropped = self.dropped, 0
        return lines, dropped

    def join(self, timeout: float) -> None:
        for t in self.readers:
            t.join(timeout)


def spawn(
    argv: list[str], env: dict[str, str] | None, cwd: str, stdin: Sequence[str]
) -> subprocess.Popen[bytes]:
    """A process in a session of its own (its group can be ended), output piped."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def kill_noted(pids_dir: Path) -> int:
    """End the process groups noted in ``pids_dir`` by a worker that died; how many."""
    killed = 0
    if not pids_dir.is_dir():
        return 0
    for note in pids_dir.iterdir():
        if not note.name.isdigit():
            continue
        pid = int(note.name)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getsid(pid) == pid:  # still the session leader we started, not a reused pid
                os.killpg(pid, signal.SIGKILL)
                killed += 1
    return killed


def collect_outputs(out_dir: Path) -> list[tuple[tuple[str, ...], Path]]:
    """Regular files (and symlinks to files) below ``out_dir``: (path segments, local path)."""
    found: list[tuple[tuple[str, ...], Path]] = []
    stack: list[tuple[tuple[str, ...], Path]] = [((), out_dir)]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            parts = (*prefix, e.name)
            if e.is_dir(follow_symlinks=False):
                stack.append((parts, Path(e.path)))
            elif e.is_file(follow_symlinks=True):
                found.append((parts, Path(e.path)))
    return sorted(found)


def executor_named(executor: str | None, sandbox: str | None) -> LocalExecutor | None:
    """The executor a scheduler or worker is given by name: ``local`` (default), ``host`` or
    ``handoff:FOLDER[,pfs=PATH]``; None for anything else (a Dask scheduler address)."""
    chosen = executor or os.environ.get("TUSK_EXECUTOR") or "local"
    if chosen == "local":
        return LocalExecutor(sandbox)
    if chosen == "host":  # a spec's image is recorded, its command runs on this machine
        return LocalExecutor(sandbox, run_images=False)
    if chosen.startswith("handoff:"):  # datums handed to another container (Kubernetes)
        from tusk.pps.handoff import HandoffExecutor

        folder, _, pfs = chosen[len("handoff:") :].partition(",pfs=")
        return HandoffExecutor(Path(folder), Path(pfs or "/pfs"))
    return None
