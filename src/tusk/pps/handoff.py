"""Datums handed to another container through files: Tusk's worker on Kubernetes.

Pachyderm runs user code in the pipeline's image by putting its worker binary into the pod. Tusk
does the same with two containers of one pod sharing two emptyDir volumes (``tusk deploy
kubernetes`` writes them, docs/kubernetes.md): ``/pfs`` and ``/tusk``.

* The ``worker`` container runs ``tusk worker --pipeline NAME --handoff /tusk``: it claims datums
  like any ``tusk worker``, writes their inputs into a scratch folder under ``/pfs/.tusk``,
  points ``/pfs/<input>`` and ``/pfs/out`` at them (relative symlinks, valid in both containers)
  and hands the datum over with :class:`HandoffExecutor`.
* The ``user`` container runs the pipeline's image with ``/bin/sh -c`` :data:`HANDOFF_LOOP`: it
  waits for a request, runs the command with its environment, stdin and working directory,
  and answers with the exit code. The image needs a POSIX ``sh`` (Pachyderm's needs none: its
  worker binary is static); the command runs as the image says, in the image's root.

The request, in ``/tusk``, written by the worker with ``go`` last (a rename, so it appears whole)::

    argv     the command, one argument per line
    env      ``export KEY='value'`` lines (never the values of secrets: Kubernetes gives those)
    stdin    what the command reads
    cwd      its working directory ("" for the image's)
    go       present while a datum is handed over

and the answer, written by the loop: ``stdout``, ``stderr`` and ``rc`` (the exit code; ``rc``
appears last). ``stop`` asks the loop to kill the running command (a timeout, a stopped job);
``exit`` ends the loop (the worker is done), so the pod completes.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path

from tusk.pps.executor import DatumOutcome, DatumTask, LocalExecutor, _lines, _tail, settle
from tusk.pps.secret_mounts import scrub_output, scrub_values, scrubbing

#: The user container's command: ``["/bin/sh", "-c", HANDOFF_LOOP]`` (POSIX sh, busybox too).
HANDOFF_LOOP = r"""H="${TUSK_HANDOFF:-/tusk}"
while :; do
  if [ -f "$H/go" ]; then
    set --
    while IFS= read -r a || [ -n "$a" ]; do set -- "$@" "$a"; done < "$H/argv"
    (
      set -a; . "$H/env"; set +a
      d="$(cat "$H/cwd")"; if [ -n "$d" ]; then cd "$d" 2> "$H/stderr" || exit 126; fi
      exec "$@" < "$H/stdin" > "$H/stdout" 2> "$H/stderr"
    ) &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
      if [ -f "$H/stop" ]; then kill -9 "$pid" 2>/dev/null; fi
      sleep 0.02
    done
    wait "$pid"; rc=$?
    rm -f "$H/go" "$H/stop"
    echo "$rc" > "$H/rc.part" && mv "$H/rc.part" "$H/rc"
  elif [ -f "$H/exit" ]; then
    exit 0
  else
    sleep 0.02
  fi
done
"""

_POLL = 0.01


class HandoffExecutor(LocalExecutor):
    """Runs each datum by handing it to :data:`HANDOFF_LOOP` in another container.

    ``folder`` is the shared ``/tusk``; ``pfs`` the shared ``/pfs`` as this process sees it.
    Datums are materialised under ``pfs/.tusk`` (:attr:`scratch_root`), so the symlinks that
    make ``/pfs/<input>`` and ``/pfs/out`` resolve the same way in both containers. One datum at
    a time: the loop runs one command; several pods give parallelism.
    """

    def __init__(self, folder: Path, pfs: Path = Path("/pfs")) -> None:
        super().__init__("none", run_images=False)
        self.folder = Path(folder)
        self.pfs = Path(pfs)
        self.scratch_root = self.pfs / ".tusk"
        self.mode = f"handoff ({self.folder})"
        self.on_host = False  # the command runs in another container: no host folder for it
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in ("go", "rc", "stop", "exit"):
            (self.folder / stale).unlink(missing_ok=True)

    def close(self) -> None:
        """Tell the loop to end (the pod completes when both containers have)."""
        (self.folder / "exit").touch()

    def run(
        self,
        task: DatumTask,
        pfs_root: Path,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> DatumOutcome:
        (pfs_root / "out").mkdir(parents=True, exist_ok=True)
        names = [*sorted({name for name, _, _ in task.inputs}), "out"]
        for name in names:
            link = self.pfs / name
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.exists():
                return DatumOutcome(False, error=f"{link} is a folder, not Tusk's link")
            link.symlink_to(os.path.relpath(pfs_root / name, self.pfs))
        with scrubbing(scrub_values(task.secret_values)):
            outcome = self._hand(task.cmd, task.stdin, task, cancelled)
            return settle(
                task, outcome, False, lambda cmd, stdin: self._hand(cmd, stdin, task, cancelled)
            )

    def _hand(
        self,
        cmd: list[str],
        stdin: list[str],
        task: DatumTask,
        cancelled: Callable[[], bool],
    ) -> DatumOutcome:
        if not cmd:
            return DatumOutcome(
                False, error="the pipeline gives no cmd: on Kubernetes give transform.cmd"
            )
        if any("\n" in arg for arg in cmd):
            return DatumOutcome(False, error="an argument of cmd holds a newline (not handed)")
        h = self.folder
        secret = set(task.secret_values)
        env = {
            k: v
            for k, v in self._datum_env(task, str(self.pfs)).items()
            if v.encode() not in secret
        }
        for name in ("rc", "stdout", "stderr", "stop"):
            (h / name).unlink(missing_ok=True)
        (h / "argv").write_text("".join(arg + "\n" for arg in cmd))
        (h / "env").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
        (h / "stdin").write_text("".join(line + "\n" for line in stdin))
        (h / "cwd").write_text(task.working_dir or "")
        (h / "go.part").touch()
        os.replace(h / "go.part", h / "go")
        deadline = None if task.timeout is None else time.monotonic() + task.timeout
        error = ""
        while not (h / "rc").exists():
            if deadline is not None and time.monotonic() >= deadline and not error:
                error = f"timed out after {task.timeout:g}s (datum_timeout)"
                (h / "stop").touch()
            elif cancelled() and not error:
                error = "stopped: the job was stopped or failed"
                (h / "stop").touch()
            time.sleep(_POLL)
        code = int((h / "rc").read_text().strip() or "1")
        out = scrub_output((h / "stdout").read_bytes() if (h / "stdout").exists() else b"")
        err = scrub_output((h / "stderr").read_bytes() if (h / "stderr").exists() else b"")
        now = time.time()
        logs = _lines("stdout", out, now) + _lines("stderr", err, now)
        tail = _tail(err.decode("utf-8", "replace"))
        if error:
            return DatumOutcome(False, exit_code=code, error=error, stderr_tail=tail, logs=logs)
        if code == 0:
            return DatumOutcome(True, exit_code=0, stderr_tail=tail, logs=logs)
        if code == 127 and "not found" in tail:
            what = f"{cmd[0]}: not found in the user container's image"
        else:
            what = f"{cmd[0]} exited with code {code}"
        return DatumOutcome(False, exit_code=code, error=what, stderr_tail=tail, logs=logs)
