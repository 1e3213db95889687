"""The OpenAPI document, with response schemas filled in when it is first asked for.

Endpoints return ready JSON (``to_dict`` of the result dataclasses), so FastAPI need not
validate responses; ``@returns(Model)`` only names the schema for the docs. Building those
schemas takes pydantic a while, so they are made on the first ``/openapi.json``, not at start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import TypeAdapter

F = TypeVar("F", bound=Callable[..., Any])

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "examples": ["repo_not_found"]},
                "message": {"type": "string"},
            },
        }
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def returns(model: Any) -> Callable[[F], F]:
    """Name the schema of an endpoint's JSON answer (for the docs only)."""

    def mark(fn: F) -> F:
        fn._tusk_returns = model  # type: ignore[attr-defined]
        return fn

    return mark


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def operation_id(route: APIRoute) -> str:
    """Operation ids are the endpoint names: ``put_file``, ``list_jobs``..."""
    return route.name


def install_openapi(app: FastAPI, routers: list[APIRouter]) -> None:
    """Serve an OpenAPI document whose answers name the result schemas (see ``returns``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Error"] = ERROR_SCHEMA
        components.pop("ValidationError", None)
        components.pop("HTTPValidationError", None)
        models = {
            route.name: getattr(route.endpoint, "_tusk_returns", None)
            for router in routers
            for route in router.routes
            if isinstance(route, APIRoute)
        }
        for item in schema["paths"].values():
            for op in item.values():
                responses = op.setdefault("responses", {})
                responses.pop("422", None)
                responses["400"] = _error("Invalid request: a bad name, path, ref or body")
                responses["default"] = _error(
                    "Any other failure: 404 not found, 409 conflict, 413 body too large, "
                    "503 store unavailable, 504 wait timed out"
                )
                model = models.get(op.get("operationId", ""))
                ok = next((code for code in responses if code.startswith("2")), "200")
                if model is None or ok == "204":
                    continue
                adapter: TypeAdapter[Any] = TypeAdapter(model)
                body = adapter.json_schema(
                    ref_template="#/components/schemas/{model}", mode="serialization"
                )
                components.update(body.pop("$defs", {}))
                # Other media types the route names (a listing's NDJSON form) stay.
                responses[ok].setdefault("content", {})["application/json"] = {"schema": body}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
