"""Composition: storage -> PFS -> PPS from a home and the environment, the REST API on
uvicorn, and the scheduler. ``tusk up`` runs both; ``tusk serve`` the API alone.

The environment: ``TUSK_HOME`` (the home, default ``~/.tusk``), ``TUSK_METADATA_URL`` (e.g.
``postgresql://user@host/db``; default: SQLite in the home) and ``TUSK_STORAGE_URL`` (the
object store; default: ``objects/`` in the home).

The scheduler runs in the calling thread (as it always did for ``tusk up``), uvicorn in a
thread of its own; the caller's ``stop`` event ends both.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tusk.api.wire import API_PREFIX
from tusk.config import default_home
from tusk.errors import InUse, InvalidArgument
from tusk.pfs.service import PfsService
from tusk.pps.service import PpsService
from tusk.storage.store import Storage

if TYPE_CHECKING:
    import uvicorn

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Server", "Services", "bind", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7800  # documented in docs/deploy.md; `tusk up --port` and `tusk serve --port`
SHUTDOWN_GRACE = 3.0  # seconds open requests get to finish when the server stops
ARENA_MAX = 2  # glibc malloc arenas of a server process (unless MALLOC_ARENA_MAX is set)
TRIM_SECONDS = 10.0  # how often a server hands glibc's free pages back to the OS

Log = Callable[[str], None]


@dataclass
class Services:
    """The two facades over one opened storage; ``close`` releases it."""

    home: Path
    pfs: PfsService
    pps: PpsService

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None) -> Services:
        """Open ``home`` (default ``$TUSK_HOME``, else ``~/.tusk``), honouring the URL variables."""
        where = Path(home).expanduser().resolve() if home is not None else default_home()
        pfs = PfsService(Storage.open(where))
        return cls(where, pfs, PpsService(pfs, where))

    def close(self) -> None:
        self.pfs.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port); InUse when taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidArgument(f"cannot listen on {host}: {exc.strerror}") from exc
    family, kind, proto, _name, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(256)
    except OSError as exc:
        sock.close()
        what = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        raise InUse(f"{_url(host, port)} {what}: pick another port") from exc
    sock.set_inheritable(False)
    return sock


# Memory of a long-running server process (glibc only; elsewhere these do nothing).
#
# Under sustained load (bench/bench_load.py: 50 clients, 20 committers, a pipeline) the
# server's RSS grew by ~1 MiB/s with no plateau while the memory malloc had handed out
# stayed flat or fell: mallinfo2() showed the bytes in use going 89 -> 61 MiB while the free
# bytes held in malloc's arenas went 65 -> 130 MiB within 100 s. Two properties of glibc
# make that happen in a threaded Python server: every thread that allocates while another
# holds an arena gets an arena of its own (up to 8 per core), each growing its own 64 MiB
# heaps with its own free lists; and memory freed in the middle of a heap is not returned
# to the OS until malloc_trim() is called (only the top of a heap is trimmed on free). The
# request threads (anyio's pool, up to 40) allocate and free large transient buffers
# (request bodies, zstd contexts, decoded tree pages), so every arena ends up holding its
# own share of free, resident memory, and the share grows as the repos do.
#
# The fix here: the server limits malloc to ARENA_MAX arenas (Python holds the GIL while it
# allocates, so more arenas mostly buy fragmentation: throughput was the same with 2, run
# side by side), and a thread calls malloc_trim(0) every TRIM_SECONDS, which returns the
# free pages of every arena (glibc >= 2.8 madvises whole free pages inside heaps too). A
# trim walks the free lists with each arena locked in turn (ctypes releases the GIL): in a
# synthetic heap of 8 threads' fragmented arenas, 79 ms to release 390 MiB and 4 ms for a
# second trim with nothing left to release over 600 MiB of arenas; every TRIM_SECONDS that
# is well under 1% of a core. With both, the arenas' resident memory stayed at 17-30 MiB in
# a 150 s run where it went 108 -> 136 MiB without (docs/benchmarks.md, "Memory under load").
# This releases only memory that is free; it neither restarts nor caps anything.
# MALLOC_ARENA_MAX in the environment wins over ARENA_MAX.


_M_ARENA_MAX = -8  # mallopt parameter, from glibc's malloc.h


@functools.cache
def _glibc() -> Any | None:
    """glibc through ctypes, or None on another C library."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both must exist)
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas() -> bool:
    """Limit this process to ARENA_MAX malloc arenas; False when not glibc or overridden."""
    libc = _glibc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, ARENA_MAX))


