"""Automatic operator assignment in the service: the dispatcher worker.

Each *round* rebuilds routing's in-memory :class:`~civicchat.routing.Assigner` of an account from
the database (operators and their presence, who holds which conversation, the queue), lets it
decide, and writes the decisions back in the same transaction:

- the backlog is served in routing's order (WhatsApp windows closing within two hours first,
  then priority, then age) while an available operator has room, never above capacity;
- an assigned conversation without an operator reply after ``reply_timeout_minutes`` is
  reassigned to another free operator, or escalated once (a ``conversation.data["escalated"]``
  flag the console shows, and an ``escalated`` live event for supervisors);
- an operator who logged out holding conversations gives them back to the queue;
- an operator shown available whose console gave no sign of life (a page, the live stream) for
  ``presence_timeout`` is set away: nothing new goes to them, they keep what they hold;
- only operators and supervisors are assigned, never administrators, nor disabled operators;
  a supervisor only after choosing "available" (the console's login does not do it for them);
- out of office hours nothing is assigned (the office is closed: the queue waits for the next
  opening, unless someone takes a conversation explicitly), and reply timeouts wait too;
- a conversation an operator put back in the queue never goes back to them in this wait.

A round runs under a database-level guard so two processes never assign the same conversation
twice: a PostgreSQL advisory transaction lock per operator pool (the account's group, else the
account), and on SQLite the single writer (``BEGIN IMMEDIATE``). The console's moves (take,
transfer, close, a reply that picks a conversation up) take the same lock (:func:`lock_pool`) and
write through the same :func:`commit_move`. The SQL lives in :mod:`civicchat.storage.assignment_sql`.
Rounds run when something changes (``conversation`` and ``presence`` live events, from any
process) and every few seconds (timeouts, logins)::

    dispatcher = Dispatcher.from_config(config, store, live, clock)
    result = await dispatcher.run_round()        # or: await dispatcher.run_forever()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

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
    OfficeHours,
    Requeue,
    RoundRobin,
    Sticky,
    WaitingConversation,
    load_office_hours,
    transition,
    window_closes_at,
)
from civicchat.routing import Operator as RoutingOperator
from civicchat.routing import Presence as RoutingPresence
from civicchat.service.config import ServiceConfig
from civicchat.service.live import LiveBus, LiveEvent
from civicchat.storage import SqlStore
from civicchat.storage.assignment_sql import OperatorStatus, assignment_queries
from civicchat.storage.base import (
    Assignment,
    AuditEntry,
    Conversation,
    LifecycleEntry,
    Operator,
    OperatorRole,
    Presence,
    Transaction,
)

__all__ = [
    "PRESENCE_TIMEOUT",
    "RETURNED_KEY",
    "AccountAssignment",
    "Dispatcher",
    "RoundResult",
    "build_strategy",
    "commit_move",
    "is_escalated",
    "lock_pool",
    "move",
    "office_hours_file",
    "returned_by",
]

log = logging.getLogger("civicchat.service.dispatch")

ESCALATED_KEY = "escalated"  # conversation.data: {"operator", "at", "waited_seconds"}
EXCLUDED_KEY = "dispatch_excluded"  # conversation.data: operators who let it time out
RETURNED_KEY = "returned_by"  # conversation.data: operators who put it back in the queue
PRESENCE_TIMEOUT = timedelta(minutes=5)  # available without a sign of life: set away
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
    turn between rounds of this process only. With ``office_hours`` (the hours, or a function
    that returns the current ones: see :func:`office_hours_file`) nothing is assigned while the
    office is closed.
    """

    account: str
    strategy: AssignmentStrategy
    reply_timeout: timedelta = timedelta(minutes=10)
    group: str | None = None
    office_hours: OfficeHours | Callable[[], OfficeHours | None] | None = None

    @property
    def pool(self) -> str:
        """The operator pool this account draws from (the key of the round's lock)."""
        return self.group or self.account

    def closed_at(self, at: datetime) -> bool:
        """Whether the office of this account is closed at ``at`` (never, without hours)."""
        hours = self.office_hours
        if hours is not None and not isinstance(hours, OfficeHours):
            hours = hours()
        return hours is not None and not hours.is_open(at)


