"""The queries of operator assignment: what the dispatcher and the console's moves need in SQL.

Both run inside one :class:`~civicchat.storage.sql.SqlStore` transaction::

    async with store.transaction() as tx:
        queries = assignment_queries(tx)
        await queries.lock_pool("mataro")            # until the transaction ends
        waiting = await queries.conversations("mataro-wa", "queued", lock=True)

:meth:`AssignmentQueries.lock_pool` serialises everything that assigns conversations of one
operator pool across processes: a PostgreSQL advisory transaction lock; on SQLite the store's write
transaction (``BEGIN IMMEDIATE``) already is the single writer.

Operators' status (the last sign of life of their console, disabling) lives in the
``operator_status`` table: :meth:`AssignmentQueries.operator_status`,
:meth:`~AssignmentQueries.mark_seen`, :meth:`~AssignmentQueries.set_disabled`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from civicchat.exceptions import StorageError
from civicchat.storage.base import Assignment, Conversation, EventKind, Transaction
from civicchat.storage.schema import (
    AssignmentRow,
    AuditRow,
    ConversationRow,
    HistoryRow,
    InboxRow,
    OperatorRow,
    OperatorStatusRow,
    OutboxRow,
)
from civicchat.storage.statements import _conversation

__all__ = [
    "OPERATOR_REPLY_PREFIX",
    "AssignmentQueries",
    "OperatorStatus",
    "ReplyTimes",
    "assignment_queries",
    "pool_lock_key",
]

OPERATOR_REPLY_PREFIX = "op:"
"""Outbox keys of the messages operators sent from the console (text, canned, links, documents,
locations): ``op:<request id>:<n>``."""

_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


def pool_lock_key(pool: str) -> int:
    """The advisory lock key of an operator pool (a signed 64-bit integer)."""
    digest = hashlib.blake2b(f"civicchat:dispatch:{pool}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True, slots=True)
class ReplyTimes:
    """When operators last answered a conversation, and the citizen's first message since."""

    last_reply: datetime | None
    first_unanswered: datetime | None


@dataclass(frozen=True, slots=True)
class OperatorStatus:
    """An operator's last sign of life (``None``: never seen) and when they were disabled."""

    seen_at: datetime | None = None
    disabled_at: datetime | None = None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


