"""The REST API: ``create_app(pfs, pps)`` builds the FastAPI application.

Routes live under ``/api/v1`` (see ``tusk.api.pfs_routes``, ``tusk.api.pps_routes``,
``tusk.api.image_routes`` and ``tusk.api.webhook_routes``); the OpenAPI document is at
``/openapi.json`` and interactive docs at ``/docs``. Every failure is JSON ``{"error":
{"code", "message"}}``: a ``TuskError`` with its ``code`` and ``status``, a request that does
not validate with 400, an unknown route with 404, a JSON body over the limit with 413, a
metadata store that is down with 503.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import unquote

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tusk.api.auth_routes import auth_router
from tusk.api.docs import install_openapi, operation_id
from tusk.api.guard import guarded_route_class
from tusk.api.image_routes import image_router, is_image_upload
from tusk.api.pfs_routes import pfs_router
from tusk.api.pps_routes import pps_router
from tusk.api.project_routes import project_router
from tusk.api.secret_routes import secret_router
from tusk.api.webhook_routes import webhook_router
from tusk.api.wire import API_PREFIX, SLASH_IN_NAME, error_body, tusk_version
from tusk.api.worker_routes import is_output_upload, worker_router
from tusk.auth.service import AuthService
from tusk.errors import TuskError
from tusk.pfs.service import PfsService
from tusk.pps.service import PpsService
from tusk.pps.webhooks import WebhookService

DEFAULT_MAX_BODY = 8 * 1024 * 1024  # JSON bodies; uploads stream and have no limit
THREADS = 64  # blocking service calls run on a pool this big (waits hold one each)

_HTTP_CODES = {
    400: "invalid_argument",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}
# Uploads stream their bodies into storage: the JSON body limit does not apply to them.
_UPLOAD = re.compile(rf"^{API_PREFIX}/repos/[^/]+/commits/[^/]+/(files|tar)(/|$)")


def is_upload(method: str, path: str) -> bool:
    if is_image_upload(method, path) or is_output_upload(method, path):
        return True
    return method in ("PUT", "POST") and _UPLOAD.match(path) is not None


def create_app(
    pfs: PfsService,
    pps: PpsService,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    home: str = "",
    webhooks: WebhookService | None = None,
) -> FastAPI:
    """The API over one ``PfsService`` and ``PpsService`` (the caller owns and closes them);
    without ``webhooks``, webhook deliveries are refused (401)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        yield

    app = FastAPI(
        title="Tusk",
        version=tusk_version(),
        summary="Version control and pipelines for data: repos, commits, files, pipelines.",
        description=(
            "Addresses as in the CLI: a ref is a branch, a commit id, or either with `^N`/`~N` "
            "(ancestors; write `^` as `%5E`). File paths follow `/files/`. Errors are "
            '`{"error": {"code", "message"}}`. Waits return 504 after at most 30 s: ask again.'
        ),
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    # Set when the server stops: waits then answer 503 at once (see ``wait_for``).
    app.state.stopping = stopping = threading.Event()
    # One gate for every route: AuthService.authorize, with the rules of tusk.auth.permissions.
    # The home's secrets.key (or $TUSK_SECRET_KEY) seals the secrets of S3 tokens.
    auth = AuthService(pfs.meta, key_dir=pps.home)
    app.state.auth = auth
    route_class = guarded_route_class(auth)
    routers = [
        pfs_router(pfs, pps, home, stopping, auth, route_class),
        project_router(pfs, auth, route_class),
        pps_router(pps, stopping, auth, route_class),
        webhook_router(webhooks, route_class),
        auth_router(auth, route_class),
        secret_router(pps, route_class),
        image_router(pps, route_class),
        worker_router(pps, auth, route_class),
    ]
    for router in routers:
        # The routes go straight into the app's router (built with the prefix): FastAPI's
        # include_router adds a layer that every request pays for while matching.
        app.router.routes.extend(router.routes)
    _add_error_handlers(app)
    install_openapi(app, routers)
    app.add_middleware(BodyLimit, limit=max_body, exempt=is_upload)
    app.add_middleware(SlashInName)  # outermost: every layer below sees the rewritten path
    return app


# Errors


def _json_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status)


