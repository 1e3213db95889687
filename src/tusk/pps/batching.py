"""Datum batching (``transform.datum_batching: true``): one process works through many datums.

As in Pachyderm, the user code is started once for a batch and calls ``tusk next datum``
(``pachctl next datum``) in a loop::

    while tusk next datum; do
        process /pfs/in/* > /pfs/out/...      # the datum set up by the call that returned
    done

* The first call says the code is ready; each call blocks until the next datum's inputs are at
  ``/pfs/<input>`` and its output folder at ``/pfs/out``, then returns 0. The call after a
  datum says that datum is done: its ``/pfs/out`` is stored as the datum's output; ``tusk next
  datum --error MSG`` says it failed instead (retried, recovered by ``err_cmd`` or failing the
  job exactly as without batching). After the last datum the code is stopped while it waits.
* The code exiting before it asks for the next datum fails the datum it had ("exited before
  it asked for the next datum", with its exit code) and is started again for the next one;
  ``datum_timeout`` applies from a datum's hand-over to the next call.
* ``/pfs`` is a folder of the batch: ``/pfs/<input>`` and ``/pfs/out`` are symlinks that move
  from datum to datum (in the bubblewrap sandbox, the folder is mounted at ``/pfs``; without
  it, ``$TUSK_PFS`` names it). The call reaches the worker over a Unix socket whose path is in
  ``TUSK_NEXT_DATUM`` (the socket is mounted into the sandbox); ``tusk next datum`` outside a
  batching pipeline fails, saying so.

The protocol (one JSON line each way per call): the code sends ``{"error": ""}`` (or the
message), the worker answers ``{"datum": ID, "env": {...}}`` when the next datum is ready.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

from tusk.errors import TuskError
from tusk.pps.executor import (
    DatumOutcome,
    DatumTask,
    LocalExecutor,
    Reading,
    _bwrap_args,
    _kill,
    _lines,
    _tail,
    settle,
    spawn,
)
from tusk.pps.images import DEFAULT_PATH, image_argv, image_user
from tusk.pps.secret_mounts import scrub_values, scrubbing

SOCKET_ENV = "TUSK_NEXT_DATUM"
_SANDBOX_CTL = "/tmp/.tusk"  # on the sandbox's private /tmp: bubblewrap can make it there
_SANDBOX_SOCKET = f"{_SANDBOX_CTL}/next-datum.sock"

# In an image, neither Tusk nor a working pachctl is installed: ``tusk`` and ``pachctl`` on
# the code's PATH are these two files, which speak the protocol above with the image's own
# Python (``tusk next datum [--error MSG]``, ``pachctl next datum``; anything else is refused).
_SHIM = """#!/bin/sh
for py in python3 python; do
  if command -v "$py" >/dev/null 2>&1; then exec "$py" /tmp/.tusk/next_datum.py "$@"; fi
done
echo "error: $(basename "$0") next datum needs python3 in the image" >&2
exit 1
"""
_CLIENT = r"""import json, os, socket, sys
args = sys.argv[1:]
error = ""
if args[2:3] == ["--error"] and len(args) == 4:
    error, args = args[3], args[:2]
if args != ["next", "datum"]:
    sys.stderr.write("error: in a datum_batching pipeline's image only 'next datum "
                     "[--error MESSAGE]' is served; run the rest outside\n")
    sys.exit(2)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(os.environ["TUSK_NEXT_DATUM"])
    s.sendall(json.dumps({"error": error}).encode() + b"\n")
    answer = s.makefile("rb").readline()
except OSError as exc:
    sys.stderr.write(f"error: the worker does not answer ({exc})\n")
    sys.exit(1)
