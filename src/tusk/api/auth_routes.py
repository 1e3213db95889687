"""Auth routes: activate, tokens, roles, the audit log (``tusk auth ...``, ``tusk audit``)."""

from __future__ import annotations

import threading
import time

from fastapi import APIRouter, Query, Request, Response
from fastapi.routing import APIRoute

from tusk.api import bodies
from tusk.api.docs import operation_id, returns
from tusk.api.guard import CSRF_COOKIE, EDGE, SESSION_COOKIE, current_caller
from tusk.api.pfs_routes import ok, repo_name
from tusk.api.wire import API_PREFIX
from tusk.auth.service import AuthService, RepoAccess, TokenInfo
from tusk.errors import Conflict
from tusk.storage.meta.store_auth import AuditRecord


def auth_router(auth: AuthService, route_class: type[APIRoute]) -> APIRouter:
    r = APIRouter(
        prefix=API_PREFIX,
        tags=["auth"],
        generate_unique_id_function=operation_id,
        route_class=route_class,
    )
    activation = threading.Lock()

    @r.post("/auth/activate", status_code=201)
    def auth_activate() -> Response:
        """Turn auth on; the answer holds the root token, shown this once. 409 when on."""
        with activation:
            if auth.is_active():
                raise Conflict("auth is already active; tusk auth deactivate turns it off")
            info, token = auth.activate()
        return ok({"token": token, "info": info}, 201)

    @r.post("/auth/deactivate", status_code=204)
    def auth_deactivate() -> Response:
        """Turn auth off (root only): tokens and roles go, the audit log stays."""
        auth.deactivate(current_caller())
        return Response(status_code=204)

    @r.post("/console/session", status_code=201)
    def console_sign_in(body: bodies.SignIn, request: Request) -> Response:
        """Sign the web console in: the token is checked, then kept in an HttpOnly,
        SameSite=Strict cookie (Secure under TLS) with a CSRF token beside it for changes."""
        caller = auth.authorize(EDGE, "auth_whoami", body.token)
        if not caller.active:
            raise Conflict("auth is off: the console needs no sign-in")
        csrf = auth.csrf_for(body.token)
        response = ok({"principal": caller.principal, "csrf": csrf}, 201)
        secure = request.url.scheme == "https"
        response.set_cookie(SESSION_COOKIE, body.token, httponly=True, samesite="strict",
                            secure=secure, path="/")  # fmt: skip
        response.set_cookie(CSRF_COOKIE, csrf, samesite="strict", secure=secure, path="/")
        auth.audit_event(caller, EDGE, "console_sign_in", "", "", "console session")
        return response

    @r.delete("/console/session", status_code=204)
    def console_sign_out() -> Response:
        """Sign the web console out: its cookies are cleared."""
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    @r.get("/auth/whoami")
    def auth_whoami() -> Response:
        caller = current_caller()
        return ok(
            {
                "principal": caller.principal,
                "token_id": caller.token_id,
                "cluster_roles": sorted(caller.cluster_roles),
                "active": caller.active,
            }
        )

    @r.post("/auth/tokens", status_code=201)
    def auth_create_token(body: bodies.TokenCreate) -> Response:
        """A new token (for another identity: clusterAdmin); shown this once. With ``s3``,
        also an S3 key pair: ``s3`` holds its access key id and secret access key."""
        info, token = auth.create_token(
            current_caller(), body.principal, body.ttl, body.description, s3=body.s3
        )
        answer: dict[str, object] = {"token": token, "info": info}
        if body.s3:
            secret = token[len(f"tusk_{info.id}_") :]
            answer["s3"] = {"access_key_id": info.id, "secret_access_key": secret}
        return ok(answer, 201)

    @r.get("/auth/tokens")
    @returns(list[TokenInfo])
    def auth_list_tokens() -> Response:
        """The caller's tokens (every token for clusterAdmin), never their secrets."""
        return ok(auth.list_tokens(current_caller()))

    @r.delete("/auth/tokens/{token_id}")
    @returns(TokenInfo)
    def auth_revoke_token(token_id: str) -> Response:
        """Revoke a token: refused from its next request on."""
        return ok(auth.revoke_token(current_caller(), token_id))

    @r.get("/auth/repos/{repo}/roles")
    def auth_get_repo_roles(repo: str) -> Response:
        """Who has which role on a repo: {principal: [roles]}."""
        return ok(auth.get_roles("repo", repo_name(repo)))

    @r.put("/auth/repos/{repo}/roles")
    def auth_set_repo_roles(repo: str, body: bodies.RolesSet) -> Response:
        """Replace one identity's roles on a repo (repoOwner or clusterAdmin)."""
        caller = current_caller()
        return ok(auth.set_roles(caller, "repo", repo_name(repo), body.principal, body.roles))

    @r.get("/auth/projects/{project}/roles")
    def auth_get_project_roles(project: str) -> Response:
        """Who has which role on a project: {principal: [roles]}."""
        return ok(auth.get_roles("project", project))

    @r.put("/auth/projects/{project}/roles")
    def auth_set_project_roles(project: str, body: bodies.RolesSet) -> Response:
        """Replace one identity's roles on a project (projectOwner or clusterAdmin):
        projectViewer, projectWriter, projectOwner, or a repo role for every repo of it."""
        caller = current_caller()
        return ok(auth.set_roles(caller, "project", project, body.principal, body.roles))

    @r.get("/auth/cluster/roles")
    def auth_get_cluster_roles() -> Response:
        return ok(auth.get_roles("cluster", ""))

    @r.put("/auth/cluster/roles")
    def auth_set_cluster_roles(body: bodies.RolesSet) -> Response:
        """Replace one identity's cluster roles (clusterAdmin, pipelineCreator)."""
        return ok(auth.set_roles(current_caller(), "cluster", "", body.principal, body.roles))

    @r.get("/auth/repos/{repo}/check")
    @returns(RepoAccess)
    def auth_check_repo(repo: str) -> Response:
        """The caller's roles and permissions on a repo."""
        return ok(auth.check_repo(current_caller(), repo_name(repo)))

    @r.get("/audit")
    @returns(list[AuditRecord])
    def audit(
        user: str | None = None,
        repo: str | None = None,
        since: float | None = Query(None, description="Seconds back from now."),
        limit: int = Query(1000, ge=1, le=100_000),
    ) -> Response:
        """The audit log, newest first (clusterAdmin)."""
        after = None if since is None else time.time() - since
        return ok(auth.audit(principal=user, repo=repo, since=after, limit=limit))

    return r
