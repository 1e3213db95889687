"""Datums handed to another container through files: Tusk's worker on Kubernetes.

Pachyderm runs user code in the pipeline's image by putting its worker binary into the pod. Tusk
does the same with two containers of one pod sharing two emptyDir volumes (``tusk deploy
kubernetes`` writes them, docs/kubernetes.md): ``/pfs`` and ``/tusk``.

* The ``worker`` container runs ``tusk worker --pipeline NAME --handoff /tusk``: it claims datums
  like any ``tusk worker``, writes their inputs into a scratch folder under ``/pfs/.tusk``,
  points ``/pfs/<input>`` and ``/pfs/out`` at them (relative symlinks, valid in both containers)
  and hands the datum over with :class:`HandoffExecutor`.
* The ``user`` container runs the pipeline's image with ``/tusk-bin/busybox sh -c``
  :data:`HANDOFF_LOOP`: it waits for a request, runs the command with its environment, stdin
  and working directory, and answers with the exit code. As Pachyderm copies its static worker
  binary in, an init container copies Tusk's static busybox into ``/tusk-bin``, so the image
  needs no shell; the command runs as the image says, in the image's root.

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

#: The user container's command: ``[BUSYBOX, "sh", "-c", HANDOFF_LOOP, BUSYBOX, *default]``, as
#: ``tusk deploy kubernetes`` writes it, or ``["/bin/sh", "-c", HANDOFF_LOOP]`` (any POSIX sh).
#: When ``$0`` is a busybox the loop runs rm, mv and sleep through it (the image may have none;
#: the rest are sh builtins); its arguments are the command run when the worker hands none
#: (the image's Entrypoint + Cmd). A command name without '/' is looked up in PATH here, so
#: busybox's own applets (Debian's sh prefers them) never stand in for the image's programs.
#: Its own variables start with '_', out of the way of the datum's environment it sources.
HANDOFF_LOOP = r"""_h="${TUSK_HANDOFF:-/tusk}"
case "$0" in */busybox) _bb="$0" ;; *) _bb= ;; esac
while :; do
  if [ -f "$_h/go" ]; then
    (
      if [ -s "$_h/argv" ]; then
        set --
        while IFS= read -r _a || [ -n "$_a" ]; do set -- "$@" "$_a"; done < "$_h/argv"
      fi
      set -a; . "$_h/env"; set +a
      _dir=; IFS= read -r _dir < "$_h/cwd" || :
      if [ -n "$_dir" ]; then cd "$_dir" 2> "$_h/stderr" || exit 126; fi
      if [ $# -eq 0 ]; then echo "no command to run" > "$_h/stderr"; exit 126; fi
      case "$1" in
        */*) ;;
        *)
          _path=; _ifs="$IFS"; IFS=:; set -f
          for _x in ${PATH-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}; do
            _x="${_x:-.}/$1"
            if [ -z "$_path" ] && [ -f "$_x" ] && [ -x "$_x" ]; then _path="$_x"; fi
          done
          IFS="$_ifs"; set +f
          if [ -z "$_path" ]; then echo "$1: not found" > "$_h/stderr"; exit 127; fi
          shift; set -- "$_path" "$@"
          ;;
      esac
      exec "$@" < "$_h/stdin" > "$_h/stdout" 2> "$_h/stderr"
    ) &
    _pid=$!
    while kill -0 "$_pid" 2>/dev/null; do
      if [ -f "$_h/stop" ]; then kill -9 "$_pid" 2>/dev/null; fi
      $_bb sleep 0.02
    done
    wait "$_pid"; _rc=$?
    $_bb rm -f "$_h/go" "$_h/stop"
    echo "$_rc" > "$_h/rc.part" && $_bb mv "$_h/rc.part" "$_h/rc"
  elif [ -f "$_h/exit" ]; then
    exit 0
  else
    $_bb sleep 0.02
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
        # ... the image's own: without transform.cmd, its Entrypoint + Cmd (the loop's args).
        self.in_image_container = True
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
        # No cmd: the loop runs its own arguments, the image's Entrypoint + Cmd as `tusk deploy
        # kubernetes` resolved them (or answers 126, "no command to run", without any).
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
        name = cmd[0] if cmd else "the image's Entrypoint/Cmd"
        if code == 127 and "not found" in tail:
            missing = name if cmd else tail.split(":")[0]
            what = f"{missing}: not found in the user container's image"
        elif code == 126 and "no command to run" in tail:
            what = "no command to run: give transform.cmd (the image has no Entrypoint or Cmd)"
        else:
            what = f"{name} exited with code {code}"
        return DatumOutcome(False, exit_code=code, error=what, stderr_tail=tail, logs=logs)
