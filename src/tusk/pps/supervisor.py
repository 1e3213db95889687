"""Long-lived pipeline processes: spouts and services, kept running by the scheduler.

**Spouts** are pipelines whose code is one long-lived process feeding the pipeline's output
repo.

Pachyderm's spout has no input: its code reads a queue, a socket or an API and writes what it
gets into its output repo itself (``pachctl put file``). Tusk runs it the same way: the
scheduler that runs jobs (``tusk up``, ``run_scheduler``) also supervises each running spout
pipeline's process through :class:`Supervisor`:

* The process gets what it needs to write, and only there: ``TUSK_OUTPUT_REPO`` and
  ``TUSK_OUTPUT_BRANCH`` (also ``PPS_PIPELINE_NAME``), and either ``TUSK_ADDRESS`` (the
  server's API) with, when auth is on, ``TUSK_TOKEN`` of the pipeline's own identity
  (``pipeline:<name>``: it may write its output repo, nothing else), or ``TUSK_HOME`` on an
  embedded store. So ``tusk put file``, the SDK and the S3 gateway all work from the code.
* With a spec image it runs in the image (bubblewrap, the network shared: it must reach the
  server), else on this machine (Tusk's Python first on ``PATH``), in the spec's working
  directory, with the spec's env and secrets, ``transform.stdin`` fed to it.
* When it exits it is started again, after a pause that doubles with each exit that came
  within :data:`FAST_EXIT` seconds of its start (0.5 s, 1 s, 2 s ... up to
  :data:`BACKOFF_MAX`); such a quick exit is a crash (``crashed``), a later one a restart
  (``restarting``). What it prints goes to the pipeline's logs (``tusk logs -p NAME``), the
  state with the restart count and the cause to ``pipeline_processes`` (``tusk list
  pipeline``, ``inspect pipeline``). ``tusk stop pipeline`` stops it (SIGTERM, then SIGKILL),
  ``start`` starts it again; a new pipeline version restarts it.
* Several schedulers may share a home: the one that claims the pipeline's row runs it and
  renews the claim each pass; a claim older than :data:`LEASE` is taken over (its owner died).

**Services** (``service: {internal_port, external_port}``) are long-lived servers over the
latest commits of their inputs: each input's files at its branch head are written to a folder
of the service's own and mounted at ``/pfs/<input>`` as for a datum (bubblewrap, or
``$TUSK_PFS``; in an image with the network shared), and the process serves on
``internal_port``. :class:`Forwarder` listens on ``external_port`` at the server's listen
address (``tusk up --host``) and forwards each connection to the internal port. When an input
branch moves, the new inputs are written first, then the old process is stopped and a new one
started; connections that arrive meanwhile wait in the forwarder until the new process
listens (up to :data:`CONNECT_WAIT` seconds), so clients see a slower answer, not a refused
one. Its jobs finish at once with no datum (the process is the work); the same restarts,
backoff, logs, states and stop/start as a spout. A taken external port is the service's
state (``crashed``, saying so), retried with the same backoff. The forwarder is a few lines
over the standard library's ``socketserver`` (a byte pipe, no protocol: any TCP service).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tusk.errors import TuskError
from tusk.pps.executor import Reading, spawn
from tusk.pps.images import image_argv, image_user
from tusk.pps.spec import PipelineSpec, load_spec
from tusk.storage.meta.records import LogRecord

if TYPE_CHECKING:
    from tusk.pps.service import PpsService

FAST_EXIT = 10.0  # seconds: a process that ends sooner crashed
BACKOFF_MAX = 60.0
LEASE = 30.0  # seconds without renewal after which another scheduler takes a spout over
_HEARTBEAT = 2.0
_SCAN = 0.5  # seconds between two reads of the pipelines (a stop, a new version, new data)
_STOP_GRACE = 5.0
_MAX_BUFFER = 20_000  # lines kept between two flushes; more are counted, not kept
CONNECT_WAIT = 30.0  # seconds a forwarded connection waits for the service to listen


@dataclass
class _Proc:
    pipeline: str
    version: int
    out: Reading  # the process and the lines it printed
    started: float
    token_id: str = ""
    commits: tuple[tuple[str, str, str], ...] = ()  # a service's inputs: (repo, branch, commit)
    root: Path | None = None  # a service's inputs, written for it

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        return self.out.popen


@dataclass
class _Waiting:
    """A spout between two runs: when it may start again and how many quick exits in a row."""

    at: float = 0.0
    quick: int = 0


class Supervisor:
    """Keeps the process of every running spout pipeline of the store alive (see the module
    docstring); ``tick`` once per scheduler pass, ``close`` when the scheduler ends."""

    def __init__(
        self,
        pps: PpsService,
        executor: Any,
        owner: str,
        api_url: str | None,
        log: Callable[[str], None],
        mint: Callable[[str], tuple[str, str] | None],
        revoke: Callable[[str], None],
    ) -> None:
        from tusk.pps.executor import LocalExecutor

        self.pps = pps
        self.meta = pps.meta
        # Spouts run beside the scheduler, also when datums go to Dask: with its image cache.
        if not isinstance(executor, LocalExecutor):
            executor = LocalExecutor("none", images=pps.images)
        self.executor = executor
        self.owner = owner
        self.api_url = api_url
        self.log = log
        self.mint = mint  # a token of the pipeline's identity (None while auth is off)
        self.revoke = revoke
        self.procs: dict[str, _Proc] = {}
        self.forwarders: dict[str, Forwarder] = {}  # services' external ports
        self.waiting: dict[str, _Waiting] = {}
        self._last_beat = 0.0
        self._last_scan = 0.0
        self._specs: dict[tuple[str, int], PipelineSpec] = {}
        _remove_dead_inputs(pps.home / "services")

    # The pass

    def poke(self) -> None:
        """Look at the pipelines on the next pass (new jobs: a service may have new data)."""
        self._last_scan = 0.0

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for name, proc in list(self.procs.items()):  # what ended since the last pass
            if proc.popen.poll() is not None:
                self._ended(name, proc, now)
        due = any(w.at <= now for n, w in self.waiting.items() if n not in self.procs)
        if now - self._last_scan >= _SCAN or due:  # a restart is due: at its time
            self._last_scan = now
            self._scan(now)
        self._flush()

    def _scan(self, now: float) -> None:
        with self.meta.read() as tx:
            spouts = []
            for p in tx.list_pipelines():
                v = tx.get_pipeline_version(p.name, p.version)
                if v is not None and ('"spout"' in v.spec or '"service"' in v.spec):
                    spouts.append((p, v))
        wanted = {p.name for p, _ in spouts if p.state == "running"}
        for name in list(self.procs):
            if name not in wanted:  # stopped or deleted
                self._stop(name, "stopped")
        for name in list(self.forwarders):
            if name not in wanted:
                self.forwarders.pop(name).close()
        for p, v in spouts:
            if p.state != "running":
                self.waiting.pop(p.name, None)
                continue
            spec = self._spec(p.name, p.version, v.spec)
            if spec.spout is None and spec.service is None:
                continue
            kind = "spout" if spec.spout is not None else "service"
            commits: tuple[tuple[str, str, str], ...] = ()
            if spec.service is not None:
                commits = self._heads(spec)
                if not commits:
                    continue  # an input without a commit yet: nothing to serve
            proc = self.procs.get(p.name)
            if proc is not None and proc.version != p.version:
                self._stop(p.name, "restarting", detail=f"version {p.version} replaces it")
                proc = None
                self.waiting[p.name] = _Waiting(at=now)
            elif proc is not None and proc.commits != commits:
                root = self._inputs(p.name, spec, commits)  # written before the old one stops
                forwarder = self.forwarders.get(p.name)
                if forwarder is not None:  # new connections wait; those under way finish
                    forwarder.drain(_STOP_GRACE)
                try:
                    self._stop(p.name, "restarting", detail="new input commits")
                    self._start(p.name, p.version, spec, json.loads(v.origin or "{}"), now,
                                commits, root)  # fmt: skip
                finally:
                    if forwarder is not None:
                        forwarder.resume()
                continue
            if proc is None:
                wait = self.waiting.get(p.name)
                if wait is not None and now < wait.at:
                    continue
                with self.meta.write() as tx:
                    mine = tx.claim_process(p.name, kind, self.owner, now, now - LEASE)
                if mine:
                    origin = json.loads(v.origin or "{}")
                    fresh = self._inputs(p.name, spec, commits) if commits else None
                    self._start(p.name, p.version, spec, origin, now, commits, fresh)
        if now - self._last_beat >= _HEARTBEAT:  # renew the claims of what runs here
            self._last_beat = now
            with self.meta.write() as tx:
                for name in self.procs:
                    tx.update_process(name, self.owner, updated_at=now)

    def _heads(self, spec: PipelineSpec) -> tuple[tuple[str, str, str], ...]:
        """(repo, branch, head commit) of each pfs input of a service; () if one has none."""
        heads = []
        with self.meta.read() as tx:
            for repo, branch in dict.fromkeys(spec.input_branches()):
                b = tx.get_branch(repo, branch)
                if b is None or b.head is None:
                    return ()
                heads.append((repo, branch, b.head))
        return tuple(heads)

    def _inputs(
        self, name: str, spec: PipelineSpec, commits: tuple[tuple[str, str, str], ...]
    ) -> Path:
        """Write each input's files at those commits under a fresh folder of the service's."""
        from tusk.pps.batch import materialize
        from tusk.pps.spec import PfsInput

        base = self.pps.home / "services" / name.replace("/", "__")
        root = base / f"{int(time.time() * 1000)}-{socket.gethostname()}-{os.getpid()}"
        heads = {(repo, branch): commit for repo, branch, commit in commits}
        trees = {key: self.pps.pfs.commit_record(cid).tree for key, cid in heads.items()}
        files = []
        for leaf in spec.inputs():
            if not isinstance(leaf, PfsInput):
                continue
            (root / leaf.name).mkdir(parents=True, exist_ok=True)
            commit = heads[(leaf.repo, leaf.branch)]
            for path, entry in self.pps.pfs.walk_files(leaf.repo, commit):
                files.append({"input_name": leaf.name, "path": path, "repo": leaf.repo,
                              "branch": leaf.branch, "size": entry.size})  # fmt: skip
        materialize(self.pps.pfs, trees, [(root, files)])
        (root / "out").mkdir(exist_ok=True)
        return root

    def _spec(self, name: str, version: int, text: str) -> PipelineSpec:
        key = (name, version)
        if key not in self._specs:
            self._specs[key] = load_spec(json.loads(text))
        return self._specs[key]

    # Starting and stopping

    def _start(
        self,
        name: str,
        version: int,
        spec: PipelineSpec,
        origin: dict,
        now: float,
        commits: tuple[tuple[str, str, str], ...] = (),
        root: Path | None = None,
    ) -> None:
        wait = self.waiting.setdefault(name, _Waiting())
        minted = None
        kind = "spout" if spec.spout is not None else "service"
        ports = spec.service or (spec.spout.service if spec.spout is not None else None)
        try:
            if ports is not None:
                self._forward(name, ports.external_port, ports.internal_port)
            material = self.pps.secrets.material(spec.transform.secrets)
            env = {
                **spec.transform.env,
                **material.env,
                "PPS_PIPELINE_NAME": name,
                "TUSK_PIPELINE": name,
                "TUSK_OUTPUT_REPO": name,
                "TUSK_OUTPUT_BRANCH": spec.output_branch,
            }
            if self.api_url is not None:
                env["TUSK_ADDRESS"] = self.api_url
                minted = self.mint(name)
                if minted is not None:
                    env["TUSK_TOKEN"] = minted[1]
            elif spec.transform.image and self.executor.run_images:
                raise TuskError(
                    "a spout in an image writes through the server's API: run it under "
                    "tusk up (with its API), not an embedded scheduler"
                )
            else:
                env["TUSK_HOME"] = str(self.pps.home)
            if root is not None:
                env.update(self._service_env(spec, commits))
            if ports is not None:
                env["TUSK_SERVICE_PORT"] = str(ports.internal_port)
            argv, full_env, cwd = self._command(spec, origin, env, root)
            popen = spawn(argv, full_env, cwd, spec.transform.stdin)
        except (OSError, TuskError) as exc:
            if minted is not None:
                self.revoke(minted[0])
            wait.quick += 1
            wait.at = now + _backoff(wait.quick)
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._record(name, "crashed", detail=f"cannot start: {cause}", restarted=True)
            self._note(name, f"{kind} {name} cannot start: {cause}")
            if root is not None:
                shutil.rmtree(root, ignore_errors=True)
            return
        out = Reading(popen, material.values, _MAX_BUFFER).start(spec.transform.stdin)
        proc = _Proc(name, version, out, now, minted[0] if minted else "", commits, root)
        self.procs[name] = proc
        self._note_pid(popen.pid, True)
        detail = ""
        if ports is not None:
            detail = f"serving on {self.host}:{ports.external_port}"
        self._record(name, "running", pid=popen.pid, started_at=now, detail=detail)
        self.log(f"{kind} {name} started (pid {popen.pid})")

    @property
    def host(self) -> str:
        """Where services are reachable: the server's listen address (else loopback)."""
        if self.api_url:
            return urlsplit(self.api_url).hostname or "127.0.0.1"
        return "127.0.0.1"

    def _forward(self, name: str, external: int, internal: int) -> None:
        current = self.forwarders.get(name)
        if current is not None and (current.external, current.internal) == (external, internal):
            return
        if current is not None:
            self.forwarders.pop(name).close()
        try:
            self.forwarders[name] = Forwarder(self.host, external, internal)
        except OSError as exc:
            raise TuskError(
                f"external_port {external} on {self.host} is taken or refused "
                f"({exc.strerror or exc}); give the service another external_port"
            ) from None

    def _service_env(
        self, spec: PipelineSpec, commits: tuple[tuple[str, str, str], ...]
    ) -> dict[str, str]:
        """What names a service's inputs: ``<input>`` (its folder), ``<input>_COMMIT``."""
        from tusk.pps.spec import PfsInput

        mount = "/pfs" if self._sandboxed(spec) else ""
        heads = {(repo, branch): commit for repo, branch, commit in commits}
        env = {}
        for leaf in spec.inputs():
            if isinstance(leaf, PfsInput):
                env[f"{leaf.name}_COMMIT"] = heads.get((leaf.repo, leaf.branch), "")
                if mount:
                    env[leaf.name] = f"{mount}/{leaf.name}"
        return env

    def _sandboxed(self, spec: PipelineSpec) -> bool:
        image = bool(spec.transform.image) and self.executor.run_images
        return image or self.executor.mode == "bwrap"

    def _command(
        self, spec: PipelineSpec, origin: dict, env: dict[str, str], root: Path | None
    ) -> tuple[list[str], dict[str, str], str]:
        t = spec.transform
        names = sorted({leaf.name for leaf in spec.inputs()}) if root is not None else []
        if t.image and self.executor.run_images:
            from tusk.pps.executor import ImageRun

            digest = self.pps.resolve_image(spec)  # a cached image answers at once
            info, rootfs = self.executor.image(ImageRun(t.image, digest, t.user or ""))
            uid, gid, home = image_user(rootfs, t.user or info.user, t.image)
            binds = [(root / n, f"/pfs/{n}", False) for n in names] if root is not None else []
            if root is not None:
                binds.append((root / "out", "/pfs/out", True))
                env = {**env, "TUSK_PFS": "/pfs"}
            argv = image_argv(
                rootfs, info, list(t.cmd), binds, {"HOME": home, **env}, True, (uid, gid),
                t.working_dir,
            )  # fmt: skip
            return argv, dict(os.environ), str(self.pps.home)
        if not t.cmd:
            raise TuskError("the spout gives no cmd and images are not run here (--executor host)")
        full = dict(os.environ)
        full["PATH"] = os.path.dirname(sys.executable) + os.pathsep + full.get("PATH", "")
        for key in ("TUSK_ADDRESS", "TUSK_TOKEN", "TUSK_HOME", "TUSK_PROJECT", "TUSK_CONTEXT"):
            full.pop(key, None)  # only what is given below: the spout writes here, as itself
        full.update(env)
        cwd = t.working_dir or origin.get("working_dir") or os.getcwd()
        if root is None:
            return list(t.cmd), full, cwd
        if self.executor.mode == "bwrap":  # a service's inputs at /pfs, as a datum's
            from tusk.pps.executor import _bwrap_args

            full["TUSK_PFS"] = "/pfs"
            return [*_bwrap_args(root, names, cwd), *t.cmd], full, cwd
        full["TUSK_PFS"] = str(root)
        for n in names:
            full[n] = str(root / n)
        return list(t.cmd), full, cwd

    def _ended(self, name: str, proc: _Proc, now: float) -> None:
        """Its process exited: record why and when it may start again."""
        self.procs.pop(name, None)
        proc.out.join(1)
        self._flush_one(proc)
        self._note_pid(proc.popen.pid, False)
        if proc.token_id:
            self.revoke(proc.token_id)
        code = proc.popen.returncode
        quick = now - proc.started < FAST_EXIT
        wait = self.waiting.setdefault(name, _Waiting())
        wait.quick = wait.quick + 1 if quick else 0
        wait.at = now + _backoff(wait.quick)
        what = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        cause = what + (": " + " | ".join(proc.out.tail) if proc.out.tail else "")
        state = "crashed" if quick else "restarting"
        self._record(name, state, pid=None, detail=cause, restarted=True)
        kind = "service" if proc.commits else "spout"
        self._note(name, f"{kind} {name} {what}; starting again in {wait.at - now:.1f}s")
        self.log(f"{kind} {name} {what} ({state})")
        if proc.root is not None:
            shutil.rmtree(proc.root, ignore_errors=True)

    def _stop(self, name: str, state: str, detail: str = "") -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        _terminate(proc.popen)
        proc.out.join(2)
        self._flush_one(proc)
        self._note_pid(proc.popen.pid, False)
        if proc.token_id:
            self.revoke(proc.token_id)
        self._record(name, state, pid=None, detail=detail)
        self.log(f"{'service' if proc.commits else 'spout'} {name} stopped")
        if proc.root is not None:
            shutil.rmtree(proc.root, ignore_errors=True)

    def close(self) -> None:
        """Stop every spout this scheduler runs and let another scheduler take them."""
        for name in list(self.procs):
            self._stop(name, "stopped", detail="its scheduler stopped")
        for name in list(self.forwarders):
            self.forwarders.pop(name).close()
        with self.meta.write() as tx:
            for name in list(self.waiting):
                tx.release_process(name, self.owner)

    # Records

    def _record(self, name: str, state: str, restarted: bool = False, **values: Any) -> None:
        with self.meta.write() as tx:
            row = tx.get_process(name)
            if row is None or row.owner != self.owner:
                return
            extra = {"restarts": row.restarts + 1} if restarted else {}
            tx.update_process(
                name, self.owner, state=state, updated_at=time.time(), **extra, **values
            )

    def _note(self, name: str, line: str) -> None:
        with self.meta.write() as tx:
            tx.add_logs([LogRecord(name, "", "", time.time(), "system", line)])

    def _flush(self) -> None:
        for proc in list(self.procs.values()):
            self._flush_one(proc)

    def _flush_one(self, proc: _Proc) -> None:
        lines, dropped = proc.out.take()
        if dropped:
            lines.append((time.time(), "system", f"... {dropped} lines not kept (too many)"))
        if lines:
            with self.meta.write() as tx:
                tx.add_logs([LogRecord(proc.pipeline, "", "", ts, s, ln) for ts, s, ln in lines])

    def _note_pid(self, pid: int, running: bool) -> None:
        """The executor's pids folder: a scheduler killed with -9 leaves the note, and the
        next one to start ends the process group (``kill_noted``)."""
        folder: Path | None = getattr(self.executor, "pids_dir", None)
        if folder is None:
            return
        note = folder / str(pid)
        if running:
            with contextlib.suppress(OSError):
                note.touch()
        else:
            note.unlink(missing_ok=True)


