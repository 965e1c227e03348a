"""Automatic operator assignment in the service: the dispatcher worker.

Each *round* rebuilds routing's in-memory :class:`~civicchat.routing.Assigner` of an account from
the database (operators and their presence, who holds which conversation, the queue), lets it
decide, and writes the decisions back in the same transaction:

- the backlog is served in routing's order (WhatsApp windows closing within two hours first,
  then priority, then age) while an available operator has room, never above capacity;
- an assigned conversation without an operator reply after ``reply_timeout_minutes`` is
  reassigned to another free operator, or escalated once (a ``conversation.data["escalated"]``
  flag the console shows, and an ``escalated`` live event for supervisors);
- an operator who logged out holding conversations gives them back to the queue.

A round runs under a database-level guard so two processes never assign the same conversation
twice: a PostgreSQL advisory transaction lock per operator pool (the account's group, else the
account), and on SQLite the single writer (``BEGIN IMMEDIATE``). Rounds run when something
changes (``conversation`` and ``presence`` live events, from any process) and every few seconds
(timeouts, logins)::

    dispatcher = Dispatcher.from_config(config, store, live, clock)
    result = await dispatcher.run_round()        # or: await dispatcher.run_forever()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from civicchat.clock import Clock
from civicchat.exceptions import ConfigError, RoutingError
from civicchat.routing import (
    WINDOW_CHANNELS,
    Assign,
    Assigner,
    AssignmentStrategy,
    ByLanguage,
    ByTeam,
    ConversationState,
    ConversationView,
    Decision,
    Escalate,
    LeastBusy,
    Requeue,
    RoundRobin,
    Sticky,
    WaitingConversation,
    transition,
    window_closes_at,
)
from civicchat.routing import Operator as RoutingOperator
from civicchat.routing import Presence as RoutingPresence
from civicchat.service.config import ServiceConfig
from civicchat.service.live import LiveBus, LiveEvent
from civicchat.storage import SqlStore
from civicchat.storage.base import (
    AuditEntry,
    Conversation,
    LifecycleEntry,
    Operator,
    OperatorRole,
    Transaction,
)
from civicchat.storage.schema import AssignmentRow, ConversationRow

__all__ = [
    "AccountAssignment",
    "Dispatcher",
    "RoundResult",
    "build_strategy",
    "is_escalated",
]

log = logging.getLogger("civicchat.service.dispatch")

ESCALATED_KEY = "escalated"  # conversation.data: {"operator", "at", "waited_seconds"}
EXCLUDED_KEY = "dispatch_excluded"  # conversation.data: operators who let it time out
DISPATCH_MARK = "dispatch"  # LiveEvent.data key on the dispatcher's own events
TRIGGER_KINDS = frozenset({"conversation", "presence"})
BACKLOG_LIMIT = 2000  # queued conversations read per account and round


def build_strategy(names: Sequence[str]) -> AssignmentStrategy:
    """Compose strategy names left to right: ``["sticky", "by_language", "least_busy"]`` is
    ``Sticky(ByLanguage(LeastBusy()))``. A list ending with a filter gets ``LeastBusy``."""
    if not names:
        raise ConfigError("an assignment strategy needs at least one name")
    *filters, last = names
    picker: AssignmentStrategy
    if last == "least_busy":
        picker = LeastBusy()
    elif last == "round_robin":
        picker = RoundRobin()
    else:
        filters, picker = [*filters, last], LeastBusy()
    for name in reversed(filters):
        if name == "sticky":
            picker = Sticky(picker)
        elif name == "by_language":
            picker = ByLanguage(picker)
        elif name == "by_team":
            picker = ByTeam(picker)
        else:
            raise ConfigError(f"unknown assignment strategy {name!r} (filters come first)")
    return picker


@dataclass
class AccountAssignment:
    """Automatic assignment of one account: who may serve it and how they are chosen.

    Operators registered on ``account`` or on its ``group`` serve it; a ``RoundRobin`` keeps its
    turn between rounds of this process only.
    """

    account: str
    strategy: AssignmentStrategy
    reply_timeout: timedelta = timedelta(minutes=10)
    group: str | None = None

    @property
    def pool(self) -> str:
        """The operator pool this account draws from (the key of the round's lock)."""
        return self.group or self.account


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What one round did: ``(conversation id, operator id)`` pairs."""

    assigned: tuple[tuple[int, int], ...] = ()
    reassigned: tuple[tuple[int, int], ...] = ()
    escalated: tuple[tuple[int, int], ...] = ()
    requeued: tuple[tuple[int, int], ...] = ()  # their operator went offline

    def __add__(self, other: RoundResult) -> RoundResult:
        return RoundResult(
            self.assigned + other.assigned,
            self.reassigned + other.reassigned,
            self.escalated + other.escalated,
            self.requeued + other.requeued,
        )


def is_escalated(conv: Conversation) -> bool:
    """Whether ``conv`` waits for a supervisor: escalated while with its current operator, who
    has not replied since."""
    flag = (conv.data or {}).get(ESCALATED_KEY)
    if conv.state != "assigned" or not isinstance(flag, Mapping):
        return False
    if flag.get("operator") != conv.assigned_operator:
        return False
    at = _parse_time(flag.get("at"))
    return conv.last_operator_reply_at is None or (
        at is not None and conv.last_operator_reply_at < at
    )


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _lock_key(pool: str) -> int:
    digest = hashlib.blake2b(f"civicchat:dispatch:{pool}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass
class _Round:
    """What a round learnt about one account and decided."""

    events: list[LiveEvent] = field(default_factory=list)
    result: RoundResult = RoundResult()


class Dispatcher:
    """The worker that assigns queued conversations to operators (see the module docstring).

    ``store`` is the service's :class:`~civicchat.storage.SqlStore`; ``live`` (optional) brings
    trigger events and carries the dispatcher's own (``conversation``, ``escalated``).
    """

    def __init__(
        self,
        store: SqlStore,
        accounts: Iterable[AccountAssignment],
        *,
        clock: Clock,
        live: LiveBus | None = None,
        interval: float = 5.0,
    ) -> None:
        if interval <= 0:
            raise ConfigError("the dispatcher interval must be positive")
        self.store = store
        self.accounts = {a.account: a for a in accounts}
        self.clock = clock
        self.live = live
        self.interval = interval
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()

    @classmethod
    def from_config(
        cls,
        config: ServiceConfig,
        store: SqlStore,
        live: LiveBus | None,
        clock: Clock,
        *,
        interval: float = 5.0,
    ) -> Dispatcher:
        """A dispatcher for every enabled account with an ``assignment:`` block (maybe none)."""
        accounts = [
            AccountAssignment(
                account=a.name,
                strategy=build_strategy(a.assignment.strategy),
                reply_timeout=timedelta(minutes=a.assignment.reply_timeout_minutes),
                group=a.group,  # as the console: operators of the group work on it
            )
            for a in config.enabled_accounts
            if a.assignment is not None
        ]
        return cls(store, accounts, clock=clock, live=live, interval=interval)

    # ------------------------------------------------------------------ running

    def poke(self) -> None:
        """Ask for a round soon (something changed)."""
        self._wake.set()

    def stop(self) -> None:
        """Make :meth:`run_forever` return after the current round."""
        self._stop.set()
        self._wake.set()

    async def run_forever(self) -> None:
        """Run rounds when poked by live events and every ``interval`` seconds until stopped."""
        if not self.accounts:
            await self._stop.wait()
            return
        listener = asyncio.create_task(self._listen()) if self.live is not None else None
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    await self.run_round()
                except Exception:
                    log.exception("dispatch round failed; trying again in %.1f s", self.interval)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _listen(self) -> None:
        assert self.live is not None
        while not self._stop.is_set():
            try:
                async with self.live.subscribe("*") as events:
                    async for event in events:
                        if (
                            event.kind in TRIGGER_KINDS
                            and event.account in self.accounts
                            and not event.data.get(DISPATCH_MARK)
                        ):
                            self.poke()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the periodic rounds still run
                log.warning("dispatcher: live events unavailable (%s)", type(exc).__name__)
                await asyncio.sleep(self.interval)

    async def run_round(self, accounts: Iterable[str] | None = None) -> RoundResult:
        """One round for ``accounts`` (default: all), one transaction per operator pool.

        Live events go out after each commit.
        """
        names = list(self.accounts) if accounts is None else list(accounts)
        pools: dict[str, list[AccountAssignment]] = {}
        for name in names:
            acct = self.accounts.get(name)
            if acct is None:
                raise ConfigError(f"account {name!r} has no automatic assignment")
            pools.setdefault(acct.pool, []).append(acct)
        total = RoundResult()
        for pool, members in sorted(pools.items()):
            done: list[_Round] = []
            async with self.store.transaction() as tx:
                await _guard(tx, pool)
                for acct in members:
                    done.append(await self._account_round(tx, acct))
            for part in done:
                total = total + part.result
                await self._publish(part.events)
        return total

    async def _publish(self, events: Sequence[LiveEvent]) -> None:
        if self.live is None:
            return
        for event in events:
            try:
                await self.live.publish(event)
            except Exception as exc:  # best effort: the change is committed
                log.warning("live event not published: %s", type(exc).__name__)

    # ------------------------------------------------------------------ one account

    async def _account_round(self, tx: Transaction, acct: AccountAssignment) -> _Round:
        now = self.clock.now()
        conn = _connection(tx)
        staff = await _operators(tx, acct)
        if not staff:
            return _Round()
        loads = await _loads(conn, [op.id for op in staff])
        held = await _rows(conn, acct.account, "assigned", for_update=True)
        queued = await _rows(conn, acct.account, "queued", for_update=True)
        own_load: dict[int, int] = {}
        for row in held:
            if row.assigned_operator is not None:
                own_load[row.assigned_operator] = own_load.get(row.assigned_operator, 0) + 1

        assigner = Assigner(acct.strategy, reply_timeout=acct.reply_timeout)
        presence: dict[str, RoutingOperator] = {}
        for op in staff:
            # Conversations of the pool's other accounts count against the capacity.
            foreign = loads.get(op.id, 0) - own_load.get(op.id, 0)
            room = op.capacity - foreign
            state = RoutingPresence(op.presence.value)
            if room < 1 and state is RoutingPresence.AVAILABLE:
                state = RoutingPresence.AWAY
            ro = RoutingOperator(
                id=str(op.id),
                capacity=max(room, 1),
                languages=frozenset(op.languages),
                teams=frozenset(op.teams),
                presence=state,
            )
            presence[ro.id] = ro
            # Offline while the state is rebuilt: nothing is dispatched before it is complete.
            assigner.add_operator(dataclasses.replace(ro, presence=RoutingPresence.OFFLINE))

        opened = await _open_assignment_times(conn, [r.id for r in held])
        for row in held:
            holder = str(row.assigned_operator) if row.assigned_operator is not None else None
            if holder not in presence:
                continue  # held by someone outside this pool: not ours to move
            assigned_at = opened.get(row.id) or row.assigned_at or row.created_at
            replied = row.last_operator_reply_at
            replied_at = replied if replied is not None and replied >= assigned_at else None
            flag = (row.data or {}).get(ESCALATED_KEY)
            if (
                replied_at is None
                and isinstance(flag, Mapping)
                and flag.get("operator") == int(holder)
            ):
                # Escalated once already: the timer stops, a supervisor deals with it.
                replied_at = _parse_time(flag.get("at")) or now
            assigner.adopt(_item(row, now, None), holder, assigned_at, replied_at=replied_at)

        history = await _assignment_history(conn, [r.id for r in queued])
        for row in queued:
            last, released = _previous_operators(row, history.get(row.id, []))
            item = _item(row, now, last)
            assigner.enqueue(dataclasses.replace(item, excluded=item.excluded | released), now)
        decisions: list[Decision] = []
        for ro in presence.values():
            assigner.add_operator(ro)
        for ro in presence.values():
            if ro.presence is RoutingPresence.OFFLINE and assigner.load(ro.id):
                # Logged out holding conversations: back to the queue, keeping their age.
                decisions.extend(assigner.set_presence(ro.id, RoutingPresence.OFFLINE, now))

        decisions += [
            *assigner.dispatch(now),
            *assigner.check_timeouts(now),
            *assigner.dispatch(now),
        ]
        out = _Round()
        for decision in decisions:
            if isinstance(decision, Assign):
                await self._apply_assign(tx, acct, decision, now, out)
            elif isinstance(decision, Escalate):
                await self._apply_escalate(tx, acct, decision, now, out)
            elif isinstance(decision, Requeue):
                await self._apply_requeue(tx, decision, now, out)
        return out

    async def _apply_requeue(
        self, tx: Transaction, decision: Requeue, now: datetime, out: _Round
    ) -> None:
        conv = await tx.conversations.get(int(decision.conversation_id))
        operator = int(decision.operator_id)
        if conv is None or conv.state != "assigned" or conv.assigned_operator != operator:
            return
        view = transition(
            _view(conv), ConversationState.QUEUED, at=now, actor="system", note=decision.reason
        )
        data = dict(conv.data or {})
        data.pop(ESCALATED_KEY, None)
        moved = dataclasses.replace(
            conv,
            state=view.state.value,
            assigned_operator=None,
            assigned_at=None,
            queued_at=view.queued_at,
            last_operator=operator,
            data=data,
        )
        await tx.conversations.save(moved)
        entry = view.history[-1]
        await tx.history.record(
            LifecycleEntry(conv.id, now, "system", "assigned", "queued", entry.note or None)
        )
        await tx.assignments.release(conv.id, now)
        await tx.audit.audit(
            AuditEntry(
                now,
                "system",
                "requeue",
                conv.account,
                {"conversation": conv.id, "from": operator, "reason": decision.reason},
            )
        )
        out.result = out.result + RoundResult(requeued=((conv.id, operator),))
        out.events.append(
            LiveEvent(
                conv.account, "conversation", conv.id, {"state": "queued", DISPATCH_MARK: "requeue"}
            )
        )

    async def _apply_assign(
        self, tx: Transaction, acct: AccountAssignment, decision: Assign, now: datetime, out: _Round
    ) -> None:
        conv = await tx.conversations.get(int(decision.conversation_id))
        operator = int(decision.operator_id)
        previous = int(decision.previous_operator) if decision.previous_operator else None
        expected = "queued" if previous is None else "assigned"
        if conv is None or conv.state != expected or conv.assigned_operator != previous:
            return  # changed under us (an operator acted outside the guard): leave it
        note = decision.reason if previous is None else f"{decision.reason} from {previous}"
        moved, entry = _move(conv, operator, now, note)
        data = dict(moved.data or {})
        data.pop(ESCALATED_KEY, None)
        if previous is None:
            data.pop(EXCLUDED_KEY, None)  # a new wait starts with a clean slate
        else:
            data[EXCLUDED_KEY] = sorted({*_excluded(conv), str(previous)})
        moved = dataclasses.replace(moved, data=data)
        await tx.conversations.save(moved)
        await tx.history.record(entry)
        await tx.assignments.assign(conv.id, operator, now)
        await tx.audit.audit(
            AuditEntry(
                now,
                "system",
                "assign" if previous is None else "reassign",
                conv.account,
                {"conversation": conv.id, "to": operator, "from": previous, "reason": note},
            )
        )
        log.info("conversation %d assigned to operator %d (%s)", conv.id, operator, note)
        pair = ((conv.id, operator),)
        if previous is None:
            out.result = out.result + RoundResult(assigned=pair)
        else:
            out.result = out.result + RoundResult(reassigned=pair)
        out.events.append(
            LiveEvent(
                conv.account,
                "conversation",
                conv.id,
                {"state": "assigned", "operator": operator, DISPATCH_MARK: note},
            )
        )

    async def _apply_escalate(
        self,
        tx: Transaction,
        acct: AccountAssignment,
        decision: Escalate,
        now: datetime,
        out: _Round,
    ) -> None:
        conv = await tx.conversations.get(int(decision.conversation_id))
        operator = int(decision.operator_id)
        if conv is None or conv.state != "assigned" or conv.assigned_operator != operator:
            return
        waited = int(decision.waited.total_seconds())
        data = dict(conv.data or {})
        data[ESCALATED_KEY] = {
            "operator": operator,
            "at": now.isoformat(),
            "waited_seconds": waited,
        }
        await tx.conversations.save(dataclasses.replace(conv, data=data))
        await tx.audit.audit(
            AuditEntry(
                now,
                "system",
                "escalate",
                conv.account,
                {"conversation": conv.id, "operator": operator, "waited_seconds": waited},
            )
        )
        out.result = out.result + RoundResult(escalated=((conv.id, operator),))
        out.events.append(
            LiveEvent(
                conv.account,
                "escalated",
                conv.id,
                {"operator": operator, "waited_seconds": waited, DISPATCH_MARK: "escalate"},
            )
        )
        # The console's lists refresh on "conversation" events and show the flag.
        out.events.append(
            LiveEvent(
                conv.account,
                "conversation",
                conv.id,
                {"state": "assigned", "escalated": True, DISPATCH_MARK: "escalate"},
            )
        )


# --------------------------------------------------------------------------- storage helpers
# The storage API has no queries for these yet; they belong in civicchat.storage.


def _connection(tx: Transaction) -> AsyncConnection:
    conn = getattr(tx, "connection", None)
    if not isinstance(conn, AsyncConnection):
        raise RoutingError("the dispatcher needs an SQL transaction (civicchat.storage.SqlStore)")
    return conn


async def _guard(tx: Transaction, pool: str) -> None:
    """Serialise rounds of one operator pool across processes until the transaction ends."""
    conn = _connection(tx)
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(pool)})
    # SQLite: the store opened this transaction with BEGIN IMMEDIATE, the one writer.


async def _operators(tx: Transaction, acct: AccountAssignment) -> list[Operator]:
    found: dict[int, Operator] = {}
    for scope in dict.fromkeys([acct.account, *([acct.group] if acct.group else [])]):
        for op in await tx.operators.operators(scope):
            # Administrators configure; they answer only by taking a conversation themselves.
            if op.role is not OperatorRole.ADMIN:
                found[op.id] = op
    return list(found.values())


async def _loads(conn: AsyncConnection, operator_ids: Sequence[int]) -> dict[int, int]:
    """Conversations each operator holds, in every account."""
    if not operator_ids:
        return {}
    rows = await conn.execute(
        select(ConversationRow.assigned_operator, func.count())
        .where(
            ConversationRow.state == "assigned",
            ConversationRow.assigned_operator.in_(list(operator_ids)),
        )
        .group_by(ConversationRow.assigned_operator)
    )
    return {int(op): int(n) for op, n in rows if op is not None}


async def _rows(conn: AsyncConnection, account: str, state: str, *, for_update: bool) -> list[Any]:
    stmt = select(ConversationRow).where(
        ConversationRow.account == account, ConversationRow.state == state
    )
    if state == "queued":
        stmt = stmt.order_by(
            ConversationRow.priority.desc(),
            func.coalesce(ConversationRow.queued_at, ConversationRow.created_at),
            ConversationRow.id,
        ).limit(BACKLOG_LIMIT)
    if for_update and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return list(await conn.execute(stmt))


async def _open_assignment_times(
    conn: AsyncConnection, conversation_ids: Sequence[int]
) -> dict[int, datetime]:
    if not conversation_ids:
        return {}
    rows = await conn.execute(
        select(AssignmentRow.conversation_id, func.max(AssignmentRow.assigned_at))
        .where(
            AssignmentRow.conversation_id.in_(list(conversation_ids)),
            AssignmentRow.released_at.is_(None),
        )
        .group_by(AssignmentRow.conversation_id)
    )
    out: dict[int, datetime] = {}
    for cid, at in rows:
        if at is not None:
            # MAX() bypasses the column type on SQLite: normalise to an aware datetime.
            out[int(cid)] = _aware(at)
    return out


async def _assignment_history(
    conn: AsyncConnection, conversation_ids: Sequence[int]
) -> dict[int, list[tuple[str, datetime | None]]]:
    """Each conversation's past holders, oldest first, with when they let it go."""
    if not conversation_ids:
        return {}
    rows = await conn.execute(
        select(AssignmentRow.conversation_id, AssignmentRow.operator_id, AssignmentRow.released_at)
        .where(AssignmentRow.conversation_id.in_(list(conversation_ids)))
        .order_by(AssignmentRow.id)
    )
    out: dict[int, list[tuple[str, datetime | None]]] = {}
    for cid, op, released in rows:
        out.setdefault(int(cid), []).append((str(op), released))
    return out


def _previous_operators(
    row: Any, history: Sequence[tuple[str, datetime | None]]
) -> tuple[str | None, frozenset[str]]:
    """The operator for sticky assignment, and those who gave the conversation back to the
    queue during this wait (sent it back or went offline): they are avoided, not preferred."""
    queued_at = row.queued_at
    released_now = frozenset(
        op for op, released in history if released and queued_at and released >= queued_at
    )
    last = history[-1][0] if history else None
    if last is None and row.last_operator is not None:
        last = str(row.last_operator)
    return (None if last in released_now else last), released_now


def _aware(value: object) -> datetime:
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(parsed, datetime):
        raise RoutingError(f"unexpected time value {value!r}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _excluded(row: Any) -> frozenset[str]:
    raw = (row.data or {}).get(EXCLUDED_KEY)
    if not isinstance(raw, list):
        return frozenset()
    return frozenset(str(x) for x in raw)


def _item(row: Any, now: datetime, last_operator: str | None) -> WaitingConversation:
    closes = window_closes_at(row.last_inbound_at) if row.channel in WINDOW_CHANNELS else None
    last = last_operator
    return WaitingConversation(
        conversation_id=str(row.id),
        queued_at=row.queued_at or row.created_at or now,
        priority=row.priority or 0,
        language=row.language,
        team=row.team or row.topic,
        last_operator=last,
        window_closes_at=closes,
        excluded=_excluded(row),
    )


def _move(
    conv: Conversation, operator: int, now: datetime, note: str
) -> tuple[Conversation, LifecycleEntry]:
    """``conv`` assigned to ``operator`` through routing's :func:`transition`."""
    new = transition(
        _view(conv),
        ConversationState.ASSIGNED,
        at=now,
        actor="system",
        note=note,
        operator=str(operator),
    )
    entry = new.history[-1]
    last = new.last_operator
    updated = dataclasses.replace(
        conv,
        state=new.state.value,
        assigned_operator=operator,
        assigned_at=new.assigned_at,
        queued_at=new.queued_at,
        last_operator_reply_at=new.last_operator_reply_at,
        last_operator=int(last) if last is not None and last.isdigit() else conv.last_operator,
    )
    return updated, LifecycleEntry(
        conv.id, now, "system", entry.from_state.value, entry.to_state.value, entry.note or None
    )


def _view(conv: Conversation) -> ConversationView:
    return ConversationView(
        id=str(conv.id),
        account=conv.account,
        channel=conv.channel,
        citizen_id=conv.recipient_id,
        state=ConversationState(conv.state),
        language=conv.language,
        assigned_operator=None if conv.assigned_operator is None else str(conv.assigned_operator),
        assigned_at=conv.assigned_at,
        queued_at=conv.queued_at,
        last_inbound_at=conv.last_inbound_at,
        last_operator_reply_at=conv.last_operator_reply_at,
        priority=conv.priority,
        team=conv.team,
    )
