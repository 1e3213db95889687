"""Secret routes: ``tusk create|list|inspect|delete secret`` (clusterAdmin only).

A secret's values go in (a Kubernetes Secret manifest) and never come out: every answer holds
names, keys and times only. The scheduler hands the values to the datums of the pipelines
that name them (``tusk.pps.secrets``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from tusk.api.docs import operation_id, returns
from tusk.api.guard import current_caller
from tusk.api.pfs_routes import ok
from tusk.api.wire import API_PREFIX
from tusk.pps.models import SecretInfo
from tusk.pps.service import PpsService


class SecretCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    manifest: dict[str, Any] | str = Field(
        description="A Kubernetes Secret manifest (kind: Secret, metadata.name, data in "
        "base64 and/or stringData): as JSON, or as JSON or YAML text."
    )


def secret_router(pps: PpsService, route_class: type[APIRoute]) -> APIRouter:
    r = APIRouter(
        prefix=API_PREFIX,
        tags=["secrets"],
        generate_unique_id_function=operation_id,
        route_class=route_class,
    )

    @r.post("/secrets", status_code=201)
    @returns(SecretInfo)
    def create_secret(body: SecretCreate) -> Response:
        """Store a secret (encrypted at rest); 409 when one of that name exists."""
        info = pps.secrets.create(body.manifest, created_by=current_caller().principal)
        return ok(info, 201)

    @r.get("/secrets")
    @returns(list[SecretInfo])
    def list_secrets() -> Response:
        """Every secret's name and keys, never the values."""
        return ok(pps.secrets.list_all())

    @r.get("/secrets/{name}")
    @returns(SecretInfo)
    def inspect_secret(name: str) -> Response:
        """A secret's keys and times, never the values."""
        return ok(pps.secrets.inspect(name))

    @r.delete("/secrets/{name}", status_code=204)
    def delete_secret(name: str) -> Response:
        """Delete a secret; pipelines that name it fail their next job, saying so."""
        pps.secrets.delete(name)
        return Response(status_code=204)

    return r
