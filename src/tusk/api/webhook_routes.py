"""Webhook routes: ``POST /webhooks/github`` takes GitHub's signed deliveries.

The signature covers the raw body, so the route reads the bytes itself (a JSON body model
would parse, and could reject, the payload before the signature is checked). What a
delivery does, and what it answers, is ``tusk.pps.webhooks``'s business.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from tusk.api.docs import operation_id, returns
from tusk.api.wire import API_PREFIX
from tusk.errors import Unauthorized

if TYPE_CHECKING:
    from tusk.pps.webhooks import WebhookService

_BODY = {
    "requestBody": {
        "required": True,
        "description": "GitHub's event payload, signed in X-Hub-Signature-256.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
# (A 422, for specs or files at the pushed commit that cannot be applied, is in the
# docstring: the OpenAPI document drops 422s, which FastAPI would mean for validation.)
_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted and ignored (an event or ref the webhook does not act on)"},
    401: {"description": "No webhook secret set, a missing or wrong signature", "content": _ERROR},
    502: {"description": "The git remote could not be fetched", "content": _ERROR},
}


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def webhook_router(webhooks: WebhookService | None, route_class: type[APIRoute]) -> APIRouter:
    """The webhook routes; with ``webhooks`` None (no service built) every delivery is 401."""
    r = APIRouter(
        prefix=API_PREFIX,
        tags=["webhooks"],
        generate_unique_id_function=operation_id,
        route_class=route_class,
    )

    @r.post("/webhooks/github", responses=_RESPONSES, openapi_extra=_BODY)
    @returns(dict[str, Any])
    def github_webhook(
        body: Annotated[bytes, Depends(_raw_body)],
        x_github_event: Annotated[str | None, Header(description="push, ping, ...")] = None,
        x_github_delivery: Annotated[
            str | None, Header(description="The delivery's id: a redelivery is answered as before")
        ] = None,
        x_hub_signature_256: Annotated[
            str | None, Header(description="sha256=<HMAC-SHA256 of the body with the secret>")
        ] = None,
    ) -> Response:
        """A GitHub delivery: a signed push re-applies the specs or commits the files at that
        SHA, as configured (``TUSK_WEBHOOK_*``); replays of a delivery id do nothing again.

        Answers 200 (done, or ``ping``), 202 (ignored), 401 (signature), 400 (malformed),
        422 (the specs or files at that SHA cannot be applied), 502 (git fetch failed).
        """
        if webhooks is None:
            raise Unauthorized("webhooks are off on this server")
        outcome = webhooks.receive_github(
            x_github_event, x_github_delivery, x_hub_signature_256, body
        )
        headers = {"X-Tusk-Replayed": "true"} if outcome.replayed else None
        return JSONResponse(outcome.body, status_code=outcome.status, headers=headers)

    return r