def office_hours_file(path: Path) -> Callable[[], OfficeHours | None]:
    """The office hours of ``path``, read again when the file changes (an admin's edit applies
    at the next round); a file that no longer loads keeps the last good hours."""
    cache: dict[str, Any] = {}

    def current() -> OfficeHours | None:
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return cache.get("hours")
        if cache.get("stamp") != stamp:
            try:
                cache["hours"] = load_office_hours(path)
            except ConfigError as exc:
                log.warning("office hours %s not reloaded: %s", path.name, exc)
            cache["stamp"] = stamp
        return cache.get("hours")

    return current


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What one round did: ``(conversation id, operator id)`` pairs."""

    assigned: tuple[tuple[int, int], ...] = ()
    reassigned: tuple[tuple[int, int], ...] = ()
    escalated: tuple[tuple[int, int], ...] = ()
    requeued: tuple[tuple[int, int], ...] = ()  # their operator went offline
    away: tuple[int, ...] = ()  # operators set away: no sign of life for presence_timeout

    def __add__(self, other: RoundResult) -> RoundResult:
        return RoundResult(
            self.assigned + other.assigned,
            self.reassigned + other.reassigned,
            self.escalated + other.escalated,
            self.requeued + other.requeued,
            self.away + other.away,
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


def returned_by(conv: Conversation) -> frozenset[int]:
    """The operators who put ``conv`` back in the queue during its current wait."""
    raw = (conv.data or {}).get(RETURNED_KEY)
    if not isinstance(raw, list):
        return frozenset()
    return frozenset(x for x in raw if isinstance(x, int))


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass
class _Round:
    """What a round learnt about one account and decided."""

    events: list[LiveEvent] = field(default_factory=list)
    result: RoundResult = RoundResult()


class Dispatcher:
    """The worker that assigns queued conversations to operators (see the module docstring).

    ``store`` is the service's :class:`~civicchat.storage.SqlStore`; ``live`` (optional) brings
    trigger events and carries the dispatcher's own (``conversation``, ``escalated``,
    ``presence``). ``presence_timeout`` (``None``: never) sets away an available operator whose
    console gave no sign of life for that long; operators never seen are left as they are.
    """

    def __init__(
        self,
        store: SqlStore,
        accounts: Iterable[AccountAssignment],
        *,
        clock: Clock,
        live: LiveBus | None = None,
        interval: float = 5.0,
        presence_timeout: timedelta | None = PRESENCE_TIMEOUT,
    ) -> None:
        if interval <= 0:
            raise ConfigError("the dispatcher interval must be positive")
        if presence_timeout is not None and presence_timeout <= timedelta(0):
            raise ConfigError("the presence timeout must be positive (or None: never)")
        self.presence_timeout = presence_timeout
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
                office_hours=office_hours_file(a.office_hours),
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
                await lock_pool(tx, pool)
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
        queries = assignment_queries(tx)
        staff = await _operators(tx, acct)
        if not staff:
            return _Round()
        out = _Round()
        status = await queries.operator_status([op.id for op in staff])
        staff = await self._expire(tx, acct, staff, status, now, out)
        loads = await queries.loads([op.id for op in staff])
        held = await queries.conversations(acct.account, "assigned", lock=True)
        queued = await queries.conversations(acct.account, "queued", limit=BACKLOG_LIMIT, lock=True)
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
            if status.get(op.id, _NO_STATUS).disabled:
                state = RoutingPresence.OFFLINE  # gives back what they hold, receives nothing
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

        opened = _open_since(await queries.assignments([r.id for r in held]))
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

        history = await queries.assignments([r.id for r in queued])
        for row in queued:
            last, released = _previous_operators(row, history.get(row.id, []))
            item = _item(row, now, last)
            returned = frozenset(str(x) for x in returned_by(row))
            avoid = item.excluded | released | returned
            assigner.enqueue(dataclasses.replace(item, excluded=avoid), now)
        decisions: list[Decision] = []
        for ro in presence.values():
            assigner.add_operator(ro)
        for ro in presence.values():
            if ro.presence is RoutingPresence.OFFLINE and assigner.load(ro.id):
                # Logged out holding conversations: back to the queue, keeping their age.
                decisions.extend(assigner.set_presence(ro.id, RoutingPresence.OFFLINE, now))

        if not acct.closed_at(now):
            decisions += [
                *assigner.dispatch(now),
                *assigner.check_timeouts(now),
                *assigner.dispatch(now),
            ]
        for decision in decisions:
            if isinstance(decision, Assign):
                await self._apply_assign(tx, acct, decision, now, out)
            elif isinstance(decision, Escalate):
                await self._apply_escalate(tx, acct, decision, now, out)
            elif isinstance(decision, Requeue):
                await self._apply_requeue(tx, decision, now, out)
        return out

    async def _expire(
        self,
        tx: Transaction,
        acct: AccountAssignment,
        staff: list[Operator],
        status: Mapping[int, OperatorStatus],
        now: datetime,
        out: _Round,
    ) -> list[Operator]:
        """``staff`` with the available operators not seen for ``presence_timeout`` set away
        (stored, audited and announced)."""
        if self.presence_timeout is None:
            return staff
        kept = []
        for op in staff:
            seen = status.get(op.id, _NO_STATUS).seen_at
            if op.presence is Presence.AVAILABLE and seen and now - seen > self.presence_timeout:
                op = dataclasses.replace(op, presence=Presence.AWAY)
                await tx.operators.save_operator(op)
                await tx.audit.audit(
                    AuditEntry(
                        now,
                        "system",
                        "presence_expired",
                        op.account,
                        {"operator": op.id, "seen_at": seen.isoformat()},
                    )
                )
                log.info("operator %d set away: no sign of life since %s", op.id, seen)
                out.result = out.result + RoundResult(away=(op.id,))
                out.events.append(
                    LiveEvent(
                        acct.account,
                        "presence",
                        data={"operator": op.id, "presence": "away", DISPATCH_MARK: "expired"},
                    )
                )
            kept.append(op)
        return kept

    async def _apply_requeue(
        self, tx: Transaction, decision: Requeue, now: datetime, out: _Round
    ) -> None:
        conv = await tx.conversations.get(int(decision.conversation_id))
        operator = int(decision.operator_id)
        if conv is None or conv.state != "assigned" or conv.assigned_operator != operator:
            return
        data = dict(conv.data or {})
        data.pop(ESCALATED_KEY, None)
        await commit_move(
            tx,
            conv,
            ConversationState.QUEUED,
            at=now,
            actor="system",
            note=decision.reason,
            data=data,
        )
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
        if operator in returned_by(conv):
            # Routing falls back on avoided operators when nobody else is free; one who put the
            # conversation back in the queue asked for someone else: it waits for them.
            return
        note = decision.reason if previous is None else f"{decision.reason} from {previous}"
        data = dict(conv.data or {})
        data.pop(ESCALATED_KEY, None)
        if previous is None:
            data.pop(EXCLUDED_KEY, None)  # a new wait starts with a clean slate
        else:
            data[EXCLUDED_KEY] = sorted({*_excluded(conv), str(previous)})
        await commit_move(
            tx,
            conv,
            ConversationState.ASSIGNED,
            at=now,
            actor="system",
            operator=operator,
            note=note,
            data=data,
        )
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


# --------------------------------------------------------------------------- moves


async def lock_pool(tx: Transaction, pool: str) -> None:
    """Hold the assignment lock of operator ``pool`` (an account's group, else the account)
    until ``tx`` ends: dispatcher rounds and console moves of one pool never overlap, in any
    process. Read the conversation again after taking it."""
    await assignment_queries(tx).lock_pool(pool)


def move(
    conv: Conversation,
    to: ConversationState,
    *,
    at: datetime,
    actor: str,
    operator: int | None = None,
    note: str = "",
) -> tuple[Conversation, LifecycleEntry]:
    """``conv`` moved to ``to`` through routing's :func:`~civicchat.routing.transition`, and the
    history entry of the move; nothing is written.

    Raises :class:`~civicchat.exceptions.RoutingError` for a move the lifecycle forbids.
    """
    new = transition(
        _view(conv),
        to,
        at=at,
        actor=actor,
        note=note,
        operator=None if operator is None else str(operator),
    )
    entry = new.history[-1]
    last = new.last_operator
    updated = dataclasses.replace(
        conv,
        state=new.state.value,
        assigned_operator=None if new.assigned_operator is None else int(new.assigned_operator),
        assigned_at=new.assigned_at,
        queued_at=new.queued_at,
        last_operator_reply_at=new.last_operator_reply_at,
        last_operator=int(last) if last is not None and last.isdigit() else conv.last_operator,
    )
    return updated, LifecycleEntry(
        conv.id, at, actor, entry.from_state.value, entry.to_state.value, entry.note or None
    )


async def commit_move(
    tx: Transaction,
    conv: Conversation,
    to: ConversationState,
    *,
    at: datetime,
    actor: str,
    operator: int | None = None,
    note: str = "",
    data: Mapping[str, Any] | None = None,
    operator_reply_at: datetime | None = None,
) -> Conversation:
    """:func:`move`, then write it in ``tx``: the conversation (with ``data`` if given), its
    history entry, and the assignment opened (to ``assigned``) or released (from it).

    ``operator_reply_at`` is an operator's reply that comes with the move (a reply that picks
    up a waiting conversation): written in the same save, after the move (which starts the
    reply timer afresh on ``assigned``), so the row is updated once.

    Take the pool's lock (:func:`lock_pool`) and read ``conv`` after it first.
    """
    moved, entry = move(conv, to, at=at, actor=actor, operator=operator, note=note)
    if data is not None:
        moved = dataclasses.replace(moved, data=dict(data))
    if operator_reply_at is not None:
        moved = dataclasses.replace(moved, last_operator_reply_at=operator_reply_at)
    if to is ConversationState.ASSIGNED and RETURNED_KEY in (moved.data or {}):
        # Someone has it again: the next wait starts without the list of who put it back.
        moved = dataclasses.replace(
            moved, data={k: v for k, v in (moved.data or {}).items() if k != RETURNED_KEY}
        )
    await tx.conversations.save(moved)
    await tx.history.record(entry)
    if moved.state == ConversationState.ASSIGNED.value and moved.assigned_operator is not None:
        await tx.assignments.assign(conv.id, moved.assigned_operator, at)
    elif conv.state == ConversationState.ASSIGNED.value:
        await tx.assignments.release(conv.id, at)
    return moved


# --------------------------------------------------------------------------- helpers

_NO_STATUS = OperatorStatus()


async def _operators(tx: Transaction, acct: AccountAssignment) -> list[Operator]:
    found: dict[int, Operator] = {}
    for scope in dict.fromkeys([acct.account, *([acct.group] if acct.group else [])]):
        for op in await tx.operators.operators(scope):
            # Administrators configure; they answer only by taking a conversation themselves.
            # (Supervisors are here, but only available once they said so in the console.)
            if op.role is not OperatorRole.ADMIN:
                found[op.id] = op
    return list(found.values())


def _open_since(history: Mapping[int, Sequence[Assignment]]) -> dict[int, datetime]:
    """When each conversation's open assignment began."""
    out: dict[int, datetime] = {}
    for cid, entries in history.items():
        opened = [a.assigned_at for a in entries if a.released_at is None]
        if opened:
            out[cid] = max(opened)
    return out


