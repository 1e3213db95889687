"""SQL for webhook deliveries (mixed into ``MetaTx``): which were handled, and the answer.

A delivery row is written in the same transaction as what the delivery did (see
``tusk.pps.webhooks``), so a row exists exactly when the action's effects do.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.values import frozen


@frozen
class WebhookDeliveryRecord:
    source: str  # "github"
    id: str  # the sender's delivery id (GitHub's X-GitHub-Delivery)
    event: str
    status: int  # the HTTP status answered
    response: str  # the JSON body answered
    received_at: float


class WebhookTxMixin:
    conn: Connection
    is_sqlite: bool

    def get_webhook_delivery(self, source: str, delivery_id: str) -> WebhookDeliveryRecord | None:
        c = t.webhook_deliveries.c
        row = self.conn.execute(
            sa.select(t.webhook_deliveries).where(c.source == source, c.id == delivery_id)
        ).first()
        if row is None:
            return None
        return WebhookDeliveryRecord(
            row.source, row.id, row.event, row.status, row.response, row.received_at
        )

    def insert_webhook_delivery(self, record: WebhookDeliveryRecord) -> None:
        self.conn.execute(
            t.webhook_deliveries.insert().values(
                source=record.source,
                id=record.id,
                event=record.event,
                status=record.status,
                response=record.response,
                received_at=record.received_at,
            )
        )
