"""Project routes: ``tusk create|list|inspect|delete project``.

A repo of another project than ``default`` is named ``project/repo``; in the path of the repo
routes it is sent percent-encoded (``/repos/research%2Fimages``), see ``tusk.api.wire``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.routing import APIRoute

from tusk.api import bodies
from tusk.api.docs import operation_id, returns
from tusk.api.guard import EDGE, current_caller
from tusk.api.pfs_routes import ok
from tusk.api.wire import API_PREFIX
from tusk.auth.permissions import PROJECT_OWN
from tusk.auth.service import AuthService
from tusk.pfs.models import ProjectInfo
from tusk.pfs.service import PfsService


def project_router(pfs: PfsService, auth: AuthService, route_class: type[APIRoute]) -> APIRouter:
    r = APIRouter(
        prefix=API_PREFIX,
        tags=["projects"],
        generate_unique_id_function=operation_id,
        route_class=route_class,
    )

    @r.post("/projects", status_code=201)
    @returns(ProjectInfo)
    def create_project(body: bodies.ProjectCreate) -> Response:
        """Create a project (``update``: or change its description); 409 when it exists."""
        caller = current_caller()
        exists = body.update and body.name in {p.name for p in pfs.list_projects()}
        if exists:  # changing its description is the owner's
            auth.require(caller, PROJECT_OWN, body.name, edge=EDGE, operation="create_project")
        info = pfs.create_project(body.name, body.description, body.update)
        if not exists:
            auth.grant_project_creator(caller, info.name)  # its creator owns it
        auth.audit_event(
            caller, EDGE, "create_project", "project", info.name, body.description[:200]
        )
        return ok(info, 201)

    @r.get("/projects")
    @returns(list[ProjectInfo])
    def list_projects() -> Response:
        """Every project, with its repos (``default`` holds the repos named without one)."""
        return ok(pfs.list_projects())

    @r.get("/projects/{project}")
    @returns(ProjectInfo)
    def inspect_project(project: str) -> Response:
        return ok(pfs.inspect_project(project))

    @r.delete("/projects/{project}", status_code=204)
    def delete_project(project: str) -> Response:
        """Delete an empty project (never ``default``); 409 while it has repos."""
        pfs.delete_project(project)
        auth.forget_project(project)
        return Response(status_code=204)

    return r
