"""Operator assignment: strategies and the in-memory :class:`Assigner` that applies them.

Strategies compose explicitly; filters wrap a picker::

    >>> strategy = Sticky(ByTeam(ByLanguage(LeastBusy())))

The assigner owns presence, load and the backlog. Each method returns decisions
(:class:`~civicchat.routing.decisions.Assign`, :class:`~civicchat.routing.decisions.Requeue`,
:class:`~civicchat.routing.decisions.Escalate`) for the service to apply to the stored
conversations (:func:`apply_decision`); the storage layer persists the state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from civicchat.exceptions import ConfigError, RoutingError
from civicchat.routing.base import AssignmentStrategy
from civicchat.routing.decisions import Assign, Decision, Escalate, Requeue
from civicchat.routing.operators import Operator, OperatorLoad, Presence, WaitingConversation
from civicchat.routing.state import ConversationState, ConversationView, transition

__all__ = [
    "Assigner",
    "Assignment",
    "ByLanguage",
    "ByTeam",
    "LeastBusy",
    "RoundRobin",
    "Sticky",
    "apply_decision",
    "backlog_key",
]

log = logging.getLogger("civicchat.routing")


# --------------------------------------------------------------------------- strategies


class RoundRobin:
    """Takes turns among the candidates in the order of their ids."""

    def __init__(self) -> None:
        self._last: str | None = None

    def choose(self, item: WaitingConversation, candidates: Sequence[OperatorLoad]) -> str | None:
        ids = sorted(c.id for c in candidates)
        if not ids:
            return None
        following = [i for i in ids if self._last is None or i > self._last]
        self._last = following[0] if following else ids[0]
        return self._last


class LeastBusy:
    """The candidate with the lowest share of their capacity in use; ties go to whoever waited
    longest since their last assignment, then by id."""

    def choose(self, item: WaitingConversation, candidates: Sequence[OperatorLoad]) -> str | None:
        if not candidates:
            return None

        def key(c: OperatorLoad) -> tuple[float, float, str]:
            idle = c.last_assigned_at.timestamp() if c.last_assigned_at else float("-inf")
            return (c.load / c.operator.capacity, idle, c.id)

        return min(candidates, key=key).id


class ByLanguage:
    """Prefers operators who speak the conversation's language, then asks ``then``.

    With ``strict=False`` (default) a conversation whose language nobody available speaks goes to
    anyone rather than wait; with ``strict=True`` it waits.
    """

    def __init__(self, then: AssignmentStrategy | None = None, *, strict: bool = False) -> None:
        self.then: AssignmentStrategy = then if then is not None else LeastBusy()
        self.strict = strict

    def choose(self, item: WaitingConversation, candidates: Sequence[OperatorLoad]) -> str | None:
        speakers = [c for c in candidates if c.operator.speaks(item.language)]
        if not speakers and not self.strict:
            speakers = list(candidates)
        return self.then.choose(item, speakers) if speakers else None


class ByTeam:
    """Gives a conversation with a team (or topic) to that team's operators, then asks ``then``.

    ``strict=True`` (default) keeps it waiting for its team; ``strict=False`` lets anyone take it
    when no team member is free.
    """

    def __init__(self, then: AssignmentStrategy | None = None, *, strict: bool = True) -> None:
        self.then: AssignmentStrategy = then if then is not None else LeastBusy()
        self.strict = strict

    def choose(self, item: WaitingConversation, candidates: Sequence[OperatorLoad]) -> str | None:
        members = [c for c in candidates if c.operator.in_team(item.team)]
        if not members and not self.strict:
            members = list(candidates)
        return self.then.choose(item, members) if members else None


class Sticky:
    """The operator who last helped this citizen, when free; otherwise ``then``."""

    def __init__(self, then: AssignmentStrategy | None = None) -> None:
        self.then: AssignmentStrategy = then if then is not None else LeastBusy()

    def choose(self, item: WaitingConversation, candidates: Sequence[OperatorLoad]) -> str | None:
        if item.last_operator is not None and any(c.id == item.last_operator for c in candidates):
            return item.last_operator
        return self.then.choose(item, candidates)


# --------------------------------------------------------------------------- ordering


def backlog_key(
    item: WaitingConversation, now: datetime, window_margin: timedelta
) -> tuple[int, float, int, float, str]:
    """Sort key of the backlog: first the conversations whose WhatsApp window closes within
    ``window_margin`` (soonest first), then by priority (high first), then by age (oldest first).

    A window that is already closed gains nothing from hurrying (a template is needed anyway), so
    it sorts with the rest.
    """
    closes = item.window_closes_at
    urgent = closes is not None and now < closes <= now + window_margin
    return (
        0 if urgent else 1,
        closes.timestamp() if urgent and closes is not None else 0.0,
        -item.priority,
        item.queued_at.timestamp(),
        item.conversation_id,
    )


# --------------------------------------------------------------------------- the assigner


@dataclass(frozen=True, slots=True)
class Assignment:
    """Who holds a conversation, since when, and whether they replied or it was escalated."""

    item: WaitingConversation
    operator_id: str
    assigned_at: datetime
    replied_at: datetime | None = None
    escalated: bool = False


class Assigner:
    """Matches the backlog with operators, one account or one operator team at a time.

    Guarantees: an operator never holds more than ``capacity`` conversations; only available
    operators receive new ones; whenever capacity appears (an operator becomes available, a
    conversation is released) the backlog is served in :func:`backlog_key` order until capacity
    or backlog runs out; a conversation without an operator reply ``reply_timeout`` after
    assignment is reassigned to another free operator, or escalated once if there is none.

    Pure in-memory state: the caller persists it (the storage area) and applies the returned
    decisions to the conversations with :func:`apply_decision`.
    """

    def __init__(
        self,
        strategy: AssignmentStrategy,
        *,
        operators: Iterable[Operator] = (),
        reply_timeout: timedelta = timedelta(minutes=10),
        window_margin: timedelta = timedelta(hours=2),
    ) -> None:
        if reply_timeout <= timedelta(0):
            raise ConfigError("reply_timeout must be positive, e.g. timedelta(minutes=10)")
        self.strategy = strategy
        self.reply_timeout = reply_timeout
        self.window_margin = window_margin
        self._operators: dict[str, Operator] = {}
        self._held: dict[str, set[str]] = {}
        self._last_assigned: dict[str, datetime] = {}
        self._waiting: dict[str, WaitingConversation] = {}
        self._assignments: dict[str, Assignment] = {}
        for op in operators:
            self.add_operator(op)

    # ------------------------------------------------------------------ reading

    @property
    def operators(self) -> tuple[Operator, ...]:
        return tuple(self._operators.values())

    def operator(self, operator_id: str) -> Operator:
        try:
            return self._operators[operator_id]
        except KeyError:
            raise RoutingError(f"unknown operator {operator_id!r}") from None

    def load(self, operator_id: str) -> int:
        """How many conversations ``operator_id`` holds now."""
        return len(self._held.get(operator_id, ()))

    def held_by(self, operator_id: str) -> frozenset[str]:
        return frozenset(self._held.get(operator_id, ()))

    def assignment(self, conversation_id: str) -> Assignment | None:
        return self._assignments.get(conversation_id)

    def waiting(self, now: datetime) -> list[WaitingConversation]:
        """The backlog in serving order."""
        return sorted(self._waiting.values(), key=lambda i: backlog_key(i, now, self.window_margin))

    # ------------------------------------------------------------------ operators

    def add_operator(self, operator: Operator) -> None:
        """Register (or update) an operator; call :meth:`dispatch` if they are available."""
        self._operators[operator.id] = operator
        self._held.setdefault(operator.id, set())

    def set_presence(self, operator_id: str, presence: Presence, now: datetime) -> list[Decision]:
        """Change presence. Available: serve the backlog. Offline: their conversations go back to
        the queue (keeping their age) and to other operators if any is free."""
        op = self.operator(operator_id)
        self._operators[operator_id] = replace(op, presence=presence)
        decisions: list[Decision] = []
        if presence is Presence.OFFLINE:
            for conversation_id in sorted(self._held[operator_id]):
                decisions.append(self._requeue(conversation_id, "operator_offline"))
        decisions.extend(self.dispatch(now))
        return decisions

    # ------------------------------------------------------------------ conversations

    def enqueue(self, item: WaitingConversation, now: datetime) -> list[Decision]:
        """Add a conversation to the backlog (or refresh it: a new message moves its WhatsApp
        window) and serve the backlog."""
        if item.conversation_id in self._assignments:
            raise RoutingError(f"conversation {item.conversation_id} is already assigned")
        known = self._waiting.get(item.conversation_id)
        if known is not None:
            item = replace(
                item, queued_at=min(known.queued_at, item.queued_at), excluded=known.excluded
            )
        self._waiting[item.conversation_id] = item
        return self.dispatch(now)

    def adopt(
        self,
        item: WaitingConversation,
        operator_id: str,
        assigned_at: datetime,
        replied_at: datetime | None = None,
    ) -> None:
        """Rebuild an existing assignment (after a restart, from stored conversations).

        No decision results: the conversation is already with ``operator_id``. Loads above a
        capacity that was lowered meanwhile are kept; the operator simply gets nothing new until
        below it.
        """
        self.operator(operator_id)
        if item.conversation_id in self._assignments:
            raise RoutingError(f"conversation {item.conversation_id} is already assigned")
        self._waiting.pop(item.conversation_id, None)
        self._held[operator_id].add(item.conversation_id)
        self._assignments[item.conversation_id] = Assignment(
            item, operator_id, assigned_at, replied_at=replied_at
        )

    def operator_replied(self, conversation_id: str, now: datetime) -> None:
        """Record the first operator reply (stops the reassignment timer)."""
        current = self._assignments.get(conversation_id)
        if current is None:
            raise RoutingError(f"conversation {conversation_id} is not assigned")
        if current.replied_at is None:
            self._assignments[conversation_id] = replace(current, replied_at=now)

    def release(self, conversation_id: str, now: datetime) -> list[Decision]:
        """The conversation was closed or went back to the bot: forget it and serve the backlog."""
        self._waiting.pop(conversation_id, None)
        current = self._assignments.pop(conversation_id, None)
        if current is not None:
            self._held[current.operator_id].discard(conversation_id)
        return self.dispatch(now)

    def transfer(self, conversation_id: str, to_operator: str, now: datetime) -> list[Decision]:
        """Give an assigned conversation to another operator, who must be available with room."""
        current = self._assignments.get(conversation_id)
        if current is None:
            raise RoutingError(f"conversation {conversation_id} is not assigned; cannot transfer")
        target = self.operator(to_operator)
        if target.id == current.operator_id:
            raise RoutingError(f"conversation {conversation_id} is already with {to_operator}")
        if target.presence is not Presence.AVAILABLE:
            raise RoutingError(f"operator {to_operator} is {target.presence.value}, not available")
        if self.load(to_operator) >= target.capacity:
            raise RoutingError(f"operator {to_operator} is at capacity ({target.capacity})")
        self._held[current.operator_id].discard(conversation_id)
        decision = self._assign(current.item, to_operator, now, "transfer", current.operator_id)
        return [decision, *self.dispatch(now)]

    def transfer_to_team(self, conversation_id: str, team: str, now: datetime) -> list[Decision]:
        """Send an assigned conversation back to the queue for ``team``'s operators."""
        current = self._assignments.get(conversation_id)
        if current is None:
            raise RoutingError(f"conversation {conversation_id} is not assigned; cannot transfer")
        self._assignments[conversation_id] = replace(current, item=replace(current.item, team=team))
        return [self._requeue(conversation_id, f"transfer to team {team}"), *self.dispatch(now)]

    def check_timeouts(self, now: datetime) -> list[Decision]:
        """Reassign (or escalate once) conversations with no operator reply after the timeout."""
        decisions: list[Decision] = []
        for conversation_id, current in sorted(self._assignments.items()):
            if current.replied_at is not None or current.escalated:
                continue
            if now - current.assigned_at < self.reply_timeout:
                continue
            item = replace(current.item, excluded=current.item.excluded | {current.operator_id})
            others = [c for c in self._candidates(item) if c.id != current.operator_id]
            chosen = self.strategy.choose(item, others) if others else None
            if chosen is not None:
                self._check_choice(chosen, others)
                self._held[current.operator_id].discard(conversation_id)
                decisions.append(self._assign(item, chosen, now, "reassign", current.operator_id))
            else:
                self._assignments[conversation_id] = replace(current, escalated=True)
                decisions.append(
                    Escalate(conversation_id, current.operator_id, now - current.assigned_at)
                )
                log.warning(
                    "conversation %s: no reply from operator %s for %s, escalated",
                    conversation_id,
                    current.operator_id,
                    now - current.assigned_at,
                )
        return decisions

    def dispatch(self, now: datetime) -> list[Decision]:
        """Serve the backlog in order while any available operator has room."""
        decisions: list[Decision] = []
        if not self._waiting or not self._has_room():
            return decisions
        for item in self.waiting(now):
            candidates = self._candidates(item)
            if not candidates:
                continue
            chosen = self.strategy.choose(item, candidates)
            if chosen is None:
                continue
            self._check_choice(chosen, candidates)
            del self._waiting[item.conversation_id]
            reason = "sticky" if chosen == item.last_operator else "dispatch"
            decisions.append(self._assign(item, chosen, now, reason, None))
            if not self._has_room():
                break
        return decisions

    # ------------------------------------------------------------------ internals

    def _has_room(self) -> bool:
        return any(
            op.presence is Presence.AVAILABLE and self.load(op.id) < op.capacity
            for op in self._operators.values()
        )

    def _candidates(self, item: WaitingConversation) -> list[OperatorLoad]:
        free = [
            OperatorLoad(op, self.load(op.id), self._last_assigned.get(op.id))
            for op in self._operators.values()
            if op.presence is Presence.AVAILABLE and self.load(op.id) < op.capacity
        ]
        # Operators who let this conversation time out are avoided, unless nobody else is free:
        # better them than starvation.
        preferred = [c for c in free if c.id not in item.excluded]
        return preferred or free

    def _check_choice(self, chosen: str, candidates: Sequence[OperatorLoad]) -> None:
        if not any(c.id == chosen for c in candidates):
            raise RoutingError(
                f"the assignment strategy chose {chosen!r}, who is not a free candidate"
            )

    def _assign(
        self,
        item: WaitingConversation,
        operator_id: str,
        now: datetime,
        reason: str,
        previous: str | None,
    ) -> Assign:
        self._held[operator_id].add(item.conversation_id)
        self._last_assigned[operator_id] = now
        self._assignments[item.conversation_id] = Assignment(item, operator_id, now)
        log.info("conversation %s assigned to %s (%s)", item.conversation_id, operator_id, reason)
        return Assign(item.conversation_id, operator_id, reason=reason, previous_operator=previous)

    def _requeue(self, conversation_id: str, reason: str) -> Requeue:
        current = self._assignments.pop(conversation_id)
        self._held[current.operator_id].discard(conversation_id)
        self._waiting[conversation_id] = replace(
            current.item, excluded=current.item.excluded | {current.operator_id}
        )
        return Requeue(conversation_id, current.operator_id, reason=reason)


def apply_decision(view: ConversationView, decision: Decision, now: datetime) -> ConversationView:
    """The conversation after an assigner decision (others leave it unchanged)."""
    if isinstance(decision, Assign) and decision.conversation_id == view.id:
        note = decision.reason
        if decision.previous_operator:
            note = f"{decision.reason} from {decision.previous_operator}"
        return transition(
            view,
            ConversationState.ASSIGNED,
            at=now,
            actor="system",
            note=note,
            operator=decision.operator_id,
        )
    if isinstance(decision, Requeue) and decision.conversation_id == view.id:
        return transition(
            view, ConversationState.QUEUED, at=now, actor="system", note=decision.reason
        )
    return view