def release_free_memory() -> bool:
    """Hand the free pages of every malloc arena back to the OS (``malloc_trim(0)``);
    True when some were released."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def _trim_until(stop: threading.Event, every: float = TRIM_SECONDS) -> None:
    if _glibc() is None:
        return
    while not stop.wait(every):
        release_free_memory()


def _url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server:
    """The API (and optionally the scheduler) over one home.

    ``start()`` binds the port and starts uvicorn; ``run(stop)`` runs the scheduler (or just
    waits) until ``stop`` is set; ``close()`` stops uvicorn and releases the home.
    """

    def __init__(
        self,
        services: Services,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        http: bool = True,
        max_body: int | None = None,
        insecure: bool = False,
        tls: tuple[str, str] | None = None,
        s3_port: int | None = None,
        s3_domain: str | None = None,
        s3_optional: bool = False,
        grpc_port: int | None = None,
        grpc_optional: bool = False,
    ) -> None:
        """``insecure``: serve a non-loopback address with auth off (refused otherwise);
        ``tls``: (certificate file, key file) for HTTPS, served by uvicorn; ``s3_port``: serve
        the S3 gateway on this port too (0: any free port; None: no gateway), with
        virtual-host addressing under ``s3_domain`` when given (``s3_optional``: a port that
        is taken turns the gateway off, said in ``s3_off``, instead of failing the start);
        ``grpc_port``: serve Pachyderm's gRPC API there too (``tusk.grpcapi``), likewise
        optional with ``grpc_optional``."""
        self.services = services
        self.s3_port = s3_port
        self.s3_domain = s3_domain
        self.s3_optional = s3_optional
        self.s3_off: str | None = None
        self._s3: uvicorn.Server | None = None
        self._s3_thread: threading.Thread | None = None
        self.grpc_port = grpc_port
        self.grpc_optional = grpc_optional
        self.grpc_off: str | None = None
        self._grpc: Any = None
        self.insecure = insecure
        self.tls = tls
        self.host = host
        self.port = port
        self.http = http
        self.max_body = max_body
        self._uvicorn: uvicorn.Server | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._trimmer: threading.Thread | None = None
        self._closed = threading.Event()
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return _url(self.host, self.port, "https" if self.tls else "http")

    @property
    def s3_url(self) -> str | None:
        if self._s3 is None or self.s3_port is None:
            return None
        return _url(self.host, self.s3_port, "https" if self.tls else "http")

    def _check_exposure(self) -> None:
        """No open door: a non-loopback address needs auth on, or ``insecure`` said aloud."""
        if self.insecure or _is_loopback(self.host):
            return
        from tusk.auth.service import AuthService

        if not AuthService(self.services.pfs.meta).is_active():
            raise InvalidArgument(
                f"refusing to listen on {self.host} with auth off: anyone who reaches it could "
                "change or delete any repo; run tusk auth activate on a server at 127.0.0.1 "
                "first, or pass --insecure"
            )

    def start(self) -> None:
        if not self.http:
            return
        from tusk.api.app import DEFAULT_MAX_BODY, create_app
        from tusk.pps.webhooks import WebhookConfig, WebhookService

        # Read at start: a bad TUSK_WEBHOOK_* setting fails here, not at the first push.
        webhooks = WebhookService(
            self.services.pps, self.services.home, WebhookConfig.from_settings()
        )
        self._check_exposure()
        if self.tls is not None:
            for path in self.tls:
                if not Path(path).is_file():
                    raise InvalidArgument(f"no such TLS file {path!r}")
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        limit_arenas()  # before uvicorn's and the request pool's threads start
        self._trimmer = threading.Thread(
            target=_trim_until, args=(self._closed,), name="tusk-malloc-trim", daemon=True
        )
        self._trimmer.start()
        app = create_app(
            self.services.pfs,
            self.services.pps,
            max_body=self.max_body or DEFAULT_MAX_BODY,
            home=str(self.services.home),
            webhooks=webhooks,
        )
        from tusk.console import mount

        mount(app)  # the web console at /, over the API above
        s3_sock = None
        try:
            s3_sock = bind(self.host, self.s3_port) if self.s3_port is not None else None
        except InUse as exc:
            if not self.s3_optional:
                sock.close()
                raise
            self.s3_off = exc.message  # a default port that is taken turns the gateway off
        if self.grpc_port is not None:  # first: a taken port fails before anything serves
            try:
                self._start_grpc(app.state.auth)
            except BaseException:
                sock.close()
                if s3_sock is not None:
                    s3_sock.close()
                raise
        self._stopping = app.state.stopping
        self._uvicorn, self._thread = self._serve(app, sock, "on", "tusk-http")
        if s3_sock is not None:
            self._start_s3(s3_sock, app.state.auth)

    @property
    def grpc_url(self) -> str | None:
        """``host:port`` of Pachyderm's gRPC API (what pachctl and pachyderm-sdk dial)."""
        if self._grpc is None or self.grpc_port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.grpc_port}"

    def _start_grpc(self, auth: Any) -> None:
        from tusk.grpcapi.server import start_grpc

        assert self.grpc_port is not None
        try:
            self._grpc, self.grpc_port = start_grpc(
                self.services.pfs, self.services.pps, auth, self.host, self.grpc_port
            )
        except InUse as exc:
            if not self.grpc_optional:
                raise
            self.grpc_off = exc.message

    def _start_s3(self, sock: socket.socket, auth: Any) -> None:
        """The S3 gateway: a second uvicorn server over the same services and gate."""
        from tusk.s3.app import create_s3_app

        self.s3_port = sock.getsockname()[1]
        app = create_s3_app(self.services.pfs, self.services.pps, auth, self.s3_domain)
        self._s3, self._s3_thread = self._serve(app, sock, "off", "tusk-s3")

    def _serve(
        self, app: Any, sock: socket.socket, lifespan: Literal["on", "off"], name: str
    ) -> tuple[uvicorn.Server, threading.Thread]:
        """uvicorn serving ``app`` on ``sock`` from a thread of its own, once it answers."""
        import uvicorn

        config = uvicorn.Config(
            app,
            log_config=None,
            log_level=logging.WARNING,
            access_log=False,
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
            lifespan=lifespan,
            ssl_certfile=self.tls[0] if self.tls else None,
            ssl_keyfile=self.tls[1] if self.tls else None,
        )
        server = uvicorn.Server(config)

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # reported by run() in the caller's thread
                self.error = exc
            finally:
                sock.close()

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self._wait_ready(server, thread)
        return server, thread

    def _wait_ready(
        self, server: uvicorn.Server, thread: threading.Thread, timeout: float = 30.0
    ) -> None:
        """Block until uvicorn serves (it fails here, not later, if the app cannot start)."""
        import time

        deadline = time.monotonic() + timeout
        while not server.started:
            if self.error is not None or not thread.is_alive():
                raise RuntimeError(f"the HTTP server did not start: {self.error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start in time")
            time.sleep(0.01)

    def run(
        self,
        stop: threading.Event,
        *,
        scheduler: bool = True,
        once: bool = False,
        sandbox: str | None = None,
        log: Log | None = None,
    ) -> None:
        """Run the scheduler in this thread (or wait) until ``stop`` is set."""
        self.services.pps.sandbox = sandbox  # checks run as its datums do
        if scheduler:
            from tusk.pps.executor import LocalExecutor
            from tusk.pps.scheduler import Scheduler

            api = self.url if self._uvicorn is not None else None
            Scheduler(
                self.services.pps, LocalExecutor(sandbox), log=log, api_url=api, s3_url=self.s3_url
            ).run(stop, once=once)
        else:
            while not stop.wait(0.2):
                if self._thread is not None and not self._thread.is_alive():
                    break
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Stop uvicorn (open requests get a few seconds) and release the home."""
        if self._uvicorn is not None:
            self._stopping.set()  # waiting requests answer 503 now
            self._uvicorn.should_exit = True
        if self._s3 is not None:
            self._s3.should_exit = True
        if self._grpc is not None:
            self._grpc.stop(SHUTDOWN_GRACE).wait(SHUTDOWN_GRACE + 5)
            self._grpc = None
        if self._thread is not None:
            self._thread.join(SHUTDOWN_GRACE + 5)
        if self._s3_thread is not None:
            self._s3_thread.join(SHUTDOWN_GRACE + 5)
        self._closed.set()
        if self._trimmer is not None:
            self._trimmer.join(5)
        self.services.close()


def serve(
    home: str | os.PathLike[str] | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    with_scheduler: bool = True,
    *,
    stop: threading.Event | None = None,
    sandbox: str | None = None,
    log: Log | None = None,
) -> None:
    """Serve the API at ``http://host:port/api/v1`` (and run the scheduler) until ``stop``."""
    say = log or (lambda _msg: None)
    services = Services.open(home)
    server = Server(services, host=host, port=port)
    try:
        server.start()
        say(f"API on {server.url}{API_PREFIX} (docs: {server.url}/docs) for {services.home}")
        server.run(stop or threading.Event(), scheduler=with_scheduler, sandbox=sandbox, log=log)
    finally:
        server.close()