class AssignmentQueries:
    """The assignment queries on one SQL transaction (get one with :func:`assignment_queries`)."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection
        self._postgres = connection.dialect.name == "postgresql"

    async def lock_pool(self, pool: str) -> None:
        """Wait for, then hold until the transaction ends, the assignment lock of ``pool``."""
        if self._postgres:
            await self._conn.execute(_LOCK, {"key": pool_lock_key(pool)})

    async def loads(self, operator_ids: Sequence[int]) -> dict[int, int]:
        """Conversations each operator holds, in every account."""
        if not operator_ids:
            return {}
        rows = await self._conn.execute(
            select(ConversationRow.assigned_operator, func.count())
            .where(
                ConversationRow.state == "assigned",
                ConversationRow.assigned_operator.in_(list(operator_ids)),
            )
            .group_by(ConversationRow.assigned_operator)
        )
        return {int(op): int(n) for op, n in rows if op is not None}

    async def conversations(
        self,
        account: str,
        state: str,
        *,
        limit: int | None = None,
        lock: bool = False,
        assigned_operator: int | None = None,
    ) -> list[Conversation]:
        """Conversations of ``account`` in ``state``; queued ones in the queue's order (priority,
        then age). ``assigned_operator`` keeps only the ones that operator holds (filtered in
        SQL: with ``lock``, the pool's other conversations stay unlocked). ``lock`` locks their
        rows until the transaction ends (PostgreSQL)."""
        stmt = select(ConversationRow).where(
            ConversationRow.account == account, ConversationRow.state == state
        )
        if assigned_operator is not None:
            stmt = stmt.where(ConversationRow.assigned_operator == assigned_operator)
        if state == "queued":
            stmt = stmt.order_by(
                ConversationRow.priority.desc(),
                func.coalesce(ConversationRow.queued_at, ConversationRow.created_at),
                ConversationRow.id,
            )
        if limit is not None:
            stmt = stmt.limit(limit)
        if lock and self._postgres:
            stmt = stmt.with_for_update()
        return [_conversation(row) for row in await self._conn.execute(stmt)]

    async def assignments(self, conversation_ids: Sequence[int]) -> dict[int, list[Assignment]]:
        """Every assignment of each conversation, oldest first (open ones have no release)."""
        if not conversation_ids:
            return {}
        rows = await self._conn.execute(
            select(
                AssignmentRow.conversation_id,
                AssignmentRow.operator_id,
                AssignmentRow.assigned_at,
                AssignmentRow.released_at,
            )
            .where(AssignmentRow.conversation_id.in_(list(conversation_ids)))
            .order_by(AssignmentRow.id)
        )
        out: dict[int, list[Assignment]] = {}
        for cid, op, assigned, released in rows:
            out.setdefault(int(cid), []).append(Assignment(int(cid), int(op), assigned, released))
        return out

    async def reply_times(self, conversation_ids: Sequence[int]) -> dict[int, ReplyTimes]:
        """For each conversation: the last message an operator sent (``op:`` outbox keys) and
        the first citizen message received after it (or at all, if no operator answered)."""
        if not conversation_ids:
            return {}
        ids = list(conversation_ids)
        replied = (
            select(
                OutboxRow.conversation_id.label("cid"),
                func.max(OutboxRow.created_at).label("at"),
            )
            .where(
                OutboxRow.conversation_id.in_(ids),
                OutboxRow.key.startswith(OPERATOR_REPLY_PREFIX, autoescape=True),
            )
            .group_by(OutboxRow.conversation_id)
            .subquery()
        )
        last: dict[int, datetime] = {}
        for cid, at in await self._conn.execute(select(replied.c.cid, replied.c.at)):
            if cid is not None and at is not None:
                last[int(cid)] = _aware(at)
        first: dict[int, datetime] = {}
        for cid, at in await self._conn.execute(
            select(InboxRow.conversation_id, func.min(InboxRow.received_at))
            .select_from(InboxRow)
            .outerjoin(replied, replied.c.cid == InboxRow.conversation_id)
            .where(
                InboxRow.conversation_id.in_(ids),
                InboxRow.kind == EventKind.MESSAGE,
                or_(replied.c.at.is_(None), InboxRow.received_at > replied.c.at),
            )
            .group_by(InboxRow.conversation_id)
        ):
            if cid is not None and at is not None:
                first[int(cid)] = _aware(at)
        return {cid: ReplyTimes(last.get(cid), first.get(cid)) for cid in ids}

    async def citizen_conversation(
        self, channel: str, account: str, recipient_id: str
    ) -> int | None:
        """The id of the latest conversation with ``recipient_id`` on ``channel``/``account``
        (the console links a case to it), or ``None``."""
        return await self._conn.scalar(
            select(ConversationRow.id)
            .where(
                ConversationRow.channel == channel,
                ConversationRow.account == account,
                ConversationRow.recipient_id == recipient_id,
            )
            .order_by(ConversationRow.id.desc())
            .limit(1)
        )

    # ------------------------------------------------------------------ operators' status

    async def operator_status(self, operator_ids: Sequence[int]) -> dict[int, OperatorStatus]:
        """The status of each operator that has one (the others were never seen)."""
        if not operator_ids:
            return {}
        rows = await self._conn.execute(
            select(
                OperatorStatusRow.operator_id,
                OperatorStatusRow.seen_at,
                OperatorStatusRow.disabled_at,
            ).where(OperatorStatusRow.operator_id.in_(list(operator_ids)))
        )
        return {int(op): OperatorStatus(seen, off) for op, seen, off in rows}

    async def _upsert(self, operator_id: int, **values: datetime | None) -> None:
        insert = pg_insert if self._postgres else sqlite_insert
        stmt = insert(OperatorStatusRow).values(operator_id=operator_id, **values)
        await self._conn.execute(
            stmt.on_conflict_do_update(index_elements=["operator_id"], set_=values)
        )

    async def mark_seen(self, operator_id: int, at: datetime) -> None:
        """Record a sign of life of ``operator_id``'s console at ``at``."""
        await self._upsert(operator_id, seen_at=at)

    async def set_disabled(self, operator_id: int, at: datetime | None) -> None:
        """Disable ``operator_id`` since ``at`` (``None`` enables them again)."""
        await self._upsert(operator_id, disabled_at=at)

    async def operator_references(self, operator_id: int) -> int:
        """How many rows name ``operator_id``: assignments, conversations (held or last
        served), history entries and audit entries they made. Zero: deleting them loses
        nothing."""
        actor = f"operator:{operator_id}"
        total = 0
        for stmt in (
            select(func.count())
            .select_from(AssignmentRow)
            .where(AssignmentRow.operator_id == operator_id),
            select(func.count())
            .select_from(ConversationRow)
            .where(
                or_(
                    ConversationRow.assigned_operator == operator_id,
                    ConversationRow.last_operator == operator_id,
                )
            ),
            select(func.count()).select_from(HistoryRow).where(HistoryRow.actor == actor),
            select(func.count()).select_from(AuditRow).where(AuditRow.actor == actor),
        ):
            total += int(await self._conn.scalar(stmt) or 0)
        return total

    async def delete_operator(self, operator_id: int) -> bool:
        """Delete ``operator_id`` and their status; whether there was such an operator."""
        await self._conn.execute(
            delete(OperatorStatusRow).where(OperatorStatusRow.operator_id == operator_id)
        )
        result = await self._conn.execute(delete(OperatorRow).where(OperatorRow.id == operator_id))
        return bool(getattr(result, "rowcount", 0))


def assignment_queries(tx: Transaction) -> AssignmentQueries:
    """The assignment queries of ``tx``, a transaction of :class:`~civicchat.storage.SqlStore`.

    Raises :class:`~civicchat.exceptions.StorageError` for any other transaction.
    """
    conn = getattr(tx, "connection", None)
    if not isinstance(conn, AsyncConnection):
        raise StorageError("assignment needs an SQL transaction (civicchat.storage.SqlStore)")
    return AssignmentQueries(conn)


def _aware(value: object) -> datetime:
    # Aggregates (MAX) bypass the column type on SQLite: normalise to an aware datetime.
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(parsed, datetime):
        raise StorageError(f"unexpected time value {value!r}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
