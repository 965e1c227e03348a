"""What a reloaded chat page shows again: both sides of the visitor's conversation, in order.

The citizen's messages are read from the durable inbox (by sender: a message not yet handled
by a worker is there too), the service's from the outbox rows of the same conversations, once
sent (a message still queued reaches the page live, a failed one never did). The page then
listens to the live stream and skips the events whose ``id`` it already showed, so nothing
appears twice and nothing sent meanwhile is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from civicchat.messages import DeliveryStatus, InboundMessage, OutboundMessage
from civicchat.storage.base import EventKind
from civicchat.storage.schema import InboxRow, OutboxRow

__all__ = ["HistoryEntry", "SqlWebChatHistory", "WebChatHistory", "history_json"]

logger = logging.getLogger("civicchat.service")

CHANNEL = "webchat"
_SHOWN = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ, DeliveryStatus.PLAYED)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One message of the visitor's chat: ``direction`` is ``"in"`` (the citizen's) or ``"out"``."""

    direction: str
    at: datetime
    id: str | None  # the provider message id: the page's own id, or the live event's id
    content: Mapping[str, Any]  # ``content.model_dump(mode="json")``, as the live events carry


class WebChatHistory(Protocol):
    """Where the chat page's history comes from (:class:`SqlWebChatHistory`)."""

    async def messages(self, account: str, visitor: str, *, limit: int) -> list[HistoryEntry]:
        """The visitor's latest ``limit`` messages on ``account``, both sides, oldest first."""
        ...


class SqlWebChatHistory:
    """:class:`WebChatHistory` from the service's database (SQLite or PostgreSQL).

    It only reads: a page load never creates a contact or a conversation.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def messages(self, account: str, visitor: str, *, limit: int) -> list[HistoryEntry]:
        keyed: list[tuple[datetime, int, int, HistoryEntry]] = []
        async with self.engine.connect() as conn:
            inbound = await conn.execute(
                select(InboxRow.id, InboxRow.payload, InboxRow.conversation_id)
                .where(
                    InboxRow.channel == CHANNEL,
                    InboxRow.account == account,
                    InboxRow.sender_id == visitor,
                    InboxRow.kind == EventKind.MESSAGE,
                )
                .order_by(InboxRow.id.desc())
                .limit(limit)
            )
            conversations: set[int] = set()
            for row in inbound:
                if row.conversation_id is not None:
                    conversations.add(row.conversation_id)
                try:
                    msg = InboundMessage.model_validate_json(row.payload)
                except ValidationError:  # an anonymised or foreign row: skip, never fail the page
                    continue
                entry = HistoryEntry(
                    "in",
                    msg.timestamp,
                    msg.provider_message_id,
                    msg.content.model_dump(mode="json"),
                )
                keyed.append((msg.timestamp, 0, row.id, entry))
            if conversations:
                outbound = await conn.execute(
                    select(OutboxRow)
                    .where(
                        OutboxRow.conversation_id.in_(sorted(conversations)),
                        OutboxRow.channel == CHANNEL,
                        OutboxRow.account == account,
                        OutboxRow.recipient_id == visitor,
                        OutboxRow.status.in_([s.value for s in _SHOWN]),
                    )
                    .order_by(OutboxRow.id.desc())
                    .limit(limit)
                )
                for orow in outbound:
                    try:
                        out = OutboundMessage.model_validate_json(orow.payload)
                    except ValidationError:
                        continue
                    at = orow.sent_at or orow.created_at
                    entry = HistoryEntry(
                        "out", at, orow.provider_message_id, out.content.model_dump(mode="json")
                    )
                    keyed.append((at, 1, orow.id, entry))
        keyed.sort(key=lambda k: k[:3])
        return [k[3] for k in keyed[-limit:]]


def history_json(entries: list[HistoryEntry]) -> dict[str, Any]:
    """The page's history: the messages, each with its ``id`` (a reply's is its live event's).

    The page skips a live event whose ``id`` is among them. There is no time to listen from:
    a reply's time here is when the outbox marked it sent, later than its live event's own.
    """
    return {
        "messages": [
            {"direction": e.direction, "at": e.at.isoformat(), "id": e.id, "content": e.content}
            for e in entries
        ]
    }
