"""The web console: a single-page app over the public REST API, served by ``tusk up`` at ``/``.

There is no Python logic here and no back door: :func:`mount` serves the app's files, and
every page reads ``/api/v1`` like any other client, through the same permission check. The
pages are built in the browser with ``textContent`` only (the linter forbids ``innerHTML``),
and the Content-Security-Policy sent with them allows scripts from this server alone, so a
file name, commit message or log line holding HTML or script is shown, never run.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PREFIX = "/console"
# Scripts and data from this server only; images also from blob: URLs (a previewed image is
# fetched with the session's credentials, then shown from memory). Styles may also be set by
# the graph library on its own elements ('unsafe-inline' for styles only: no script runs).
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
HEADERS = {
    "content-security-policy": POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


class _Static(StaticFiles):
    """The app's files, with the console's security headers."""

    async def get_response(self, path: str, scope: dict) -> Response:  # type: ignore[override]
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def mount(app: FastAPI) -> None:
    """Serve the console: its page at ``/``, its files under ``/console``."""

    async def index(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={**HEADERS, "cache-control": "no-cache"})

    app.add_route("/", index, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(PREFIX, _Static(directory=STATIC), name="console")
