"""Project routes: ``tusk create|list|inspect|delete project``.

A repo of another project than ``default`` is named ``project/repo``; in the path of the repo
routes it is sent percent-encoded (``/repos/research%2Fimages``), see ``tusk.api.wire``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.routing import APIRoute

from tusk.api import bodies, creating
from tusk.api.docs import operation_id, returns
from tusk.api.guard import EDGE, current_caller
from tusk.api.pfs_routes import ok
from tusk.api.wire import API_PREFIX
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
        info = creating.create_project(
            pfs, auth, current_caller(), body.name, body.description, body.update,
            edge=EDGE, operation="create_project",
        )  # fmt: skip
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
