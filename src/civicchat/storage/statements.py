"""Shared SQL building blocks of the storage: row conversions and the hot statements.

Hot statements are built once (per dialect where they differ): building and cache-keying a
statement per call costs about as much CPU as running it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Table,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import TextClause

from civicchat.exceptions import StorageError
from civicchat.messages import (
    DeliveryStatus,
    InboundMessage,
    OutboundMessage,
    StatusUpdate,
)
from civicchat.storage.base import (
    Contact,
    Conversation,
    EventKind,
    EventState,
    InboxEvent,
    MediaRef,
    MediaState,
    Operator,
    OperatorRole,
    OutboxItem,
    Presence,
    event_conversation_key,
)
from civicchat.storage.schema import (
    ContactRow,
    ConversationRow,
    IdentityRow,
    InboxRow,
    KeywordCountRow,
    OutboxRow,
    UTCDateTime,
)

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


class LeaseLostError(StorageError):
    """The worker's claim on an event or message expired and another worker took it over."""


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
    elif isinstance(event, StatusUpdate):
        kind, sender = EventKind.STATUS, event.recipient_id
        key = f"{event.provider_message_id}:{event.status.value}"
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
        "conversation_key": event_conversation_key(event),
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
    # One probe of the conversation's open events (index ix_inbox_events_open) per candidate:
    # another one earlier, or one in progress (a revived earlier event must wait for it). Two
    # separate NOT EXISTS let PostgreSQL's planner compare every candidate with every event in
    # progress (19 ms a claim with a 2,000-event backlog, against 0.5 ms).
    blocking = exists().where(
        p.c.conversation_key == e.c.conversation_key,
        _is(p.c.state, *_OPEN),
        p.c.id != e.c.id,
        or_(
            p.c.id < e.c.id,
            and_(_is(p.c.state, EventState.PROCESSING), p.c.lease_until > now),
        ),
    )
    return and_(_is(e.c.state, *_OPEN), due, ~blocking)


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
# Wakes the idle workers of other processes (see SqlStore.listen_for_work); per schema, so that
# two deployments sharing a database stay apart.
_WORK_CHANNEL = "civicchat_work:"
_PG_NOTIFY_WORK = text(f"SELECT pg_notify('{_WORK_CHANNEL}' || current_schema(), :what)")
_PG_CANDIDATES = (
    select(_E.c.id, _E.c.conversation_key)
    .where(_claimable(_E))
    .order_by(_E.c.id)
    .limit(bindparam("n", type_=Integer()))
    .with_for_update(skip_locked=True, of=_E)
)
# Advisory locks are per database: the schema keeps two deployments sharing one apart. The
# function scan yields the candidates in order and LIMIT stops it, so no lock is taken beyond the
# ``n`` granted (each is a conversation that no other worker is claiming right now).
_PG_TRY_LOCKS = text(
    "SELECT t.id FROM unnest(CAST(:ids AS bigint[]), CAST(:keys AS text[])) AS t(id, key)"
    " WHERE pg_try_advisory_xact_lock(hashtextextended(current_schema() || ':' || t.key, 0))"
    " LIMIT :n"
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


def _pg_insert_in_order(
    table: str, arrays: Mapping[str, str], fixed: Mapping[str, str], conflict: str
) -> TextClause:
    """``INSERT`` of rows given as parallel arrays (one bound parameter per column in ``arrays``,
    named after it, of the given PostgreSQL type), in the arrays' order: the rows' ids are drawn
    in that order (for the inbox, the order of processing). ``fixed`` columns take one SQL
    expression for every row; a row whose ``conflict`` key exists is skipped. Returns the ids
    written. One prepared statement whatever the number of rows."""
    columns = list(arrays)
    return text(
        f"INSERT INTO {table} ({', '.join([*columns, *fixed])})"
        f" SELECT {', '.join(f't.{c}' for c in columns)}, {', '.join(fixed.values())}"
        f" FROM unnest({', '.join(f'CAST(:{c} AS {t}[])' for c, t in arrays.items())})"
        f" WITH ORDINALITY AS t({', '.join(columns)}, n)"
        f" ORDER BY t.n ON CONFLICT ({conflict}) DO NOTHING RETURNING id"
    )


def _pg_arrays(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, list[Any]]:
    """The parameters of a :func:`_pg_insert_in_order` statement: one list per column."""
    return {c: [r[c] for r in rows] for c in columns}


_TEXT = "text"
# The webhook's commit on PostgreSQL, sent by the driver itself (no SQLAlchemy work).
#
# First try, one statement that is its own transaction (no BEGIN/COMMIT round trips): insert the
# new events in order and wake the workers of every process (NOTIFY, delivered on commit); when
# any event of the batch was there already the statement fails on purpose (the cast below,
# ``_ACCEPT_KNOWN``), so nothing of it is kept, and the batch goes the careful way: one
# transaction with ``_PG_ACCEPT_INSERT`` and, when some events were known, ``_PG_ACCEPT_REVIVE``
# (a revived parked event is pending when the batch's new events of its conversation become
# visible). Known events are left alone either way: no lock on their rows (ON CONFLICT DO UPDATE
# would lock every known row, and a worker holding one deadlocked with the webhook), and no
# statement whose cost depends on a plan. Positional parameters: the ``_ACCEPT_COLUMNS`` as text
# arrays, the time, the work notice's origin, then the number of events.
_ACCEPT_KNOWN = "known events in the batch"
# The careful way: the insert alone (parameters: the arrays, the time, the work notice's
# origin), returns the number inserted. (One statement that also
# revived re-deliveries, with data-modifying CTEs, cost twice as much: its custom plans were
# re-planned on every call.)
_ACCEPT_COLUMNS = ("kind", "channel", "account", "key", "sender_id", "conversation_key", "payload")
# The payload is ``inbox:<origin>`` (``SqlStore.work_origin``): a process ignores its own notices,
# having woken its workers itself.
_WORK_NOTIFY_INBOX = f"pg_notify('{_WORK_CHANNEL}' || current_schema(), 'inbox:' || $ORIGIN)"
_PG_ACCEPT_INSERT = (
    "WITH ins AS (INSERT INTO inbox_events (kind, channel, account, key, sender_id,"
    " conversation_key, payload, state, attempts, received_at, next_attempt_at)"
    " SELECT t.kind, t.channel, t.account, t.key, t.sender_id, t.conversation_key, t.payload,"
    f" '{EventState.PENDING.value}', 0, $8, $8 FROM unnest("
    + ", ".join(f"${i}::text[]" for i in range(1, 8))
    + ") WITH ORDINALITY AS t(kind, channel, account, key, sender_id, conversation_key, payload, n)"
    " ORDER BY t.n ON CONFLICT (channel, account, key) DO NOTHING RETURNING 1)"
    " SELECT count(*), CASE WHEN count(*) > 0 THEN "
    + _WORK_NOTIFY_INBOX.replace("$ORIGIN", "$9::text")
    + " END FROM ins"
)
# Only when some events of a batch were there already: a re-delivery of one that failed or was
# parked makes it pending again, attempts reset (and wakes the workers). Parameters: channel,
# account and key arrays, the time, then the work notice's origin. Returns the number revived.
_PG_ACCEPT_REVIVE = (
    f"WITH rev AS (UPDATE inbox_events AS e SET state = '{EventState.PENDING.value}',"
    " attempts = 0, next_attempt_at = $4, lease_until = NULL, worker_id = NULL"
    " FROM unnest($1::text[], $2::text[], $3::text[]) AS t(channel, account, key)"
    " WHERE e.channel = t.channel AND e.account = t.account AND e.key = t.key"
    f" AND e.state IN ('{EventState.FAILED.value}', '{EventState.PARKED.value}') RETURNING 1)"
    " SELECT count(*), CASE WHEN count(*) > 0 THEN "
    + _WORK_NOTIFY_INBOX.replace("$ORIGIN", "$5::text")
    + " END FROM rev"
)
_PG_ACCEPT_NEW = _PG_ACCEPT_INSERT.replace(
    "SELECT count(*),",
    f"SELECT count(*), CASE WHEN count(*) < $10 THEN ('{_ACCEPT_KNOWN}: ' || $10 - count(*))::int"
    " END,",
)
_ENQUEUE_ARRAYS = {
    "key": _TEXT,
    "inbound_event_id": "bigint",
    "conversation_id": "bigint",
    "channel": _TEXT,
    "account": _TEXT,
    "recipient_id": _TEXT,
    "payload": _TEXT,
}
_PG_ENQUEUE = _pg_insert_in_order(
    "outbox",
    _ENQUEUE_ARRAYS,
    {"status": ":queued", "attempts": "0", "created_at": ":now", "next_attempt_at": ":now"},
    "key",
).bindparams(bindparam("now", type_=UTCDateTime()), queued=DeliveryStatus.QUEUED.value)

# Several sends recorded in one statement (PostgreSQL).
_PG_SENT_MANY = text(
    "UPDATE outbox AS o SET lease_until = NULL, worker_id = NULL, status = :sent,"
    " provider_message_id = t.pid, sent_at = :now, status_at = :now, next_attempt_at = NULL,"
    " last_error = NULL"
    " FROM unnest(CAST(:ids AS bigint[]), CAST(:pids AS text[])) AS t(id, pid)"
    " WHERE o.id = t.id AND o.worker_id = :w_id AND o.status = :queued"
    " RETURNING o.id"
).bindparams(
    bindparam("now", type_=UTCDateTime()),
    sent=DeliveryStatus.SENT.value,
    queued=DeliveryStatus.QUEUED.value,
)

# Several claimed events completed in one statement (PostgreSQL).
_PG_COMPLETE_MANY = text(
    "UPDATE inbox_events AS e SET state = :done, processed_at = :now, lease_until = NULL,"
    " worker_id = NULL, last_error = NULL,"
    " conversation_id = coalesce(t.conv, e.conversation_id)"
    " FROM unnest(CAST(:ids AS bigint[]), CAST(:convs AS bigint[])) AS t(id, conv)"
    " WHERE e.id = t.id AND e.worker_id = :w_id AND e.state = :processing"
    " RETURNING e.id"
).bindparams(
    bindparam("now", type_=UTCDateTime()),
    done=EventState.DONE.value,
    processing=EventState.PROCESSING.value,
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
            shard=bindparam("shard", type_=kc.c.shard.type),
            count=bindparam("by", type_=Integer()),
        )
        .on_conflict_do_update(
            index_elements=["account", "keyword_id", "day", "shard"],
            set_={"count": kc.c.count + bindparam("by", type_=Integer())},
        )
    )
    new_contact = (
        ins(ct)
        .values(
            name=bindparam("name", type_=ct.c.name.type),
            language=bindparam("language", type_=ct.c.language.type),
            created_at=bindparam("now", type_=UTCDateTime()),
        )
        .returning(ct.c.id)
    )
    new_identity = ins(it).values(
        contact_id=bindparam("contact_id", type_=it.c.contact_id.type),
        channel=bindparam("channel", type_=it.c.channel.type),
        account=bindparam("account", type_=it.c.account.type),
        external_id=bindparam("external_id", type_=it.c.external_id.type),
    )
    new_conversation = (
        ins(conv)
        .values(
            channel=bindparam("channel", type_=conv.c.channel.type),
            account=bindparam("account", type_=conv.c.account.type),
            contact_id=bindparam("contact_id", type_=conv.c.contact_id.type),
            recipient_id=bindparam("recipient_id", type_=conv.c.recipient_id.type),
            state=bindparam("state", type_=conv.c.state.type),
            created_at=bindparam("now", type_=UTCDateTime()),
            priority=0,
            data=bindparam("data", type_=conv.c.data.type),
        )
        .returning(conv.c.id)
    )
    return {
        "new_contact": new_contact,
        "new_identity": new_identity,
        "new_conversation": new_conversation,
        "claim_outbox": claim_outbox,
        "last_inbound": last_inbound,
        "enqueue": enqueue,
        "complete": complete,
        "identify": identify,
        "latest": latest,
        "save_conv": save_conv,
        "count_keyword": count_keyword,
    }