def _is_db_unreachable(exc: BaseException) -> bool:
    """An OperationalError of the database driver that got past the metadata store."""
    return any(
        cls.__name__ in ("OperationalError", "InterfaceError")
        and cls.__module__.startswith(("sqlalchemy", "psycopg", "sqlite3"))
        for cls in type(exc).__mro__
    )


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error")
            msg = f"malformed JSON{f' ({detail})' if detail else ''}"
        problems.append(f"{loc}: {msg}" if loc else msg)
    more = len(exc.errors()) - len(problems)
    return "invalid request: " + "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _add_error_handlers(app: FastAPI) -> None:
    async def tusk_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TuskError)
        return _json_error(exc.status, exc.code, exc.shown())

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _json_error(400, "invalid_argument", _validation_message(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        if exc.status_code == 404 and exc.detail in ("Not Found", None):
            message = f"no such route: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return _json_error(exc.status_code, code, message)

    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        if _is_db_unreachable(exc):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return _json_error(503, "unavailable", f"metadata store is unreachable ({first})")
        return _json_error(500, "internal", f"internal error: {type(exc).__name__}: {exc}")

    app.add_exception_handler(TuskError, tusk_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


# Repo and pipeline names with a '/' (project/name) in path segments


_ENCODED_SLASH = re.compile(rb"%2f", re.IGNORECASE)
_API_SEGMENTS = API_PREFIX.encode().split(b"/")  # [b"", b"api", b"v1"]
# The segments after these name a repo or a pipeline: /repos/{repo}, /pipelines/{name},
# /auth/repos/{repo}.
_NAMED_AFTER = ((b"repos",), (b"pipelines",), (b"auth", b"repos"))


def _name_segment(segments: list[bytes]) -> int | None:
    """The index of the path segment that names a repo or pipeline, if any."""
    n = len(_API_SEGMENTS)
    if segments[:n] != _API_SEGMENTS:
        return None
    for before in _NAMED_AFTER:
        at = n + len(before)
        if tuple(segments[n:at]) == before and len(segments) > at:
            return at
    return None


def rewrite_path(raw_path: bytes) -> str | None:
    """The path to route for ``raw_path`` when an encoded slash (``%2F``) is in a repo or
    pipeline name: ``/api/v1/repos/research%2Fimages/...`` routes as ``research~images``
    (``name_param`` turns it back); None when there is nothing to rewrite."""
    if not _ENCODED_SLASH.search(raw_path):
        return None
    segments = raw_path.split(b"/")
    at = _name_segment(segments)
    if at is None or not _ENCODED_SLASH.search(segments[at]):
        return None
    segments[at] = _ENCODED_SLASH.sub(SLASH_IN_NAME.encode(), segments[at])
    return unquote(b"/".join(segments).decode("ascii", "replace"))


class SlashInName:
    """Route ``research%2Fimages`` as one path segment: servers decode ``%2F`` before routing,
    which would split the name in two. Only the segment naming a repo or pipeline changes;
    an encoded slash elsewhere (a file path) decodes as before."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("raw_path"):
            path = rewrite_path(scope["raw_path"])
            if path is not None:
                scope = {**scope, "path": path}
        await self.app(scope, receive, send)


# The JSON body limit


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class BodyLimit:
    """Refuse (413) request bodies over ``limit`` bytes, except where ``exempt`` says."""

    def __init__(self, app: ASGIApp, limit: int, exempt: Callable[[str, str], bool]) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.exempt(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _send_json(send, 413, "too_large", f"request body over {self.limit} bytes")
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # An HTTPException passes FastAPI's body parsing unchanged: 413, not 400.
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


async def _send_json(send: Send, status: int, code: str, message: str) -> None:
    response = _json_error(status, code, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*response.raw_headers, (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": response.body})
