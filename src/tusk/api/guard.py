"""Every REST route passes ``AuthService.authorize`` before its handler runs.

Routers are built with :func:`guarded_route_class`: each route's endpoint is wrapped so that
the check runs first, in the same thread as a sync handler (no extra hop per request), with
the route's operation id and the repo its rule names from the path. The caller it returns
is in :data:`CALLER` while the handler runs, for handlers that check a second resource.
"""

from __future__ import annotations

import functools
import hmac
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, get_type_hints

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from tusk.api.wire import FORCE_HEADER, name_param
from tusk.auth.permissions import PUBLIC, RULES
from tusk.auth.service import OFF, AuthService, Caller, parse_bearer
from tusk.errors import PermissionDenied
from tusk.pfs.protection import overriding

EDGE = "rest"
_REQUEST = "tusk_request__"
CALLER: ContextVar[Caller] = ContextVar("tusk_caller", default=OFF)


def current_caller() -> Caller:
    return CALLER.get()


# The web console's session (tusk.console): its token in an HttpOnly cookie, used when a
# request has no Authorization header; a change made with it also needs the CSRF token.
SESSION_COOKIE = "tusk_session"
CSRF_COOKIE = "tusk_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_check(auth: AuthService, token: str, sent: str | None) -> None:
    """A change made with the session cookie must send the session's CSRF token (which a
    page of another site cannot read)."""
    if not sent or not hmac.compare_digest(sent, auth.csrf_for(token)):
        raise PermissionDenied(
            "missing or wrong CSRF token (X-CSRF-Token): reload the console, or sign in again"
        )


# A clusterAdmin's write to a protected branch (FORCE_HEADER, tusk --force-protected):
# allowed for this request, and each protected branch it wrote goes into the audit log.


def _forcing(request: Request, caller: Caller) -> bool:
    """Whether the request asks to override branch protection (only a clusterAdmin may)."""
    if request.headers.get(FORCE_HEADER, "").lower() not in ("1", "true"):
        return False
    if not caller.is_admin:
        raise PermissionDenied(
            f"{caller.principal} may not override branch protection: it needs clusterAdmin"
        )
    return True


def _audit_forced(auth: AuthService, caller: Caller, name: str, forced: list[str]) -> None:
    for branch in forced:
        auth.audit_event(
            caller, EDGE, name, "branch", branch, "wrote to a protected branch (forced)"
        )


def _guard(endpoint: Callable[..., Any], name: str, auth: AuthService) -> Callable[..., Any]:
    rule = RULES.get(f"{EDGE}.{name}")
    param = (rule.repo or rule.project) if rule is not None else None  # what it names
    needs_token = rule is not None and rule.permission != PUBLIC

    def check(request: Request) -> Caller:
        token = parse_bearer(request.headers.get("authorization"))
        if token is None and needs_token and SESSION_COOKIE in request.cookies:
            token = request.cookies[SESSION_COOKIE]
            if request.method not in SAFE_METHODS:
                csrf_check(auth, token, request.headers.get(CSRF_HEADER))
        repo = request.path_params.get(param) if param else None
        if repo is not None:
            repo = name_param(repo)  # research~images: research%2Fimages as sent
        return auth.authorize(EDGE, name, token, repo=repo)

    # FastAPI reads the signature: the handler's own (annotations resolved in its module),
    # plus the request when the handler does not take it itself.
    hints = get_type_hints(endpoint, include_extras=True)
    sig = inspect.signature(endpoint)
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()
    ]
    own = next((p.name for p in params if p.annotation is Request), None)
    if own is None:
        params.append(
            inspect.Parameter(_REQUEST, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
        )
    signature = sig.replace(
        parameters=params, return_annotation=hints.get("return", sig.return_annotation)
    )

    def request_of(kwargs: dict[str, Any]) -> Request:
        return kwargs[own] if own is not None else kwargs.pop(_REQUEST)

    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            request = request_of(kwargs)
            caller = await run_in_threadpool(check, request)
            reset = CALLER.set(caller)
            try:
                if not _forcing(request, caller):
                    return await endpoint(*args, **kwargs)
                with overriding() as forced:
                    result = await endpoint(*args, **kwargs)
                await run_in_threadpool(_audit_forced, auth, caller, name, forced)
                return result
            finally:
                CALLER.reset(reset)

    else:

        @functools.wraps(endpoint)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            request = request_of(kwargs)
            caller = check(request)
            reset = CALLER.set(caller)
            try:
                if not _forcing(request, caller):
                    return endpoint(*args, **kwargs)
                with overriding() as forced:
                    result = endpoint(*args, **kwargs)
                _audit_forced(auth, caller, name, forced)
                return result
            finally:
                CALLER.reset(reset)

    del wrapper.__wrapped__  # FastAPI must see the signature below, not the handler's
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    return wrapper


def guarded_route_class(auth: AuthService) -> type[APIRoute]:
    """An ``APIRoute`` whose endpoints pass the one check first."""

    class GuardedRoute(APIRoute):
        def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
            name = kwargs.get("name") or endpoint.__name__
            super().__init__(path, _guard(endpoint, name, auth), **kwargs)

    return GuardedRoute