sys.exit(0 if answer else 1)
"""


class BatchRunner:
    """Runs one batch of datums of a ``datum_batching`` pipeline through one process."""

    def __init__(self, executor: LocalExecutor, base: Path) -> None:
        self.executor = executor
        # /pfs of the code: the batch's folder, holding every datum's folder and the relative
        # symlinks <input> and out to the current one's (so they resolve in the sandbox too)
        self.pfs = base
        self.ctl = base / ".ctl"
        self.code: Reading | None = None
        self.conn: socket.socket | None = None
        self.received = b""  # what the connected call sent so far (a request is one line)
        self.server: socket.socket | None = None
        self.in_image = False  # the code runs in the pipeline's image (/pfs at /pfs)

    # The batch

    def run(
        self,
        items: list[tuple[DatumTask, Path]],
        cancelled: Callable[[], bool],
    ) -> list[DatumOutcome]:
        """Each datum's outcome, in order (fewer when ``cancelled``)."""
        self.pfs.mkdir(parents=True, exist_ok=True)
        self.ctl.mkdir(parents=True, exist_ok=True)
        path = self.ctl / "next-datum.sock"
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        outcomes: list[DatumOutcome] = []
        first = items[0][0]
        try:
            with scrubbing(scrub_values(first.secret_values)):
                for task, root in items:
                    if cancelled():
                        break
                    outcomes.append(self._datum(task, root, cancelled))
        finally:
            self._stop()
            self.server.close()
            shutil.rmtree(self.ctl, ignore_errors=True)
        return outcomes

    def _datum(self, task: DatumTask, root: Path, cancelled: Callable[[], bool]) -> DatumOutcome:
        if self.code is None or self.code.popen.poll() is not None:
            started = self._start(task, cancelled)
            if started is not None:
                return started  # it could not get as far as asking for a datum
        self._point_at(task, root)
        assert self.conn is not None
        env = self.executor._datum_env(task, self._mount())
        self._send({"datum": task.datum, "env": env})
        answer, error = self._await_call(task.timeout, cancelled)
        lines = self.code.take()[0] if self.code is not None else []
        logs = _logs(lines)
        tail = _tail("\n".join(x for _, s, x in lines if s == "stderr"))
        if error:  # it died, timed out or was stopped: start afresh for the next datum
            self._stop()
            outcome = DatumOutcome(False, exit_code=None, error=error, stderr_tail=tail, logs=logs)
        elif answer.get("error"):
            outcome = DatumOutcome(
                False, exit_code=1, error=f"tusk next datum --error: {answer['error']}",
                stderr_tail=tail, logs=logs,
            )  # fmt: skip
        else:
            outcome = DatumOutcome(True, exit_code=0, stderr_tail=tail, logs=logs)

        def err_cmd(cmd: list[str], stdin: list[str]) -> DatumOutcome:
            return self._err_cmd(task, root, cmd, stdin, cancelled)

        return settle(task, outcome, self.in_image or self.executor.mode == "bwrap", err_cmd)

    def _start(self, task: DatumTask, cancelled: Callable[[], bool]) -> DatumOutcome | None:
        """Start the code and wait for its first call (None: it is ready)."""
        self._stop()
        self.in_image = task.image is not None
        if task.image is not None:
            made = self._image_argv(task)
            if isinstance(made, DatumOutcome):
                return made
            argv, env, cwd = made, None, str(self.pfs)
        else:
            env = self.executor._env(task, self._mount())
            env[SOCKET_ENV] = self._socket_inside()
            cwd = task.working_dir or os.getcwd()
            argv = list(task.cmd)
            if self.executor.mode == "bwrap":
                ctl = ["--bind", str(self.ctl), _SANDBOX_CTL]
                argv = [*_bwrap_args(self.pfs, [], cwd, self.pfs, ctl), *argv]
        if task.limits is not None:
            argv = task.limits.prefix() + argv
        try:
            popen = spawn(argv, env, cwd, task.stdin)
        except OSError as exc:
            return DatumOutcome(False, error=f"cannot start {task.cmd[0]}: {exc.strerror}")
        self.code = Reading(popen, task.secret_values).start(task.stdin)
        self.conn = None
        _answer, error = self._await_call(task.timeout, cancelled)
        if error:
            lines = self.code.take()[0]
            self._stop()
            tail = _tail("\n".join(x for _, s, x in lines if s == "stderr"))
            return DatumOutcome(False, error=error, stderr_tail=tail, logs=_logs(lines))
        return None

    def _image_argv(self, task: DatumTask) -> list[str] | DatumOutcome:
        """bubblewrap's command for the code in the pipeline's image: the batch's folder at
        ``/pfs``, the socket and the ``tusk``/``pachctl`` shims at /tmp/.tusk."""
        assert task.image is not None
        run = task.image
        try:
            info, rootfs = self.executor.image(run)
            uid, gid, home = image_user(rootfs, run.user or info.user, run.reference)
        except TuskError as exc:
            return DatumOutcome(False, error=str(exc))
        shims = self.ctl / "bin"
        shims.mkdir(exist_ok=True)
        (self.ctl / "next_datum.py").write_text(_CLIENT)
        for name in ("tusk", "pachctl"):
            (shims / name).write_text(_SHIM)
            (shims / name).chmod(0o755)
        image_env = dict(item.partition("=")[::2] for item in info.env)
        env = {"HOME": home, **self.executor._datum_env(task, "/pfs")}
        env["PATH"] = f"{_SANDBOX_CTL}/bin:{image_env.get('PATH') or DEFAULT_PATH}"
        env[SOCKET_ENV] = _SANDBOX_SOCKET
        binds = [(self.pfs, "/pfs", True), (self.ctl, _SANDBOX_CTL, True)]
        try:
            return image_argv(
                rootfs, info, task.cmd, binds, env, run.network, (uid, gid), task.working_dir
            )
        except TuskError as exc:
            return DatumOutcome(False, error=str(exc))

    def _await_call(self, timeout: float | None, cancelled: Callable[[], bool]) -> tuple[dict, str]:
        """The next ``tusk next datum`` call's request, or why none came."""
        assert self.server is not None and self.code is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.conn is None:
                self.server.settimeout(0.05)
                try:
                    self.conn, _ = self.server.accept()
                    self.conn.settimeout(0.05)
                    self.received = b""
                except TimeoutError:
                    pass
            if self.conn is not None:
                # recv, not a makefile() reader: after one timeout a socket's file object
                # refuses every later read, and the call's request would be lost.
                try:
                    chunk: bytes | None = self.conn.recv(65536)
                except TimeoutError:
                    chunk = None
                except OSError:
                    chunk = b""
                if chunk:
                    self.received += chunk
                    if b"\n" in self.received:
                        line = self.received.split(b"\n", 1)[0]
                        return json.loads(line or b"{}"), ""
                elif chunk == b"":  # that call's process ended without a whole request
                    self.conn.close()
                    self.conn = None
            code = self.code.popen.poll()
            if code is not None and self.conn is None:
                what = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
                return {}, f"{self._name()} {what} before it asked for the next datum"
            if deadline is not None and time.monotonic() >= deadline:
                return {}, f"timed out after {timeout:g}s (datum_timeout)"
            if cancelled():
                return {}, "stopped: the job was stopped or failed"

    def _send(self, message: dict) -> None:
        assert self.conn is not None
        with contextlib.suppress(OSError):
            self.conn.settimeout(5)
            self.conn.sendall(json.dumps(message).encode() + b"\n")
        with contextlib.suppress(OSError):
            self.conn.close()
        self.conn = None

    def _stop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.close()
            self.conn = None
        if self.code is not None:
            if self.code.popen.poll() is None:
                _kill(self.code.popen)
            self.code.popen.wait()
            self.code.join(2)
            self.code = None

    def _err_cmd(
        self,
        task: DatumTask,
        root: Path,
        cmd: list[str],
        stdin: list[str],
        cancelled: Callable[[], bool],
    ) -> DatumOutcome:
        """Pachyderm's ``err_cmd`` after a failed datum: run once, on that datum."""
        recover = DatumTask(**{**task.__dict__, "cmd": cmd, "stdin": stdin, "err_cmd": []})
        return self.executor.run(recover, root, cancelled)

    # /pfs of the code

    def _point_at(self, task: DatumTask, root: Path) -> None:
        (root / "out").mkdir(parents=True, exist_ok=True)
        names = [*sorted({name for name, _, _ in task.inputs}), "out"]
        for old in self.pfs.iterdir():
            if old.is_symlink():
                old.unlink()
        for name in names:
            (self.pfs / name).symlink_to(os.path.relpath(root / name, self.pfs))

    def _mount(self) -> str:
        return "/pfs" if self.in_image or self.executor.mode == "bwrap" else str(self.pfs)

    def _socket_inside(self) -> str:
        if self.executor.mode == "bwrap":
            return _SANDBOX_SOCKET
        return str(self.ctl / "next-datum.sock")

    def _name(self) -> str:
        return "the user code"


def _logs(lines: list[tuple[float, str, str]]) -> list[tuple[float, str, str]]:
    out: list[tuple[float, str, str]] = []
    for stream in ("stdout", "stderr"):
        data = "\n".join(x for _, s, x in lines if s == stream).encode()
        if data:
            out.extend(_lines(stream, data, time.time()))
    return out
