"""Erasure, export and retention on the SQL store (:class:`~civicchat.storage.sql.SqlStore`
inherits them)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    and_,
    delete,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from civicchat.clock import Clock
from civicchat.messages import (
    InboundMessage,
    OutboundMessage,
    Text,
    Unsupported,
)
from civicchat.storage.base import (
    ErasureResult,
    EventKind,
    EventState,
    RetentionMode,
)
from civicchat.storage.repositories import (
    SqlTransaction,
)
from civicchat.storage.schema import (
    ContactRow,
    ConversationRow,
    IdentityRow,
    InboxRow,
    MediaRow,
    OutboxRow,
)
from civicchat.storage.statements import (
    ANONYMISED,
    _chunks,
    _contact,
)

_log = logging.getLogger("civicchat.storage")


class SqlPrivacyMixin:
    """The :class:`~civicchat.storage.base.PrivacyStore` half of :class:`SqlStore`."""

    engine: AsyncEngine
    clock: Clock
    is_postgres: bool

    def _begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def _citizen(
        self, conn: AsyncConnection, channel: str, account: str, external_id: str
    ) -> tuple[int | None, list[tuple[str, str, str]], list[int]]:
        contact_id = await conn.scalar(
            select(IdentityRow.contact_id).where(
                IdentityRow.channel == channel,
                IdentityRow.account == account,
                IdentityRow.external_id == external_id,
            )
        )
        identities = [(channel, account, external_id)]
        conv_ids: list[int] = []
        if contact_id is not None:
            identities = [
                (r.channel, r.account, r.external_id)
                for r in await conn.execute(
                    select(IdentityRow).where(IdentityRow.contact_id == contact_id)
                )
            ]
            conv_ids = list(
                await conn.scalars(
                    select(ConversationRow.id).where(ConversationRow.contact_id == contact_id)
                )
            )
        return contact_id, identities, conv_ids

    async def erase_citizen(self, channel: str, account: str, external_id: str) -> ErasureResult:
        """Delete everything about the citizen known as ``external_id``, on every channel.

        Returns what was deleted, including the blob keys of their media: delete those from the
        blob store too (:class:`civicchat.storage.privacy.Privacy` does both).
        """
        async with self._begin() as conn:
            contact_id, identities, conv_ids = await self._citizen(
                conn, channel, account, external_id
            )
            ident = tuple_(InboxRow.channel, InboxRow.account, InboxRow.sender_id).in_(identities)
            event_ids = list(
                await conn.scalars(
                    select(InboxRow.id).where(or_(ident, InboxRow.conversation_id.in_(conv_ids)))
                )
            )
            media = (
                await conn.execute(
                    select(MediaRow.id, MediaRow.blob_key).where(MediaRow.event_id.in_(event_ids))
                )
            ).all()
            if media:
                await conn.execute(delete(MediaRow).where(MediaRow.id.in_([m.id for m in media])))
            out = tuple_(OutboxRow.channel, OutboxRow.account, OutboxRow.recipient_id).in_(
                identities
            )
            out_deleted = await conn.execute(
                delete(OutboxRow).where(or_(out, OutboxRow.conversation_id.in_(conv_ids)))
            )
            in_deleted = 0
            for chunk in _chunks(event_ids):
                in_deleted += (
                    await conn.execute(delete(InboxRow).where(InboxRow.id.in_(chunk)))
                ).rowcount
            if conv_ids:
                await conn.execute(delete(ConversationRow).where(ConversationRow.id.in_(conv_ids)))
            contacts = 0
            if contact_id is not None:
                contacts = (
                    await conn.execute(delete(ContactRow).where(ContactRow.id == contact_id))
                ).rowcount
        return ErasureResult(
            contacts=contacts,
            conversations=len(conv_ids),
            messages=in_deleted + out_deleted.rowcount,
            media=len(media),
            blob_keys=tuple(m.blob_key for m in media if m.blob_key),
        )

    async def export_citizen(self, channel: str, account: str, external_id: str) -> dict[str, Any]:
        """Everything stored about one citizen, as JSON-ready data."""
        async with self.engine.connect() as conn:
            contact_id, identities, conv_ids = await self._citizen(
                conn, channel, account, external_id
            )
            contact = None
            if contact_id is not None:
                row = (
                    await conn.execute(select(ContactRow).where(ContactRow.id == contact_id))
                ).first()
                contact = None if row is None else _contact(row)
            tx = SqlTransaction(conn, self.clock)
            conversations = []
            for cid in conv_ids:
                conv = await tx.conversations.get(cid)
                assert conv is not None
                conversations.append(
                    {
                        **_jsonable(conv),
                        "history": [_jsonable(h) for h in await tx.history.entries(cid)],
                    }
                )
            ident = tuple_(InboxRow.channel, InboxRow.account, InboxRow.sender_id).in_(identities)
            inbound = [
                json.loads(p)
                for p in await conn.scalars(
                    select(InboxRow.payload)
                    .where(ident, InboxRow.kind == EventKind.MESSAGE)
                    .order_by(InboxRow.id)
                )
            ]
            out = tuple_(OutboxRow.channel, OutboxRow.account, OutboxRow.recipient_id).in_(
                identities
            )
            outbound = [
                {**json.loads(r.payload), "status": r.status, "sent_at": _iso(r.sent_at)}
                for r in await conn.execute(select(OutboxRow).where(out).order_by(OutboxRow.id))
            ]
        return {
            "contact": None if contact is None else _jsonable(contact),
            "identities": [
                {"channel": c, "account": a, "external_id": x} for c, a, x in identities
            ],
            "conversations": conversations,
            "inbound_messages": inbound,
            "outbound_messages": outbound,
        }

    async def apply_retention(
        self, account: str, *, older_than: datetime, mode: RetentionMode
    ) -> int:
        """Delete or anonymise the account's conversations with no activity since ``older_than``.

        Finished inbox events (and delivery statuses) older than ``older_than`` are deleted in
        both modes; keep ``older_than`` well beyond the providers' re-delivery window (36 h).
        """
        last = func.coalesce(ConversationRow.last_inbound_at, ConversationRow.created_at)
        async with self._begin() as conn:
            conv_ids = list(
                await conn.scalars(
                    select(ConversationRow.id).where(
                        ConversationRow.account == account, last < older_than
                    )
                )
            )
            for chunk in _chunks(conv_ids):
                if mode is RetentionMode.DELETE:
                    await conn.execute(
                        delete(OutboxRow).where(OutboxRow.conversation_id.in_(chunk))
                    )
                    await conn.execute(delete(InboxRow).where(InboxRow.conversation_id.in_(chunk)))
                    await conn.execute(delete(ConversationRow).where(ConversationRow.id.in_(chunk)))
                else:
                    await self._anonymise(conn, chunk)
            await conn.execute(
                delete(InboxRow).where(
                    InboxRow.account == account,
                    InboxRow.received_at < older_than,
                    or_(
                        InboxRow.kind == EventKind.STATUS,
                        and_(InboxRow.state == EventState.DONE, InboxRow.conversation_id.is_(None)),
                    ),
                )
            )
        if conv_ids:
            _log.info("retention: %s %d conversation(s) of %s", mode.value, len(conv_ids), account)
        return len(conv_ids)

    async def _anonymise(self, conn: AsyncConnection, conv_ids: Sequence[int]) -> None:
        for row in await conn.execute(
            select(InboxRow.id, InboxRow.payload, InboxRow.kind).where(
                InboxRow.conversation_id.in_(conv_ids), InboxRow.sender_id != ANONYMISED
            )
        ):
            if row.kind != EventKind.MESSAGE:
                continue
            msg = InboundMessage.model_validate_json(row.payload)
            msg = msg.model_copy(
                update={
                    "sender": msg.sender.model_copy(update={"id": ANONYMISED, "name": None}),
                    "content": Unsupported(provider_type=msg.content.kind, reason=ANONYMISED),
                }
            )
            await conn.execute(
                update(InboxRow)
                .where(InboxRow.id == row.id)
                .values(payload=msg.model_dump_json(), sender_id=ANONYMISED)
            )
        for orow in await conn.execute(
            select(OutboxRow.id, OutboxRow.payload).where(
                OutboxRow.conversation_id.in_(conv_ids), OutboxRow.recipient_id != ANONYMISED
            )
        ):
            out = OutboundMessage.model_validate_json(orow.payload)
            out = out.model_copy(
                update={"recipient_id": ANONYMISED, "content": Text(body=f"[{ANONYMISED}]")}
            )
            await conn.execute(
                update(OutboxRow)
                .where(OutboxRow.id == orow.id)
                .values(payload=out.model_dump_json(), recipient_id=ANONYMISED)
            )
        await conn.execute(
            update(ConversationRow)
            .where(ConversationRow.id.in_(conv_ids))
            .values(recipient_id=ANONYMISED, contact_id=None, data={})
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _jsonable(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in record.__slots__:
        value = getattr(record, name)
        if isinstance(value, datetime | date):
            value = value.isoformat()
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out
