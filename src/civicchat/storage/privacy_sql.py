"""Erasure, export and retention on the SQL store (:class:`~civicchat.storage.sql.SqlStore`
inherits them).

Media bytes are content-addressed (:func:`~civicchat.storage.media.media_blob_key`): two
citizens who send the same photo share one blob. Erasure and retention therefore hand back for
deletion only the blobs that nothing still names once their rows are gone
(:meth:`SqlPrivacyMixin.blob_keys_in_use`): no media row by ``blob_key``, no web chat media row
by the SHA-256 in its media id (not downloaded yet), no web chat message still waiting in the
inbox. The bytes themselves go through :meth:`SqlPrivacyMixin.delete_blob_if_unused`, which checks
again while it holds the key against a media worker naming the same bytes meanwhile.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    and_,
    delete,
    exists,
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
    BlobStore,
    ErasureResult,
    EventKind,
    EventState,
    RetentionMode,
)
from civicchat.storage.repositories import (
    SqlTransaction,
    hold_blob,
)
from civicchat.storage.schema import (
    CaseRow,
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

#: The web chat's channel name (``civicchat.channels.webchat.CHANNEL``; storage does not import
#: channels). Its media ids start with the SHA-256 of the bytes the page uploaded, which are in
#: the blob store before any media row names them.
_WEBCHAT = "webchat"
_UPLOAD_ID = re.compile(r"^([0-9a-f]{64})-")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class RetentionOutcome:
    """What :meth:`SqlPrivacyMixin.retain` did on one account."""

    conversations: int  # deleted or anonymised
    media: int = 0  # media rows deleted
    blob_keys: tuple[str, ...] = ()  # blobs no row names any more: delete them from the store


def upload_blob_key(channel: str, account: str, media_id: str) -> str | None:
    """The blob key of a web chat upload from its media id (``<sha256>-<suffix>``), else None.

    The page's photo is in the blob store from the moment it is accepted, before the media
    worker downloads it and sets ``blob_key`` on its row.
    """
    found = _UPLOAD_ID.match(media_id) if channel == _WEBCHAT else None
    if found is None:
        return None
    from civicchat.storage.media import media_blob_key  # media imports the store: not at the top

    return media_blob_key(channel, account, found.group(1))


def _split_key(key: str) -> tuple[str, str, str] | None:
    """``(channel, account, sha256)`` of a :func:`~civicchat.storage.media.media_blob_key`."""
    parts = key.split("/")
    if len(parts) < 4 or not _SHA256.match(parts[-1]) or parts[-2] != parts[-1][:2]:
        return None
    return parts[0], "/".join(parts[1:-2]), parts[-1]


async def _keys_in_use(conn: AsyncConnection, keys: Iterable[str]) -> set[str]:
    """Those of ``keys`` that a media row or a web chat message waiting in the inbox names."""
    wanted = sorted(set(keys))
    used: set[str] = set()
    for chunk in _chunks(wanted):
        used.update(
            k
            for k in await conn.scalars(
                select(MediaRow.blob_key).where(MediaRow.blob_key.in_(chunk)).distinct()
            )
            if k is not None
        )
    for key in wanted:
        parts = _split_key(key)
        if key in used or parts is None or parts[0] != _WEBCHAT:
            continue
        channel, account, sha = parts
        named = await conn.scalar(
            select(MediaRow.id)
            .where(
                MediaRow.channel == channel,
                MediaRow.account == account,
                MediaRow.media_id.startswith(f"{sha}-"),
            )
            .limit(1)
        )
        if named is None:
            # Accepted, not yet processed (or parked for an admin): its media row is to come.
            named = await conn.scalar(
                select(InboxRow.id)
                .where(
                    InboxRow.channel == channel,
                    InboxRow.account == account,
                    InboxRow.kind == EventKind.MESSAGE,
                    InboxRow.state != EventState.DONE,
                    InboxRow.payload.contains(sha),
                )
                .limit(1)
            )
        if named is not None:
            used.add(key)
    return used


def _media_key(row: Any) -> str | None:
    key: str | None = row.blob_key or upload_blob_key(row.channel, row.account, row.media_id)
    return key


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

        Returns what was deleted, including the blob keys of their media that no other row
        names (another citizen's identical photo shares the blob): delete those from the blob
        store too (:class:`civicchat.storage.privacy.Privacy` does both).
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
                    select(
                        MediaRow.id,
                        MediaRow.blob_key,
                        MediaRow.channel,
                        MediaRow.account,
                        MediaRow.media_id,
                    ).where(MediaRow.event_id.in_(event_ids))
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
            # Asked after the deletes, in the same transaction: only other citizens' rows remain.
            keys = {k for k in map(_media_key, media) if k}
            orphans = keys - await _keys_in_use(conn, keys)
        return ErasureResult(
            contacts=contacts,
            conversations=len(conv_ids),
            messages=in_deleted + out_deleted.rowcount,
            media=len(media),
            blob_keys=tuple(sorted(orphans)),
        )

    async def delete_blob_if_unused(self, key: str, blobs: BlobStore) -> bool:
        """Delete ``key``'s bytes from ``blobs`` unless a row names them; True if deleted.

        The check and the deletion hold the key (``MediaRepository.hold_blob``): a media worker
        that found the same bytes already stored, for another citizen's identical photo, names
        them before this looks, or stores them again after this deleted them; never a row
        naming bytes that are gone.
        """
        async with self._begin() as conn:
            await hold_blob(conn, key)
            if await _keys_in_use(conn, [key]):
                return False
            await blobs.delete(key)
            return True

    async def keep_blob(
        self, key: str, data: bytes, blobs: BlobStore, *, content_type: str | None = None
    ) -> None:
        """Make sure ``data`` is stored under ``key`` once a committed row or message names it,
        holding the key against :meth:`delete_blob_if_unused` (which may have deleted bytes
        stored a moment earlier, before anything named them)."""
        async with self._begin() as conn:
            await hold_blob(conn, key)
            if not await blobs.exists(key):
                await blobs.put(key, data, content_type=content_type)

    async def blob_keys_in_use(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` still named by a media row (its ``blob_key``, or a web chat media
        id not downloaded yet) or by a web chat message not yet processed."""
        async with self.engine.connect() as conn:
            return await _keys_in_use(conn, keys)

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
        """Delete or anonymise the account's conversations with no activity since ``older_than``;
        returns how many. :meth:`retain` does it and also says which blobs to delete."""
        return (await self.retain(account, older_than=older_than, mode=mode)).conversations

    async def retain(
        self, account: str, *, older_than: datetime, mode: RetentionMode
    ) -> RetentionOutcome:
        """Delete or anonymise the account's conversations with no activity since ``older_than``.

        In both modes their media rows go (an anonymised conversation keeps no photo), and so
        do older media rows whose message is gone (deleted before this version): except the
        media of an incident case not yet anonymised, which case retention handles. The blob
        keys no remaining row names are in the outcome, for the caller to delete.

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
            media: dict[int, Any] = {}
            for chunk in _chunks(conv_ids):
                events = select(InboxRow.id).where(InboxRow.conversation_id.in_(chunk))
                for row in await conn.execute(
                    _media_columns().where(MediaRow.event_id.in_(events))
                ):
                    media[row.id] = row
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
            gone = ~exists().where(InboxRow.id == MediaRow.event_id)
            for row in await conn.execute(
                _media_columns().where(
                    MediaRow.account == account,
                    MediaRow.event_id.is_not(None),
                    MediaRow.created_at < older_than,
                    gone,
                )
            ):
                media[row.id] = row
            doomed = []
            if media:
                kept, unreadable = await _case_media(conn, account)
                doomed = [
                    m
                    for m in media.values()
                    if (m.channel, m.media_id) not in kept
                    and not any(m.media_id in raw for raw in unreadable)
                ]
            for chunk in _chunks([m.id for m in doomed]):
                await conn.execute(delete(MediaRow).where(MediaRow.id.in_(chunk)))
            keys = {k for k in map(_media_key, doomed) if k}
            orphans = keys - await _keys_in_use(conn, keys)
        if conv_ids or doomed:
            _log.info(
                "retention: %s %d conversation(s) of %s, %d media deleted",
                mode.value,
                len(conv_ids),
                account,
                len(doomed),
            )
        return RetentionOutcome(len(conv_ids), len(doomed), tuple(sorted(orphans)))

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


def _media_columns() -> Any:
    return select(
        MediaRow.id, MediaRow.blob_key, MediaRow.channel, MediaRow.account, MediaRow.media_id
    )


async def _case_media(
    conn: AsyncConnection, account: str
) -> tuple[Collection[tuple[str, str]], list[str]]:
    """``(channel, media id)`` of the media that the account's not yet anonymised cases show,
    and the raw data of cases that do not read as JSON (a media id found in it is kept too).

    Read only when retention has media to delete; anonymising a case drops its media, and the
    next retention run deletes them.
    """
    found: set[tuple[str, str]] = set()
    unreadable: list[str] = []
    for data in await conn.scalars(
        select(CaseRow.data).where(CaseRow.account == account, CaseRow.anonymised_at.is_(None))
    ):
        try:
            case = json.loads(data)
            for item in case.get("media") or ():
                channel = item.get("channel") or case.get("channel") or ""
                found.add((str(channel), str(item["ref"])))
        except (ValueError, TypeError, KeyError, AttributeError):
            unreadable.append(data)
    return found, unreadable


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
