"""The SQLAlchemy implementation of the storage protocols, for SQLite and PostgreSQL.

Hot paths (accepting events, claiming, writing the outbox) use Core statements, never the ORM's
unit of work, which sends one INSERT per row.

Claiming, on PostgreSQL: candidates are locked with ``FOR UPDATE SKIP LOCKED``, then a
transaction-scoped advisory lock on the conversation key serialises claimers of one conversation
and the ordering conditions are checked again with a fresh snapshot. On SQLite every write
transaction starts with ``BEGIN IMMEDIATE`` (one writer across processes) behind an in-process lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from civicchat.clock import Clock, SystemClock
from civicchat.exceptions import StorageError
from civicchat.messages import (
    DeliveryStatus,
    InboundMessage,
    OutboundMessage,
    StatusUpdate,
    Text,
    Unsupported,
)
from civicchat.storage.base import (
    AcceptResult,
    Assignment,
    AssignmentRepository,
    AuditEntry,
    AuditLog,
    Contact,
    ContactRepository,
    Conversation,
    ConversationHistory,
    ConversationRepository,
    ErasureResult,
    EventKind,
    EventState,
    Identity,
    InboxAdmin,
    InboxEvent,
    InboxStore,
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
    OutboxItem,
    OutboxStore,
    Presence,
    PrivacyStore,
    RetentionMode,
    Transaction,
    TransactionFactory,
    conversation_key,
)
from civicchat.storage.engine import WRITE_OPTION, check_schema, create_engine
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
    UTCDateTime,
)

__all__ = ["LeaseLostError", "SqlStore", "SqlTransaction", "merge_status", "open_store"]

_log = logging.getLogger("civicchat.storage")

_OPEN = (EventState.PENDING, EventState.PROCESSING, EventState.FAILED)


def _is(column: Any, *values: str) -> ColumnElement[bool]:
    """``column IN ('a', 'b')`` with literals, not parameters, so that the planners can use the
    partial indexes (a bound parameter cannot prove a partial index's WHERE clause)."""
    return column.in_([literal_column(f"'{v}'") for v in values])  # type: ignore[no-any-return]


_ERROR_MAX = 2000
_DEADLOCK_RETRIES = 3


def _is_deadlock(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code == "40P01"


_CHUNK = 500
ANONYMISED = "anonymised"


def merge_status(current: DeliveryStatus, new: DeliveryStatus) -> DeliveryStatus:
    """The status to keep when ``new`` arrives: the higher rank (``failed`` always wins).

    Whatever order a message's statuses arrive in, the result is the same.
    """
    return new if new.rank > current.rank else current


class LeaseLostError(StorageError):
    """The worker's claim on an event or message expired and another worker took it over."""


async def open_store(
    url: str, *, clock: Clock | None = None, schema: str | None = None, **engine_kwargs: Any
) -> SqlStore:
    """Open the database at ``url`` (a SQLite file path or URL, or a PostgreSQL URL).

    Raises :class:`~civicchat.exceptions.SchemaBehindError` naming ``civicchat db upgrade`` when
    the database is behind this civicchat.
    """
    engine = create_engine(url, schema=schema, **engine_kwargs)
    try:
        await check_schema(engine)
    except BaseException:
        await engine.dispose()
        raise
    return SqlStore(engine, clock=clock)


def _insert(conn: AsyncConnection, table: Any) -> Any:
    """An INSERT that knows ``ON CONFLICT`` on both dialects."""
    if conn.dialect.name == "postgresql":
        return pg.insert(table)
    return sqlite.insert(table)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _clip(error: str) -> str:
    return error if len(error) <= _ERROR_MAX else error[: _ERROR_MAX - 1] + "…"


# --------------------------------------------------------------------------- row -> record


def _event(row: Any) -> InboxEvent:
    kind = EventKind(row.kind)
    payload: InboundMessage | StatusUpdate
    if kind is EventKind.MESSAGE:
        payload = InboundMessage.model_validate_json(row.payload)
    else:
        payload = StatusUpdate.model_validate_json(row.payload)
    return InboxEvent(
        id=row.id,
        kind=kind,
        channel=row.channel,
        account=row.account,
        key=row.key,
        conversation_key=row.conversation_key,
        payload=payload,
        state=EventState(row.state),
        attempts=row.attempts,
        received_at=row.received_at,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        conversation_id=row.conversation_id,
    )


def _outbox_item(row: Any) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        key=row.key,
        message=OutboundMessage.model_validate_json(row.payload),
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        provider_message_id=row.provider_message_id,
        last_error=row.last_error,
        inbound_event_id=row.inbound_event_id,
        conversation_id=row.conversation_id,
        sent_at=row.sent_at,
        status_at=row.status_at,
    )


def _contact(row: Any) -> Contact:
    return Contact(id=row.id, name=row.name, language=row.language, created_at=row.created_at)


def _conversation(row: Any) -> Conversation:
    return Conversation(
        id=row.id,
        account=row.account,
        channel=row.channel,
        contact_id=row.contact_id,
        recipient_id=row.recipient_id,
        state=row.state,
        created_at=row.created_at,
        language=row.language,
        assigned_operator=row.assigned_operator,
        queued_at=row.queued_at,
        last_inbound_at=row.last_inbound_at,
        last_operator_reply_at=row.last_operator_reply_at,
        last_ack_period=row.last_ack_period,
        last_out_of_hours_period=row.last_out_of_hours_period,
        priority=row.priority,
        team=row.team,
        data=dict(row.data or {}),
        assigned_at=row.assigned_at,
        last_operator=row.last_operator,
        topic=row.topic,
    )


def _operator(row: Any) -> Operator:
    return Operator(
        id=row.id,
        account=row.account,
        name=row.name,
        login=row.login,
        email=row.email,
        password_hash=row.password_hash,
        role=OperatorRole(row.role),
        languages=tuple(x for x in row.languages.split(",") if x),
        teams=tuple(x for x in row.teams.split(",") if x),
        capacity=row.capacity,
        presence=Presence(row.presence),
    )


def _media(row: Any) -> MediaRef:
    return MediaRef(
        id=row.id,
        channel=row.channel,
        account=row.account,
        media_id=row.media_id,
        state=MediaState(row.state),
        attempts=row.attempts,
        created_at=row.created_at,
        event_id=row.event_id,
        mime_type=row.mime_type,
        blob_key=row.blob_key,
        size=row.size,
        sha256=row.sha256,
        last_error=row.last_error,
    )


def _event_values(event: InboundMessage | StatusUpdate, now: datetime) -> dict[str, Any]:
    if isinstance(event, InboundMessage):
        kind, key, sender = EventKind.MESSAGE, event.provider_message_id, event.sender.id
        conv = conversation_key(event.channel, event.account, sender)
    elif isinstance(event, StatusUpdate):
        kind, sender = EventKind.STATUS, event.recipient_id
        key = f"{event.provider_message_id}:{event.status.value}"
        # Statuses of one outbound message are ordered among themselves, never behind a message.
        conv = f"status:{event.channel}:{event.account}:{event.provider_message_id}"
    else:
        raise TypeError(
            f"accept() takes InboundMessage or StatusUpdate, not {type(event).__name__}"
        )
    return {
        "kind": kind.value,
        "channel": event.channel,
        "account": event.account,
        "key": key,
        "sender_id": sender,
        "conversation_key": conv,
        "payload": event.model_dump_json(),
        "state": EventState.PENDING.value,
        "attempts": 0,
        "received_at": now,
        "next_attempt_at": now,
    }


# --------------------------------------------------------------------------- claim statements
# Built once: they are complex, and building them per call costs more than running them.


def _claimable(e: Any) -> ColumnElement[bool]:
    """Event ``e`` is due and first in line in its conversation (nothing earlier open, nothing
    else in progress). ``now`` is a bound parameter."""
    p = InboxRow.__table__.alias("p")
    now = bindparam("now", type_=UTCDateTime())
    due = or_(
        and_(_is(e.c.state, EventState.PENDING, EventState.FAILED), e.c.next_attempt_at <= now),
        and_(_is(e.c.state, EventState.PROCESSING), e.c.lease_until <= now),
    )
    earlier_open = exists().where(
        p.c.conversation_key == e.c.conversation_key,
        p.c.id < e.c.id,
        _is(p.c.state, *_OPEN),
    )
    in_progress = exists().where(
        p.c.conversation_key == e.c.conversation_key,
        _is(p.c.state, *_OPEN),
        _is(p.c.state, EventState.PROCESSING),
        p.c.id != e.c.id,
        p.c.lease_until > now,
    )
    return and_(_is(e.c.state, *_OPEN), due, ~earlier_open, ~in_progress)


def _claim_update() -> Any:
    return update(InboxRow).values(
        state=EventState.PROCESSING.value,
        worker_id=bindparam("w_id"),
        lease_until=bindparam("lease_to", type_=UTCDateTime()),
        attempts=InboxRow.attempts + 1,
    )


_E = InboxRow.__table__.alias("e")
_SQLITE_CLAIM_MANY = (
    _claim_update()
    .where(
        InboxRow.id.in_(
            select(_E.c.id)
            .where(_claimable(_E))
            .order_by(_E.c.id)
            .limit(bindparam("n", type_=Integer()))
        )
    )
    .returning(*InboxRow.__table__.c)
)
# Walk the open events in id order and stop at the first heads found. Without this the planner,
# misled by a fast-changing queue, reads every open event, anti-joins and sorts: O(backlog).
_PG_ORDERED_SCAN = select(
    func.set_config("enable_sort", "off", True), func.set_config("enable_bitmapscan", "off", True)
)
_PG_CANDIDATES = (
    select(_E.c.id, _E.c.conversation_key)
    .where(_claimable(_E))
    .order_by(_E.c.id)
    .limit(bindparam("n", type_=Integer()))
    .with_for_update(skip_locked=True, of=_E)
)
# Advisory locks are per database: the schema keeps two deployments sharing one apart.
_PG_TRY_LOCK = select(
    func.pg_try_advisory_xact_lock(
        func.hashtextextended(func.current_schema() + ":" + bindparam("key", type_=String()), 0)
    )
)
_PG_CLAIM = (
    _claim_update()
    .where(InboxRow.id.in_(bindparam("eids", expanding=True)), _claimable(InboxRow.__table__))
    .returning(*InboxRow.__table__.c)
)
_SENT = (
    update(OutboxRow)
    .where(
        OutboxRow.id == bindparam("item_id"),
        OutboxRow.worker_id == bindparam("w_id"),
        OutboxRow.status == DeliveryStatus.QUEUED,
    )
    .values(
        lease_until=None,
        worker_id=None,
        status=DeliveryStatus.SENT.value,
        provider_message_id=bindparam("provider_id"),
        sent_at=bindparam("now", type_=UTCDateTime()),
        status_at=bindparam("now", type_=UTCDateTime()),
        next_attempt_at=None,
        last_error=None,
    )
    .returning(OutboxRow.id)
)


# Hot-path statements, built once per dialect (building and cache-keying a statement per call
# costs about as much CPU as running it).
_DIALECTS: dict[str, dict[str, Any]] = {}


def _stmts(conn: AsyncConnection) -> dict[str, Any]:
    name = conn.dialect.name
    found = _DIALECTS.get(name)
    if found is None:
        found = _DIALECTS[name] = _build_stmts(name == "postgresql")
    return found


def _build_stmts(postgres: bool) -> dict[str, Any]:
    ins = pg.insert if postgres else sqlite.insert
    o = cast(Table, OutboxRow.__table__)
    d = o.alias("d")
    p = o.alias("p")
    earlier = exists().where(
        _is(p.c.status, DeliveryStatus.QUEUED),
        p.c.channel == d.c.channel,
        p.c.account == d.c.account,
        p.c.recipient_id == d.c.recipient_id,
        p.c.id < d.c.id,
    )
    now = bindparam("now", type_=UTCDateTime())
    due = (
        select(d.c.id)
        .where(
            _is(d.c.status, DeliveryStatus.QUEUED),
            d.c.next_attempt_at <= now,
            or_(d.c.lease_until.is_(None), d.c.lease_until <= now),
            ~earlier,
        )
        .order_by(d.c.id)
        .limit(bindparam("n", type_=Integer()))
    )
    if postgres:
        due = due.with_for_update(skip_locked=True, of=d)
    claim_outbox = (
        update(o)
        .where(o.c.id.in_(due.scalar_subquery()))
        .values(
            worker_id=bindparam("w_id"),
            lease_until=bindparam("lease_to", type_=UTCDateTime()),
            attempts=o.c.attempts + 1,
        )
        .returning(*o.c)
    )
    conv = cast(Table, ConversationRow.__table__)
    inbox = cast(Table, InboxRow.__table__)
    last_inbound = (
        select(o.c.id, conv.c.last_inbound_at, inbox.c.payload)
        .select_from(
            o.outerjoin(conv, conv.c.id == o.c.conversation_id).outerjoin(
                inbox, and_(inbox.c.id == o.c.inbound_event_id, inbox.c.kind == EventKind.MESSAGE)
            )
        )
        .where(o.c.id.in_(bindparam("ids", expanding=True)))
    )
    enqueue = ins(o).on_conflict_do_nothing(index_elements=["key"]).returning(o.c.id)
    complete = (
        update(inbox)
        .where(
            inbox.c.id == bindparam("e_id"),
            inbox.c.worker_id == bindparam("w_id"),
            inbox.c.state == EventState.PROCESSING,
        )
        .values(
            state=EventState.DONE.value,
            processed_at=bindparam("now", type_=UTCDateTime()),
            lease_until=None,
            worker_id=None,
            last_error=None,
            conversation_id=func.coalesce(
                bindparam("conv_id", type_=Integer()), inbox.c.conversation_id
            ),
        )
    )
    ct, it = cast(Table, ContactRow.__table__), cast(Table, IdentityRow.__table__)
    identify = (
        select(ct)
        .join(it, it.c.contact_id == ct.c.id)
        .where(
            it.c.channel == bindparam("channel"),
            it.c.account == bindparam("account"),
            it.c.external_id == bindparam("external_id"),
        )
    )
    latest = (
        select(conv)
        .where(
            conv.c.channel == bindparam("channel"),
            conv.c.account == bindparam("account"),
            conv.c.contact_id == bindparam("contact_id"),
        )
        .order_by(conv.c.id.desc())
        .limit(1)
    )
    save_conv = (
        update(conv)
        .where(conv.c.id == bindparam("c_id"))
        .values({f: bindparam(f"v_{f}", type_=conv.c[f].type) for f in (*_CONV_FIELDS, "data")})
    )
    kc = cast(Table, KeywordCountRow.__table__)
    count_keyword = (
        ins(kc)
        .values(
            account=bindparam("account"),
            keyword_id=bindparam("keyword_id"),
            day=bindparam("day", type_=kc.c.day.type),
            count=bindparam("by", type_=Integer()),
        )
        .on_conflict_do_update(
            index_elements=["account", "keyword_id", "day"],
            set_={"count": kc.c.count + bindparam("by", type_=Integer())},
        )
    )
    return {
        "claim_outbox": claim_outbox,
        "last_inbound": last_inbound,
        "enqueue": enqueue,
        "complete": complete,
        "identify": identify,
        "latest": latest,
        "save_conv": save_conv,
        "count_keyword": count_keyword,
    }


# --------------------------------------------------------------------------- the store


class SqlStore:
    """Storage on one SQLAlchemy async engine (SQLite or PostgreSQL).

    Implements :class:`~civicchat.storage.base.InboxStore`, ``InboxAdmin``, ``OutboxStore``,
    ``TransactionFactory`` and ``PrivacyStore``. Use :func:`open_store` to get one.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock: Clock = clock or SystemClock()
        self.is_postgres = engine.dialect.name == "postgresql"
        self._write_lock = asyncio.Lock()
        self.inbox_signal = asyncio.Event()
        """Set when this process accepted events: wakes idle inbox processors at once."""
        self.outbox_signal = asyncio.Event()
        """Set when this process wrote outbox messages: wakes idle senders at once."""

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        if self.is_postgres:
            async with self.engine.begin() as conn:
                yield conn
        else:
            # SQLite has a single writer; queueing here beats spinning on the busy timeout.
            async with self._write_lock, self.engine.connect() as conn:
                await conn.execution_options(**{WRITE_OPTION: True})
                async with conn.begin():
                    yield conn

    def transaction(self) -> AbstractAsyncContextManager[SqlTransaction]:
        """A transaction with every repository; commits on success, rolls back on error."""
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self._begin() as conn:
            tx = SqlTransaction(conn, self.clock)
            yield tx
        if tx.wrote_outbox:
            self.outbox_signal.set()

    # ------------------------------------------------------------------ inbox

    async def accept(self, events: Sequence[InboundMessage | StatusUpdate]) -> AcceptResult:
        """Commit ``events`` in one transaction.

        Keyed by (channel, account, provider message id) for messages and (channel, account,
        message id, status) for statuses: a re-delivery is a no-op, except that the re-delivery
        of an event that failed or was parked makes it pending again, with its attempts reset.
        """
        if not events:
            return AcceptResult(0, 0, 0)
        now = self.clock.now()
        unique: dict[tuple[str, str, str], dict[str, Any]] = {}
        for e in events:
            values = _event_values(e, now)
            unique.setdefault((values["channel"], values["account"], values["key"]), values)
        rows = list(unique.values())  # in the order given: that is the order of processing
        for attempt in range(1, _DEADLOCK_RETRIES + 1):
            try:
                accepted, revived = await self._accept(rows, list(unique), now)
                break
            except DBAPIError as exc:
                # Two webhooks inserting common keys in different orders can deadlock on
                # PostgreSQL; the batch is idempotent, so run it again.
                if not _is_deadlock(exc) or attempt == _DEADLOCK_RETRIES:
                    raise
                _log.info("accept: deadlock, retrying (%d)", attempt)
        duplicates = len(events) - accepted - revived
        if accepted or revived:
            self.inbox_signal.set()
        if revived:
            _log.info("re-delivery revived %d failed event(s)", revived)
        return AcceptResult(accepted=accepted, duplicates=duplicates, revived=revived)

    async def _accept(
        self, rows: list[dict[str, Any]], keys: list[tuple[str, str, str]], now: datetime
    ) -> tuple[int, int]:
        accepted = revived = 0
        async with self._begin() as conn:
            stmt = (
                _insert(conn, InboxRow)
                .on_conflict_do_nothing(index_elements=["channel", "account", "key"])
                .returning(InboxRow.id)
            )
            for chunk in _chunks(rows):
                accepted += len((await conn.execute(stmt, list(chunk))).all())
            if accepted < len(rows):
                for chunk in _chunks(keys):
                    result = await conn.execute(
                        update(InboxRow)
                        .where(
                            tuple_(InboxRow.channel, InboxRow.account, InboxRow.key).in_(chunk),
                            InboxRow.state.in_([EventState.FAILED, EventState.PARKED]),
                        )
                        .values(
                            state=EventState.PENDING.value,
                            attempts=0,
                            next_attempt_at=now,
                            lease_until=None,
                            worker_id=None,
                        )
                    )
                    revived += result.rowcount
        return accepted, revived

    async def claim_event(self, worker_id: str, *, lease_seconds: float) -> InboxEvent | None:
        """Claim the oldest due event whose conversation has nothing in progress or earlier.

        The claim lasts ``lease_seconds``; after that (a crashed worker) another worker may take
        the event over. Each claim counts as an attempt.
        """
        events = await self.claim_events(worker_id, limit=1, lease_seconds=lease_seconds)
        return events[0] if events else None

    async def claim_events(
        self, worker_id: str, *, limit: int, lease_seconds: float
    ) -> list[InboxEvent]:
        """Claim up to ``limit`` due events in one transaction, oldest first, each the head of a
        different conversation (see :meth:`claim_event`)."""
        while True:
            rows = await self._claim_rows(worker_id, max(1, limit), lease_seconds)
            events: list[InboxEvent] = []
            unreadable = False
            for row in rows:
                try:
                    events.append(_event(row))
                except ValueError as exc:
                    # Unreadable (a payload from an incompatible version): park it, or it would
                    # block the head of the queue forever.
                    _log.error("event %d is unreadable (%s): parked", row.id, type(exc).__name__)
                    await self.fail_event(row.id, worker_id, f"unreadable: {exc}", retry_at=None)
                    unreadable = True
            if events or not unreadable:
                events.sort(key=lambda e: e.id)
                return events

    async def _claim_rows(self, worker_id: str, limit: int, lease_seconds: float) -> list[Any]:
        now = self.clock.now()
        params = {
            "now": now,
            "w_id": worker_id,
            "lease_to": now + timedelta(seconds=lease_seconds),
        }
        async with self._begin() as conn:
            if not self.is_postgres:
                return list(await conn.execute(_SQLITE_CLAIM_MANY, {**params, "n": limit}))
            await conn.execute(_PG_ORDERED_SCAN)
            candidates = (await conn.execute(_PG_CANDIDATES, {**params, "n": limit + 7})).all()
            locked: list[int] = []
            keys: set[str] = set()
            for event_id, key in candidates:
                if key in keys or not await conn.scalar(_PG_TRY_LOCK, {"key": key}):
                    continue
                keys.add(key)
                locked.append(event_id)
                if len(locked) == limit:
                    break
            if not locked:
                return []
            # A fresh snapshot, now that no other claimer of these conversations runs.
            return list(await conn.execute(_PG_CLAIM, {**params, "eids": locked}))

    async def fail_event(
        self, event_id: int, worker_id: str, error: str, *, retry_at: datetime | None
    ) -> EventState:
        """Record a failed attempt: ``failed`` until ``retry_at``, or ``parked`` when ``None``."""
        state = EventState.PARKED if retry_at is None else EventState.FAILED
        async with self._begin() as conn:
            result = await conn.execute(
                update(InboxRow)
                .where(
                    InboxRow.id == event_id,
                    InboxRow.worker_id == worker_id,
                    InboxRow.state == EventState.PROCESSING,
                )
                .values(
                    state=state.value,
                    next_attempt_at=retry_at or self.clock.now(),
                    lease_until=None,
                    worker_id=None,
                    last_error=_clip(error),
                )
            )
            if result.rowcount != 1:
                raise LeaseLostError(f"event {event_id} is no longer claimed by {worker_id}")
        return state

    async def release_event(self, event_id: int, worker_id: str) -> None:
        """Give a claimed event back untouched (graceful stop); the attempt is not counted."""
        async with self._begin() as conn:
            await conn.execute(
                update(InboxRow)
                .where(
                    InboxRow.id == event_id,
                    InboxRow.worker_id == worker_id,
                    InboxRow.state == EventState.PROCESSING,
                )
                .values(
                    state=EventState.PENDING.value,
                    lease_until=None,
                    worker_id=None,
                    attempts=InboxRow.attempts - 1,
                )
            )

    async def get_event(self, event_id: int) -> InboxEvent | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(InboxRow.__table__).where(InboxRow.id == event_id))
            ).first()
        return None if row is None else _event(row)

    # ------------------------------------------------------------------ inbox admin

    async def parked_events(self, account: str | None = None, limit: int = 100) -> list[InboxEvent]:
        """Events that failed too often, oldest first."""
        t = InboxRow.__table__
        stmt = select(t).where(t.c.state == EventState.PARKED).order_by(t.c.id).limit(limit)
        if account is not None:
            stmt = stmt.where(t.c.account == account)
        async with self.engine.connect() as conn:
            return [_event(r) for r in await conn.execute(stmt)]

    async def requeue(self, event_id: int) -> bool:
        """Make a parked or failed event pending again, with its attempts reset."""
        async with self._begin() as conn:
            result = await conn.execute(
                update(InboxRow)
                .where(
                    InboxRow.id == event_id,
                    InboxRow.state.in_([EventState.PARKED, EventState.FAILED]),
                )
                .values(
                    state=EventState.PENDING.value, attempts=0, next_attempt_at=self.clock.now()
                )
            )
        return result.rowcount == 1

    async def state_counts(self) -> Mapping[EventState, int]:
        """How many events are in each state."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(InboxRow.state, func.count()).group_by(InboxRow.state))
            counts = dict.fromkeys(EventState, 0)
            for state, n in rows:
                counts[EventState(state)] = n
        return counts

    # ------------------------------------------------------------------ outbox

    async def claim_outbound(
        self, worker_id: str, *, limit: int, lease_seconds: float
    ) -> list[OutboxItem]:
        """Claim up to ``limit`` due messages, oldest first, at most one per recipient.

        A recipient's next message waits until the previous one is sent or failed for good, so
        replies arrive in the order they were written.
        """
        now = self.clock.now()
        params = {
            "now": now,
            "n": limit,
            "w_id": worker_id,
            "lease_to": now + timedelta(seconds=lease_seconds),
        }
        async with self._begin() as conn:
            if self.is_postgres:
                await conn.execute(_PG_ORDERED_SCAN)
            rows = await conn.execute(_stmts(conn)["claim_outbox"], params)
            items: list[OutboxItem] = []
            unreadable: list[tuple[int, str]] = []
            for r in rows:
                try:
                    items.append(_outbox_item(r))
                except ValueError as exc:
                    unreadable.append((r.id, f"unreadable: {exc}"))
            if not items and not unreadable:
                return []
            items.sort(key=lambda i: i.id)
            items = await self._with_last_inbound(conn, items)
        for item_id, error in unreadable:
            _log.error("outbox %d is unreadable: failed", item_id)
            await self.mark_failed(item_id, worker_id, error)
        return items

    async def _with_last_inbound(
        self, conn: AsyncConnection, items: list[OutboxItem]
    ) -> list[OutboxItem]:
        wanted = [i.id for i in items if i.conversation_id or i.inbound_event_id]
        if not wanted:
            return items
        latest: dict[int, datetime] = {}
        for item_id, conv_at, payload in await conn.execute(
            _stmts(conn)["last_inbound"], {"ids": wanted}
        ):
            known = [conv_at] if conv_at is not None else []
            if payload is not None:
                with contextlib.suppress(ValueError):
                    known.append(InboundMessage.model_validate_json(payload).timestamp)
            if known:
                latest[item_id] = max(known)
        return [
            dataclasses.replace(i, last_inbound_at=latest[i.id]) if i.id in latest else i
            for i in items
        ]

    async def _finish_outbound(self, item_id: int, worker_id: str, **values: Any) -> bool:
        async with self._begin() as conn:
            result = await conn.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.id == item_id,
                    OutboxRow.worker_id == worker_id,
                    OutboxRow.status == DeliveryStatus.QUEUED,
                )
                .values(lease_until=None, worker_id=None, **values)
            )
        return result.rowcount == 1

    async def mark_sent(self, item_id: int, worker_id: str, provider_message_id: str) -> bool:
        """Record a successful send; False when the claim was lost meanwhile."""
        now = self.clock.now()
        return await self._finish_outbound(
            item_id,
            worker_id,
            status=DeliveryStatus.SENT.value,
            provider_message_id=provider_message_id,
            sent_at=now,
            status_at=now,
            next_attempt_at=None,
            last_error=None,
        )

    async def mark_sent_many(self, worker_id: str, sent: Sequence[tuple[int, str]]) -> set[int]:
        """Record several successful sends ``(item id, provider message id)`` in one
        transaction; returns the ids still claimed by ``worker_id`` (the others were lost)."""
        if not sent:
            return set()
        now = self.clock.now()
        done: set[int] = set()
        async with self._begin() as conn:
            for item_id, provider_id in sent:
                row = (
                    await conn.execute(
                        _SENT,
                        {
                            "item_id": item_id,
                            "w_id": worker_id,
                            "provider_id": provider_id,
                            "now": now,
                        },
                    )
                ).first()
                if row is not None:
                    done.add(item_id)
        return done

    async def mark_retry(
        self, item_id: int, worker_id: str, error: str, retry_at: datetime
    ) -> bool:
        """Record a transient failure; the message is sent again at ``retry_at``."""
        return await self._finish_outbound(
            item_id, worker_id, next_attempt_at=retry_at, last_error=_clip(error)
        )

    async def mark_failed(self, item_id: int, worker_id: str, error: str) -> bool:
        """Record a permanent failure on the message."""
        return await self._finish_outbound(
            item_id,
            worker_id,
            status=DeliveryStatus.FAILED.value,
            next_attempt_at=None,
            last_error=_clip(error),
            status_at=self.clock.now(),
        )

    async def apply_status(self, update_: StatusUpdate) -> bool:
        """Merge a delivery status into the stored message; False when no message has that id.

        Statuses arrive out of order: the highest :attr:`DeliveryStatus.rank` wins, and
        ``failed`` (the highest) always wins.
        """
        async with self._begin() as conn:
            query = select(OutboxRow.id, OutboxRow.status).where(
                OutboxRow.channel == update_.channel,
                OutboxRow.account == update_.account,
                OutboxRow.provider_message_id == update_.provider_message_id,
            )
            if self.is_postgres:
                query = query.with_for_update()  # two statuses of one message merge in turn
            row = (await conn.execute(query)).first()
            if row is None:
                return False
            current = DeliveryStatus(row.status)
            if merge_status(current, update_.status) is not current:
                values: dict[str, Any] = {
                    "status": update_.status.value,
                    "status_at": update_.timestamp,
                }
                if update_.status is DeliveryStatus.FAILED:
                    values["last_error"] = _clip(
                        "; ".join(
                            f"{e.code} {e.title or ''} {e.detail or ''}".strip()
                            for e in update_.errors
                        )
                        or "failed"
                    )
                await conn.execute(update(OutboxRow).where(OutboxRow.id == row.id).values(**values))
        return True

    async def get_outbound(self, item_id: int) -> OutboxItem | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(OutboxRow.__table__).where(OutboxRow.id == item_id))
            ).first()
        return None if row is None else _outbox_item(row)

    async def outbound_for_event(self, event_id: int) -> list[OutboxItem]:
        """The replies written for one inbound event, in order."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(OutboxRow.__table__)
                .where(OutboxRow.inbound_event_id == event_id)
                .order_by(OutboxRow.id)
            )
            return [_outbox_item(r) for r in rows]

    # ------------------------------------------------------------------ privacy

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


# --------------------------------------------------------------------------- transaction


class _Repo:
    def __init__(self, conn: AsyncConnection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock


class SqlContacts(_Repo):
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
        row = (
            await self._conn.execute(
                _stmts(self._conn)["identify"],
                {"channel": channel, "account": account, "external_id": external_id},
            )
        ).first()
        if row is not None:
            contact = _contact(row)
            if name and not contact.name:
                await self._conn.execute(
                    update(ContactRow).where(ContactRow.id == contact.id).values(name=name)
                )
                contact = Contact(contact.id, name, contact.language, contact.created_at)
            return contact
        now = self._clock.now()
        contact_id = await self._conn.scalar(
            _insert(self._conn, ContactRow)
            .values(name=name, language=language, created_at=now)
            .returning(ContactRow.id)
        )
        assert contact_id is not None
        await self._conn.execute(
            _insert(self._conn, IdentityRow).values(
                contact_id=contact_id, channel=channel, account=account, external_id=external_id
            )
        )
        return Contact(contact_id, name, language, now)

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


_CONV_FIELDS = (
    "state",
    "language",
    "assigned_operator",
    "queued_at",
    "last_inbound_at",
    "last_operator_reply_at",
    "last_ack_period",
    "last_out_of_hours_period",
    "priority",
    "team",
    "recipient_id",
    "assigned_at",
    "last_operator",
    "topic",
)


class SqlConversations(_Repo):
    async def get(self, conversation_id: int) -> Conversation | None:
        row = (
            await self._conn.execute(
                select(ConversationRow).where(ConversationRow.id == conversation_id)
            )
        ).first()
        return None if row is None else _conversation(row)

    async def latest_for(self, channel: str, account: str, contact_id: int) -> Conversation | None:
        row = (
            await self._conn.execute(
                _stmts(self._conn)["latest"],
                {"channel": channel, "account": account, "contact_id": contact_id},
            )
        ).first()
        return None if row is None else _conversation(row)

    async def create(
        self, *, channel: str, account: str, contact_id: int, recipient_id: str, state: str
    ) -> Conversation:
        now = self._clock.now()
        new_id = await self._conn.scalar(
            _insert(self._conn, ConversationRow)
            .values(
                channel=channel,
                account=account,
                contact_id=contact_id,
                recipient_id=recipient_id,
                state=state,
                created_at=now,
                priority=0,
                data={},
            )
            .returning(ConversationRow.id)
        )
        assert new_id is not None
        return Conversation(
            id=new_id,
            account=account,
            channel=channel,
            contact_id=contact_id,
            recipient_id=recipient_id,
            state=state,
            created_at=now,
        )

    async def save(self, conversation: Conversation) -> None:
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
            )
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


class SqlKeywordStats(_Repo):
    async def count_keyword(self, account: str, keyword_id: str, day: date, by: int = 1) -> None:
        await self._conn.execute(
            _stmts(self._conn)["count_keyword"],
            {"account": account, "keyword_id": keyword_id, "day": day, "by": by},
        )

    async def keyword_counts(self, account: str, since: date, until: date) -> list[KeywordCount]:
        rows = await self._conn.execute(
            select(KeywordCountRow)
            .where(
                KeywordCountRow.account == account,
                KeywordCountRow.day >= since,
                KeywordCountRow.day <= until,
            )
            .order_by(KeywordCountRow.day, KeywordCountRow.keyword_id)
        )
        return [KeywordCount(r.account, r.keyword_id, r.day, r._mapping["count"]) for r in rows]


class SqlMedia(_Repo):
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


class SqlTransaction:
    """One database transaction with every repository (see :class:`~.base.Transaction`)."""

    def __init__(self, conn: AsyncConnection, clock: Clock) -> None:
        self.connection = conn
        self._clock = clock
        self.wrote_outbox = False
        """True once :meth:`enqueue` wrote a message (the store wakes its senders on commit)."""
        self.contacts: ContactRepository = SqlContacts(conn, clock)
        self.conversations: ConversationRepository = SqlConversations(conn, clock)
        self.history: ConversationHistory = SqlHistory(conn, clock)
        self.operators: OperatorRepository = SqlOperators(conn, clock)
        self.assignments: AssignmentRepository = SqlAssignments(conn, clock)
        self.audit: AuditLog = SqlAudit(conn, clock)
        self.keywords: KeywordStats = SqlKeywordStats(conn, clock)
        self.media: MediaRepository = SqlMedia(conn, clock)

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
            {
                "key": f"{key_prefix}:{n}",
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
            for n, m in enumerate(messages)
        ]
        result = await self.connection.execute(_stmts(self.connection)["enqueue"], rows)
        ids = sorted(r[0] for r in result)
        self.wrote_outbox = self.wrote_outbox or bool(ids)
        return ids

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


if TYPE_CHECKING:  # mypy proves that the implementation satisfies the protocols

    def _conforms(
        store: SqlStore, tx: SqlTransaction
    ) -> tuple[InboxStore, InboxAdmin, OutboxStore, PrivacyStore, TransactionFactory, Transaction]:
        return store, store, store, store, store, tx