def _previous_operators(
    row: Conversation, history: Sequence[Assignment]
) -> tuple[str | None, frozenset[str]]:
    """The operator for sticky assignment, and those who gave the conversation back to the
    queue during this wait (sent it back or went offline): they are avoided, not preferred."""
    queued_at = row.queued_at
    released_now = frozenset(
        str(a.operator_id)
        for a in history
        if a.released_at and queued_at and a.released_at >= queued_at
    )
    last = str(history[-1].operator_id) if history else None
    if last is None and row.last_operator is not None:
        last = str(row.last_operator)
    return (None if last in released_now else last), released_now


def _excluded(row: Conversation) -> frozenset[str]:
    raw = (row.data or {}).get(EXCLUDED_KEY)
    if not isinstance(raw, list):
        return frozenset()
    return frozenset(str(x) for x in raw)


def _item(row: Conversation, now: datetime, last_operator: str | None) -> WaitingConversation:
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


def _view(conv: Conversation) -> ConversationView:
    try:
        state = ConversationState(conv.state)
    except ValueError:
        raise RoutingError(f"conversation {conv.id} has an unknown state {conv.state!r}") from None
    return ConversationView(
        id=str(conv.id),
        account=conv.account,
        channel=conv.channel,
        citizen_id=conv.recipient_id,
        state=state,
        language=conv.language,
        assigned_operator=None if conv.assigned_operator is None else str(conv.assigned_operator),
        assigned_at=conv.assigned_at,
        last_operator=None if conv.last_operator is None else str(conv.last_operator),
        queued_at=conv.queued_at,
        last_inbound_at=conv.last_inbound_at,
        last_operator_reply_at=conv.last_operator_reply_at,
        priority=conv.priority,
        team=conv.team,
        topic=conv.topic,
    )
