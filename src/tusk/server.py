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
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
    ) -> None:
        """``insecure``: serve a non-loopback address with auth off (refused otherwise);
        ``tls``: (certificate file, key file) for HTTPS, served by uvicorn."""
        self.services = services
        self.insecure = insecure
        self.tls = tls
        self.host = host
        self.port = port
        self.http = http
        self.max_body = max_body
        self._uvicorn: uvicorn.Server | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return _url(self.host, self.port, "https" if self.tls else "http")

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
        import uvicorn

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
        app = create_app(
            self.services.pfs,
            self.services.pps,
            max_body=self.max_body or DEFAULT_MAX_BODY,
            home=str(self.services.home),
            webhooks=webhooks,
        )
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level=logging.WARNING,
            access_log=False,
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
            lifespan="on",
            ssl_certfile=self.tls[0] if self.tls else None,
            ssl_keyfile=self.tls[1] if self.tls else None,
        )
        server = uvicorn.Server(config)
        self._uvicorn = server
        self._stopping = app.state.stopping

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # reported by run() in the caller's thread
                self.error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name="tusk-http", daemon=True)
        self._thread.start()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        """Block until uvicorn serves (it fails here, not later, if the app cannot start)."""
        import time

        deadline = time.monotonic() + timeout
        while self._uvicorn is not None and not self._uvicorn.started:
            if self.error is not None or (self._thread and not self._thread.is_alive()):
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
        if scheduler:
            from tusk.pps.executor import LocalExecutor
            from tusk.pps.scheduler import Scheduler

            api = self.url if self._uvicorn is not None else None
            Scheduler(self.services.pps, LocalExecutor(sandbox), log=log, api_url=api).run(
                stop, once=once
            )
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
        if self._thread is not None:
            self._thread.join(SHUTDOWN_GRACE + 5)
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
