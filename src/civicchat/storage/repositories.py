"""The repositories of a :class:`~civicchat.storage.sql.SqlTransaction`: contacts,
conversations, history, operators, assignments, audit, keyword counts and media."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    and_,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from civicchat.clock import Clock
from civicchat.exceptions import StorageError
from civicchat.messages import (
    DeliveryStatus,
    InboundMessage,
    OutboundMessage,
)
from civicchat.storage.base import (
    Assignment,
    AssignmentRepository,
    AuditEntry,
    AuditLog,
    Contact,
    ContactRepository,
    Conversation,
    ConversationHistory,
    ConversationRepository,
    EventKind,
    Identity,
    KeywordCount,
    KeywordStats,
    LifecycleEntry,
    MediaRef,
    MediaRepository,
    MediaState,
    MessageRecord,
    Operator,
    OperatorRepository,
    OperatorRole,
    Presence,
)
from civicchat.storage.schema import (
    AssignmentRow,
    AuditRow,
    ContactRow,
    ConversationRow,
    HistoryRow,
    IdentityRow,
    InboxRow,
    KeywordCountRow,
    MediaRow,
    OperatorRow,
    OutboxRow,
)
from civicchat.storage.statements import (
    _CONV_FIELDS,
    _ENQUEUE_ARRAYS,
    _PG_COMPLETE_MANY,
    _PG_ENQUEUE,
    LeaseLostError,
    _clip,
    _contact,
    _conversation,
    _insert,
    _media,
    _operator,
    _pg_arrays,
    _stmts,
)
from civicchat.storage.unit_of_work import (
    KEEPS_MAP,
    PG_NEW_SENDER,
    PG_NEW_SENDER_CONVERSATION,
    SenderKey,
    UnitOfWork,
)


class _Repo:
    def __init__(self, conn: AsyncConnection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock


class SqlContacts(_Repo):
    def __init__(self, conn: AsyncConnection, clock: Clock, uow: UnitOfWork | None = None) -> None:
        super().__init__(conn, clock)
        self._uow = uow or UnitOfWork(conn)

    async def identify(
        self,
        channel: str,
        account: str,
        external_id: str,
        *,
        name: str | None = None,
        language: str | None = None,
    ) -> Contact:
        """The contact with this identity, created if new (``name`` fills an empty name)."""
        uow = self._uow
        key = (channel, account, external_id)
        if uow.active and key in uow.contacts:
            contact: Contact | None = uow.contacts[key]
        else:
            row = (
                await self._conn.execute(
                    _stmts(self._conn)["identify"],
                    {"channel": channel, "account": account, "external_id": external_id},
                    execution_options=KEEPS_MAP,
                )
            ).first()
            contact = None if row is None else _contact(row)
        if contact is not None:
            if name and not contact.name:
                contact = Contact(contact.id, name, contact.language, contact.created_at)
                if not (uow.active and uow.renamed(contact)):
                    await self._conn.execute(
                        update(ContactRow).where(ContactRow.id == contact.id).values(name=name),
                        execution_options=KEEPS_MAP,
                    )
            if uow.active:
                uow.contacts[key] = contact
            return contact
        now = self._clock.now()
        if uow.active and language is None:
            # Written with its first conversation (see SqlConversations.create).
            new = uow.new_sender(key, name, now)
            if new is not None:
                return new
        stmts = _stmts(self._conn)
        if language is None and self._conn.dialect.name == "postgresql":
            # Contact and identity in one statement.
            contact_id = await self._conn.scalar(
                PG_NEW_SENDER,
                {
                    "name": name,
                    "now": now,
                    "channel": channel,
                    "account": account,
                    "external_id": external_id,
                },
                execution_options=KEEPS_MAP,
            )
        else:
            contact_id = await self._conn.scalar(
                stmts["new_contact"],
                {"name": name, "language": language, "now": now},
                execution_options=KEEPS_MAP,
            )
            assert contact_id is not None
            await self._conn.execute(
                stmts["new_identity"],
                {
                    "contact_id": contact_id,
                    "channel": channel,
                    "account": account,
                    "external_id": external_id,
                },
                execution_options=KEEPS_MAP,
            )
        assert contact_id is not None
        contact = Contact(contact_id, name, language, now)
        if uow.active:
            uow.contacts[key] = contact
            uow.latest[(channel, account, contact_id)] = None  # a new contact has none yet
        return contact

    async def get(self, contact_id: int) -> Contact | None:
        row = (
            await self._conn.execute(select(ContactRow).where(ContactRow.id == contact_id))
        ).first()
        return None if row is None else _contact(row)

    async def update(self, contact: Contact) -> None:
        await self._conn.execute(
            update(ContactRow)
            .where(ContactRow.id == contact.id)
            .values(name=contact.name, language=contact.language)
        )

    async def identities(self, contact_id: int) -> list[Identity]:
        rows = await self._conn.execute(
            select(IdentityRow).where(IdentityRow.contact_id == contact_id).order_by(IdentityRow.id)
        )
        return [Identity(r.contact_id, r.channel, r.account, r.external_id) for r in rows]


class SqlConversations(_Repo):
    def __init__(self, conn: AsyncConnection, clock: Clock, uow: UnitOfWork | None = None) -> None:
        super().__init__(conn, clock)
        self._uow = uow or UnitOfWork(conn)

    async def get(self, conversation_id: int) -> Conversation | None:
        uow = self._uow
        if uow.active:
            found = uow.conversation(conversation_id)
            if found is not None:
                return found
        stmt = select(ConversationRow).where(ConversationRow.id == conversation_id)
        if uow.active and self._locks_rows:
            # Mapped, it may be saved at the end of the batch: locked now, as the batch's read
            # locks the senders' conversations, so that a console change cannot come between.
            stmt = stmt.with_for_update()
        row = (
            await self._conn.execute(
                stmt,
                execution_options=KEEPS_MAP,  # not in the map: no pending save of it
            )
        ).first()
        if row is None:
            return None
        return uow.loaded(row) if uow.active else _conversation(row)

    @property
    def _locks_rows(self) -> bool:
        return self._conn.dialect.name == "postgresql"

    async def latest_for(self, channel: str, account: str, contact_id: int) -> Conversation | None:
        uow = self._uow
        key = (channel, account, contact_id)
        if uow.active and key in uow.latest:
            latest = uow.latest[key]
            return None if latest is None else uow.conversation(latest)
        # Pending saves need not be written first: they do not change which one is the
        # latest, and the map's copy of it (newer) is what we return.
        stmt = _stmts(self._conn)["latest"]
        if uow.active and self._locks_rows:
            stmt = stmt.with_for_update()  # mapped: see get()
        row = (
            await self._conn.execute(
                stmt,
                {"channel": channel, "account": account, "contact_id": contact_id},
                execution_options=KEEPS_MAP,
            )
        ).first()
        if uow.active:
            return uow.loaded_latest(key, row)
        return None if row is None else _conversation(row)

    async def create(
        self, *, channel: str, account: str, contact_id: int, recipient_id: str, state: str
    ) -> Conversation:
        now = self._clock.now()
        params: dict[str, Any] = {
            "channel": channel,
            "account": account,
            "contact_id": contact_id,
            "recipient_id": recipient_id,
            "state": state,
            "now": now,
        }
        uow = self._uow

        def opened(conversation_id: int) -> Conversation:
            return Conversation(
                id=conversation_id,
                account=account,
                channel=channel,
                contact_id=contact_id,
                recipient_id=recipient_id,
                state=state,
                created_at=now,
            )

        drawn = uow.new_conversation_ids.pop((channel, account, contact_id), None)
        if uow.active and drawn is not None:
            # Its id drawn by the batch's read: written with the batch's other new rows.
            conv = opened(drawn)
            uow.create_later(conv)
            return conv
        new = uow.take_new_sender(contact_id) if uow.active else None
        if new is not None:
            # A new sender's contact, identity and conversation: one statement.
            i_channel, i_account, external_id = new.key
            params.update(
                name=new.contact.name,
                contact_created_at=new.contact.created_at,
                i_channel=i_channel,
                i_account=i_account,
                external_id=external_id,
            )
            stmt: Any = PG_NEW_SENDER_CONVERSATION
        else:
            params["data"] = {}
            stmt = _stmts(self._conn)["new_conversation"]
        new_id = await self._conn.scalar(stmt, params, execution_options=KEEPS_MAP)
        assert new_id is not None
        conv = opened(new_id)
        if uow.active:
            uow.created(conv)
        return conv

    async def save(self, conversation: Conversation) -> None:
        if self._uow.active and self._uow.save(conversation):
            return  # written by the unit of work's flush, with the batch's other saves
        values = {f"v_{f}": getattr(conversation, f) for f in _CONV_FIELDS}
        values["v_data"] = dict(conversation.data)
        values["c_id"] = conversation.id
        result = await self._conn.execute(_stmts(self._conn)["save_conv"], values)
        if result.rowcount != 1:
            raise StorageError(f"conversation {conversation.id} does not exist")

    async def list(
        self, account: str, *, states: Sequence[str] | None = None, limit: int = 100
    ) -> list[Conversation]:
        stmt = select(ConversationRow).where(ConversationRow.account == account)
        if states is not None:
            stmt = stmt.where(ConversationRow.state.in_(list(states)))
        stmt = stmt.order_by(
            func.coalesce(ConversationRow.last_inbound_at, ConversationRow.created_at).desc(),
            ConversationRow.id.desc(),
        ).limit(limit)
        return [_conversation(r) for r in await self._conn.execute(stmt)]

    async def queue_position(self, conversation: Conversation) -> int | None:
        c = conversation
        if c.state != "queued" or c.assigned_operator is not None or c.queued_at is None:
            return None
        row = ConversationRow
        ahead = await self._conn.scalar(
            select(func.count())
            .select_from(row)
            .where(
                row.account == c.account,
                row.state == "queued",
                row.assigned_operator.is_(None),
                or_(
                    row.queued_at < c.queued_at,
                    and_(row.queued_at == c.queued_at, row.id < c.id),
                ),
            )
        )
        return int(ahead or 0) + 1


class SqlHistory(_Repo):
    async def record(self, entry: LifecycleEntry) -> None:
        await self._conn.execute(
            _insert(self._conn, HistoryRow).values(
                conversation_id=entry.conversation_id,
                at=entry.at,
                actor=entry.actor,
                from_state=entry.from_state,
                to_state=entry.to_state,
                note=entry.note,
            ),
        )

    async def entries(self, conversation_id: int) -> list[LifecycleEntry]:
        rows = await self._conn.execute(
            select(HistoryRow)
            .where(HistoryRow.conversation_id == conversation_id)
            .order_by(HistoryRow.id)
        )
        return [
            LifecycleEntry(r.conversation_id, r.at, r.actor, r.from_state, r.to_state, r.note)
            for r in rows
        ]


class SqlOperators(_Repo):
    async def add_operator(
        self,
        *,
        account: str,
        name: str,
        login: str,
        password_hash: str,
        role: OperatorRole = OperatorRole.OPERATOR,
        languages: Sequence[str] = ("ca", "es"),
        teams: Sequence[str] = (),
        capacity: int = 5,
        email: str | None = None,
    ) -> Operator:
        for item in (*languages, *teams):
            if "," in item:
                raise ValueError(f"a language or team name cannot contain a comma: {item!r}")
        values = {
            "account": account,
            "name": name,
            "login": login,
            "email": email,
            "password_hash": password_hash,
            "role": OperatorRole(role).value,
            "languages": ",".join(languages),
            "teams": ",".join(teams),
            "capacity": capacity,
            "presence": Presence.OFFLINE.value,
        }
        new_id = await self._conn.scalar(
            _insert(self._conn, OperatorRow).values(**values).returning(OperatorRow.id)
        )
        assert new_id is not None
        return _operator(_Values(id=new_id, **values))

    async def get_operator(self, operator_id: int) -> Operator | None:
        row = (
            await self._conn.execute(select(OperatorRow).where(OperatorRow.id == operator_id))
        ).first()
        return None if row is None else _operator(row)

    async def by_login(self, login: str) -> Operator | None:
        row = (
            await self._conn.execute(select(OperatorRow).where(OperatorRow.login == login))
        ).first()
        return None if row is None else _operator(row)

    async def operators(self, account: str) -> list[Operator]:
        rows = await self._conn.execute(
            select(OperatorRow).where(OperatorRow.account == account).order_by(OperatorRow.id)
        )
        return [_operator(r) for r in rows]

    async def save_operator(self, operator: Operator) -> None:
        await self._conn.execute(
            update(OperatorRow)
            .where(OperatorRow.id == operator.id)
            .values(
                account=operator.account,
                name=operator.name,
                login=operator.login,
                email=operator.email,
                password_hash=operator.password_hash,
                role=operator.role.value,
                languages=",".join(operator.languages),
                teams=",".join(operator.teams),
                capacity=operator.capacity,
                presence=operator.presence.value,
            )
        )


class _Values:
    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


class SqlAssignments(_Repo):
    async def assign(self, conversation_id: int, operator_id: int, at: datetime) -> Assignment:
        await self.release(conversation_id, at)
        await self._conn.execute(
            _insert(self._conn, AssignmentRow).values(
                conversation_id=conversation_id, operator_id=operator_id, assigned_at=at
            )
        )
        return Assignment(conversation_id, operator_id, at)

    async def release(self, conversation_id: int, at: datetime) -> None:
        await self._conn.execute(
            update(AssignmentRow)
            .where(
                AssignmentRow.conversation_id == conversation_id,
                AssignmentRow.released_at.is_(None),
            )
            .values(released_at=at)
        )

    async def open_assignments(self, operator_id: int) -> list[Assignment]:
        rows = await self._conn.execute(
            select(AssignmentRow)
            .where(AssignmentRow.operator_id == operator_id, AssignmentRow.released_at.is_(None))
            .order_by(AssignmentRow.id)
        )
        return [Assignment(r.conversation_id, r.operator_id, r.assigned_at) for r in rows]


class SqlAudit(_Repo):
    async def audit(self, entry: AuditEntry) -> None:
        await self._conn.execute(
            _insert(self._conn, AuditRow).values(
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                account=entry.account,
                details=dict(entry.details),
            )
        )

    async def audit_entries(
        self, account: str | None = None, *, since: datetime | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        stmt = select(AuditRow).order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit)
        if account is not None:
            stmt = stmt.where(AuditRow.account == account)
        if since is not None:
            stmt = stmt.where(AuditRow.at >= since)
        return [
            AuditEntry(r.at, r.actor, r.action, r.account, dict(r.details), r.id)
            for r in await self._conn.execute(stmt)
        ]


KEYWORD_COUNT_SHARDS = 16
"""Rows a (account, keyword, day) count is spread over (see migration 0006)."""


class SqlKeywordStats(_Repo):
    """Keyword counts. Counting is buffered and written, summed per keyword and day, when the
    transaction commits (:meth:`SqlStore.transaction` calls :meth:`flush`): a batch of messages
    costs one statement per keyword instead of one per message."""

    def __init__(self, conn: AsyncConnection, clock: Clock) -> None:
        super().__init__(conn, clock)
        self._pending: dict[tuple[str, str, date], int] = {}

    async def count_keyword(self, account: str, keyword_id: str, day: date, by: int = 1) -> None:
        key = (account, keyword_id, day)
        self._pending[key] = self._pending.get(key, 0) + by

    async def flush(self) -> None:
        """Write the buffered counts (part of the transaction)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        # One shard for this transaction's counts: another transaction writing the same
        # keyword most likely takes another row, and neither waits for the other's commit.
        shard = random.randrange(KEYWORD_COUNT_SHARDS)
        await self._conn.execute(
            _stmts(self._conn)["count_keyword"],
            [
                {"account": account, "keyword_id": keyword_id, "day": day, "shard": shard, "by": by}
                for (account, keyword_id, day), by in sorted(pending.items())
            ],
            execution_options=KEEPS_MAP,
        )

    async def keyword_counts(self, account: str, since: date, until: date) -> list[KeywordCount]:
        await self.flush()
        k = KeywordCountRow
        rows = await self._conn.execute(
            select(k.keyword_id, k.day, func.sum(k.count))
            .where(k.account == account, k.day >= since, k.day <= until)
            .group_by(k.day, k.keyword_id)
            .order_by(k.day, k.keyword_id)
        )
        return [KeywordCount(account, keyword_id, day, int(n)) for keyword_id, day, n in rows]