def _remove_dead_inputs(root: Path) -> None:
    """Remove services' input folders (``<ms>-<host>-<pid>``) that a killed scheduler of this
    host left behind."""
    host = socket.gethostname()
    for folder in root.glob("*/*") if root.is_dir() else []:
        _stamp, _, rest = folder.name.partition("-")
        where, _, pid = rest.rpartition("-")
        if where != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass


def _backoff(quick: int) -> float:
    """Seconds before the next start after ``quick`` quick exits in a row."""
    return min(BACKOFF_MAX, 0.5 * 2.0 ** max(0, quick - 1)) if quick else 0.5


def _terminate(popen: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(_STOP_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()


class Forwarder:
    """Listens on ``host:external`` and pipes each connection to ``127.0.0.1:internal``,
    waiting up to :data:`CONNECT_WAIT` seconds for the service to listen (a restart)."""

    def __init__(self, host: str, external: int, internal: int) -> None:
        self.external, self.internal = external, internal
        self.open = threading.Event()  # cleared while the service restarts
        self.open.set()
        self.active = 0  # connections being forwarded
        self.lock = threading.Condition()
        forwarder = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(handler) -> None:
                forwarder.open.wait(CONNECT_WAIT)
                with forwarder.lock:
                    forwarder.active += 1
                try:
                    upstream = _connect(internal)
                    if upstream is None:
                        return
                    with upstream:
                        _pipe(handler.request, upstream)
                finally:
                    with forwarder.lock:
                        forwarder.active -= 1
                        forwarder.lock.notify_all()

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server((host, external), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self.thread.start()

    def drain(self, timeout: float) -> None:
        """Hold new connections back and wait (up to ``timeout``) for those under way."""
        self.open.clear()
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.active and time.monotonic() < deadline:
                self.lock.wait(max(0.0, deadline - time.monotonic()))

    def resume(self) -> None:
        """Let the held connections through (to the new process, once it listens)."""
        self.open.set()

    def close(self) -> None:
        self.open.set()
        self.server.shutdown()
        self.server.server_close()


def _connect(port: int) -> socket.socket | None:
    deadline = time.monotonic() + CONNECT_WAIT
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both sides are done."""

    def copy(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    for sock in (a, b):
        sock.settimeout(None)
    other = threading.Thread(target=copy, args=(b, a), daemon=True)
    other.start()
    copy(a, b)
    other.join()