async def hold_blob(conn: AsyncConnection, blob_key: str) -> None:
    """Hold ``blob_key`` until ``conn``'s transaction ends (see ``MediaRepository.hold_blob``).

    PostgreSQL: a transaction-level advisory lock on the key's hash. SQLite: nothing to do, a
    write transaction already holds the database's single writer (``BEGIN IMMEDIATE``).
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"civicchat-blob:{blob_key}"},
        )


class SqlMedia(_Repo):
    async def hold_blob(self, blob_key: str) -> None:
        await hold_blob(self._conn, blob_key)

    async def add_media(
        self,
        channel: str,
        account: str,
        media_id: str,
        *,
        mime_type: str | None,
        event_id: int | None,
    ) -> MediaRef:
        now = self._clock.now()
        await self._conn.execute(
            _insert(self._conn, MediaRow)
            .values(
                channel=channel,
                account=account,
                media_id=media_id,
                event_id=event_id,
                state=MediaState.PENDING.value,
                attempts=0,
                created_at=now,
                next_attempt_at=now,
                mime_type=mime_type,
            )
            .on_conflict_do_nothing(index_elements=["channel", "account", "media_id"])
        )
        found = await self.get_media(channel, account, media_id)
        assert found is not None
        return found

    async def get_media(self, channel: str, account: str, media_id: str) -> MediaRef | None:
        """The media with this provider id, or None when it was never recorded."""
        row = (
            await self._conn.execute(
                select(MediaRow).where(
                    MediaRow.channel == channel,
                    MediaRow.account == account,
                    MediaRow.media_id == media_id,
                )
            )
        ).first()
        return None if row is None else _media(row)

    async def claim_media(
        self, worker_id: str, *, limit: int, lease_seconds: float
    ) -> list[MediaRef]:
        now = self._clock.now()
        m = MediaRow.__table__
        query = (
            select(m.c.id)
            .where(
                m.c.state == MediaState.PENDING,
                m.c.next_attempt_at <= now,
                or_(m.c.lease_until.is_(None), m.c.lease_until <= now),
            )
            .order_by(m.c.id)
            .limit(limit)
        )
        if self._conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=m)
        ids = list(await self._conn.scalars(query))
        if not ids:
            return []
        rows = await self._conn.execute(
            update(MediaRow)
            .where(MediaRow.id.in_(ids))
            .values(
                worker_id=worker_id,
                lease_until=now + timedelta(seconds=lease_seconds),
                attempts=MediaRow.attempts + 1,
            )
            .returning(*m.c)
        )
        return sorted((_media(r) for r in rows), key=lambda r: r.id)

    async def media_stored(
        self, media_ref_id: int, *, blob_key: str, size: int, sha256: str, mime_type: str | None
    ) -> None:
        await self._conn.execute(
            update(MediaRow)
            .where(MediaRow.id == media_ref_id)
            .values(
                state=MediaState.STORED.value,
                blob_key=blob_key,
                size=size,
                sha256=sha256,
                mime_type=mime_type,
                lease_until=None,
                worker_id=None,
                next_attempt_at=None,
                last_error=None,
            )
        )

    async def media_failed(
        self, media_ref_id: int, error: str, *, retry_at: datetime | None
    ) -> None:
        await self._conn.execute(
            update(MediaRow)
            .where(MediaRow.id == media_ref_id)
            .values(
                state=(MediaState.PENDING if retry_at else MediaState.FAILED).value,
                next_attempt_at=retry_at,
                lease_until=None,
                worker_id=None,
                last_error=_clip(error),
            )
        )


@dataclass(frozen=True, slots=True)
class PendingReply:
    """The replies to one inbound event, for :meth:`SqlTransaction.enqueue_many`."""

    messages: Sequence[OutboundMessage]
    key_prefix: str
    conversation_id: int | None = None
    inbound_event_id: int | None = None


def _outbox_values(
    m: OutboundMessage,
    key: str,
    conversation_id: int | None,
    inbound_event_id: int | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "key": key,
        "inbound_event_id": inbound_event_id,
        "conversation_id": conversation_id,
        "channel": m.channel,
        "account": m.account,
        "recipient_id": m.recipient_id,
        "payload": m.model_dump_json(),
        "status": DeliveryStatus.QUEUED.value,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


class SqlTransaction:
    """One database transaction with every repository (see :class:`~.base.Transaction`)."""

    def __init__(self, conn: AsyncConnection, clock: Clock) -> None:
        self.connection = conn
        self._clock = clock
        self.wrote_outbox = False
        """True once :meth:`enqueue` wrote a message (the store wakes its senders on commit)."""
        self._uow = UnitOfWork(conn)
        self.contacts: ContactRepository = SqlContacts(conn, clock, self._uow)
        self.conversations: ConversationRepository = SqlConversations(conn, clock, self._uow)
        self.history: ConversationHistory = SqlHistory(conn, clock)
        self.operators: OperatorRepository = SqlOperators(conn, clock)
        self.assignments: AssignmentRepository = SqlAssignments(conn, clock)
        self.audit: AuditLog = SqlAudit(conn, clock)
        self._keywords = SqlKeywordStats(conn, clock)
        self.keywords: KeywordStats = self._keywords
        self.media: MediaRepository = SqlMedia(conn, clock)

    async def flush(self) -> None:
        """Write what the repositories buffered (conversation saves of a unit of work, keyword
        counts); called before the commit."""
        await self._uow.flush()
        await self._keywords.flush()

    @asynccontextmanager
    async def unit_of_work(self, senders: Iterable[SenderKey] = ()) -> AsyncIterator[None]:
        """Keep contacts and conversations in an identity map and the conversation saves for
        one statement at the end (see :mod:`civicchat.storage.unit_of_work`).

        ``senders`` (``(channel, account, external id)``) are read up front: on PostgreSQL
        their contacts and latest conversations in one statement. The saves are written when
        the block ends, or earlier before any statement that could read them; when it ends
        with an error, nothing kept survives it (the transaction is to be rolled back).
        """
        uow = self._uow
        if uow.active:  # nested: the outer one flushes
            await uow.prefetch(senders)
            yield
            return
        uow.start()
        try:
            await uow.prefetch(senders)
            yield
            await uow.flush()
        finally:
            uow.stop()

    async def enqueue(
        self,
        messages: Sequence[OutboundMessage],
        *,
        key_prefix: str,
        conversation_id: int | None = None,
        inbound_event_id: int | None = None,
    ) -> list[int]:
        """Write ``messages`` to the outbox as ``<key_prefix>:<n>``; existing keys are kept.

        Returns the ids of the rows written now (none when they were all there already).
        """
        if not messages:
            return []
        now = self._clock.now()
        rows = [
            _outbox_values(m, f"{key_prefix}:{n}", conversation_id, inbound_event_id, now)
            for n, m in enumerate(messages)
        ]
        result = await self.connection.execute(_stmts(self.connection)["enqueue"], rows)
        ids = sorted(r[0] for r in result)
        self.wrote_outbox = self.wrote_outbox or bool(ids)
        return ids

    async def enqueue_many(self, replies: Sequence[PendingReply]) -> list[int]:
        """:meth:`enqueue` for several inbound events at once: one statement for all their rows."""
        now = self._clock.now()
        rows = [
            _outbox_values(m, f"{r.key_prefix}:{n}", r.conversation_id, r.inbound_event_id, now)
            for r in replies
            for n, m in enumerate(r.messages)
        ]
        if not rows:
            return []
        if self.connection.dialect.name == "postgresql":
            params: dict[str, Any] = _pg_arrays(rows, list(_ENQUEUE_ARRAYS))
            params["now"] = now
            result = await self.connection.execute(_PG_ENQUEUE, params)
        else:
            result = await self.connection.execute(_stmts(self.connection)["enqueue"], rows)
        ids = sorted(r[0] for r in result)
        self.wrote_outbox = self.wrote_outbox or bool(ids)
        return ids

    async def complete_events(self, worker_id: str, done: Sequence[tuple[int, int | None]]) -> None:
        """:meth:`complete_event` for several ``(event id, conversation id)`` at once;
        :class:`LeaseLostError` (and nothing completed) if any of them was taken over."""
        if len(done) == 1 or self.connection.dialect.name != "postgresql":
            for event_id, conversation_id in done:
                await self.complete_event(event_id, worker_id, conversation_id=conversation_id)
            return
        result = await self.connection.execute(
            _PG_COMPLETE_MANY,
            {
                "ids": [event_id for event_id, _ in done],
                "convs": [conversation_id for _, conversation_id in done],
                "w_id": worker_id,
                "now": self._clock.now(),
            },
        )
        completed = set(result.scalars())
        lost = [event_id for event_id, _ in done if event_id not in completed]
        if lost:
            raise LeaseLostError(f"events {lost} are no longer claimed by {worker_id}")

    async def complete_event(
        self, event_id: int, worker_id: str, *, conversation_id: int | None = None
    ) -> None:
        """Mark a claimed event done; :class:`LeaseLostError` if another worker took it over."""
        result = await self.connection.execute(
            _stmts(self.connection)["complete"],
            {
                "e_id": event_id,
                "w_id": worker_id,
                "now": self._clock.now(),
                "conv_id": conversation_id,
            },
        )
        if result.rowcount != 1:
            raise LeaseLostError(f"event {event_id} is no longer claimed by {worker_id}")

    async def conversation_messages(
        self, conversation_id: int, limit: int = 200
    ) -> list[MessageRecord]:
        """Inbound and outbound messages of a conversation, oldest first."""
        # Sorted by (time, direction, row id): equal timestamps keep their insertion order.
        keyed: list[tuple[datetime, int, int, MessageRecord]] = []
        for row in await self.connection.execute(
            select(InboxRow.id, InboxRow.payload)
            .where(InboxRow.conversation_id == conversation_id, InboxRow.kind == EventKind.MESSAGE)
            .order_by(InboxRow.id.desc())
            .limit(limit)
        ):
            msg = InboundMessage.model_validate_json(row.payload)
            keyed.append(
                (
                    msg.timestamp,
                    0,
                    row.id,
                    MessageRecord(
                        "in",
                        msg.timestamp,
                        msg.channel,
                        msg.account,
                        msg.provider_message_id,
                        msg.content.model_dump_json(),
                    ),
                )
            )
        for orow in await self.connection.execute(
            select(OutboxRow)
            .where(OutboxRow.conversation_id == conversation_id)
            .order_by(OutboxRow.id.desc())
            .limit(limit)
        ):
            out = OutboundMessage.model_validate_json(orow.payload)
            keyed.append(
                (
                    orow.sent_at or orow.created_at,
                    1,
                    orow.id,
                    MessageRecord(
                        "out",
                        orow.sent_at or orow.created_at,
                        out.channel,
                        out.account,
                        orow.provider_message_id,
                        out.content.model_dump_json(),
                        DeliveryStatus(orow.status),
                    ),
                )
            )
        keyed.sort(key=lambda k: k[:3])
        return [k[3] for k in keyed[-limit:]]
