"""A simulated day and a half of traffic through the pipeline and the assigner.

Monday 00:00 to Tuesday 16:00 (new citizens until Tuesday 10:00) in Mataró: 2,000 citizens, some writing at night, keywords, photos,
follow-ups; five operators with capacities, a slow one, a break and a dropped connection. The test
checks the promises of the issue: no conversation starves, no capacity is exceeded, and every
citizen gets exactly one acknowledgement or out-of-hours reply per period in which they waited.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta

from routing_support import FakeResponder, inbound, local

from civicchat.messages import Media, MediaKind
from civicchat.routing import (
    Assign,
    Assigner,
    ByLanguage,
    ConversationState,
    ConversationView,
    Decision,
    Enqueue,
    LeastBusy,
    OfficeHours,
    Operator,
    Pipeline,
    Presence,
    ReplyReason,
    Requeue,
    Sticky,
    WaitingConversation,
    apply_decision,
    transition,
)

START = local(2026, 6, 15, 0, 0)  # a Monday
LAST_FIRST_MESSAGE = local(2026, 6, 16, 10, 0)
END = local(2026, 6, 16, 16, 0)
CITIZENS = 2000

OPERATORS = [
    Operator("anna", capacity=5, languages=frozenset({"ca", "es"})),
    Operator("bob", capacity=4, languages=frozenset({"es"})),
    Operator("carme", capacity=4, languages=frozenset({"ca"})),
    Operator("dani", capacity=3),
    Operator("eva", capacity=3),  # slow to answer: her conversations time out and move
]
PRESENCE: dict[datetime, list[tuple[str, Presence]]] = defaultdict(list)
for day in (0, 1):
    for op in OPERATORS:
        PRESENCE[local(2026, 6, 15 + day, 8, 0)].append((op.id, Presence.AVAILABLE))
        PRESENCE[local(2026, 6, 15 + day, 19, 0)].append((op.id, Presence.OFFLINE))
PRESENCE[local(2026, 6, 15, 11, 0)].append(("carme", Presence.AWAY))
PRESENCE[local(2026, 6, 15, 11, 30)].append(("carme", Presence.AVAILABLE))
PRESENCE[local(2026, 6, 15, 15, 0)].append(("dani", Presence.OFFLINE))
PRESENCE[local(2026, 6, 15, 16, 0)].append(("dani", Presence.AVAILABLE))


def _no_detector(
    text: str, *, previous: str | None = None, default: str = "ca", hint: str | None = None
) -> str:
    return previous or hint or default


def test_a_simulated_day_of_traffic(mataro: OfficeHours) -> None:
    rng = random.Random(20260615)
    pipeline = Pipeline(
        account="wa-010",
        office_hours=mataro,
        responder=FakeResponder(),
        reengagement_template="reprendre_conversa",
        detect_language=_no_detector,
    )
    assigner = Assigner(
        Sticky(ByLanguage(LeastBusy())), operators=OPERATORS, reply_timeout=timedelta(minutes=10)
    )
    capacity = {op.id: op.capacity for op in OPERATORS}
    presence = {op.id: Presence.OFFLINE for op in OPERATORS}

    # The citizens' messages: (minute, conversation, content, needs a person?)
    minutes = int((END - START).total_seconds() // 60)
    inbox: dict[int, list[tuple[str, object, bool, str]]] = defaultdict(list)
    for n in range(CITIZENS):
        cid = f"c{n:04d}"
        lang_hint = "es" if rng.random() < 0.3 else "ca"
        first = rng.randrange(0, int((LAST_FIRST_MESSAGE - START).total_seconds() // 60))
        roll = rng.random()
        if roll < 0.15:
            content: object = "bus"
            person = False
        elif roll < 0.25:
            content, person = "bu", False
        elif roll < 0.4:
            content = Media(media_kind=MediaKind.IMAGE, media_id=f"img{n}")
            person = True
        else:
            content, person = "Tinc un problema amb el rebut", True
        inbox[first].append((cid, content, person, lang_hint))
        for _ in range(rng.choice((0, 0, 1, 2))):
            inbox[first + rng.randrange(1, 300)].append(
                (cid, "Hola? Encara hi sou?", True, lang_hint)
            )

    views: dict[str, ConversationView] = {}
    handoff_periods: dict[str, set[str]] = defaultdict(set)  # when a citizen waited for a person
    notices: Counter[tuple[str, str]] = Counter()  # (conversation, period) -> ack/ooh replies
    queued_at: dict[str, datetime] = {}
    first_assigned: dict[str, datetime] = {}
    replies_due: dict[tuple[str, str], tuple[datetime, datetime]] = {}  # -> (reply, close)
    reassigned = escalated = requeued = 0

    def apply(decisions: list[Decision], now: datetime) -> None:
        nonlocal reassigned, escalated, requeued
        for d in decisions:
            if isinstance(d, Assign):
                views[d.conversation_id] = apply_decision(views[d.conversation_id], d, now)
                first_assigned.setdefault(d.conversation_id, now)
                reassigned += d.reason == "reassign"
                slow = d.operator_id == "eva" and rng.random() < 0.5
                reply = now + timedelta(
                    minutes=rng.randrange(12, 20) if slow else rng.randrange(1, 5)
                )
                close = reply + timedelta(minutes=rng.randrange(1, 5))
                replies_due[(d.conversation_id, d.operator_id)] = (reply, close)
            elif isinstance(d, Requeue):
                views[d.conversation_id] = apply_decision(views[d.conversation_id], d, now)
                requeued += 1
            else:
                escalated += 1

    def check_invariants() -> None:
        for op_id, cap in capacity.items():
            assert assigner.load(op_id) <= cap, f"{op_id} over capacity"
            if presence[op_id] is Presence.OFFLINE:
                assert assigner.load(op_id) == 0, f"{op_id} offline with conversations"
        for cid in assigner.held_by("eva") | assigner.held_by("anna"):
            assert views[cid].state is ConversationState.ASSIGNED

    for minute in range(minutes + 1):
        now = START + timedelta(minutes=minute)
        for op_id, new_presence in PRESENCE.get(now, ()):
            presence[op_id] = new_presence
            apply(assigner.set_presence(op_id, new_presence, now), now)

        for cid, content, person, hint in inbox.get(minute, ()):
            view = views.get(cid) or ConversationView(
                id=cid, account="wa-010", channel="whatsapp", citizen_id=cid
            )
            waiting_for_person = person and view.state is not ConversationState.ASSIGNED
            message = inbound(content, now, sender=cid, hint=hint)  # type: ignore[arg-type]
            outcome = pipeline.decide(view, message, now)
            views[cid] = outcome.view
            period = mataro.period_key(now)
            if waiting_for_person:
                handoff_periods[cid].add(period)
            for reply in outcome.replies:
                if reply.reason in (ReplyReason.ACK, ReplyReason.OUT_OF_HOURS):
                    notices[(cid, period)] += 1
                    assert (reply.reason is ReplyReason.ACK) == mataro.is_open(now)
            for decision in outcome.decisions:
                if isinstance(decision, Enqueue):
                    queued_at.setdefault(cid, now)
                    item = WaitingConversation.from_view(outcome.view, now)
                    apply(assigner.enqueue(item, now), now)

        for (cid, op_id), (reply_at, close_at) in list(replies_due.items()):
            current = assigner.assignment(cid)
            if current is None or current.operator_id != op_id:
                del replies_due[(cid, op_id)]  # moved to someone else meanwhile
                continue
            if now == reply_at:
                assigner.operator_replied(cid, now)
            if now >= close_at and current.replied_at is not None:
                views[cid] = transition(views[cid], ConversationState.CLOSED, at=now, actor=op_id)
                del replies_due[(cid, op_id)]
                apply(assigner.release(cid, now), now)

        apply(assigner.check_timeouts(now), now)
        check_invariants()

    # Exactly one acknowledgement or out-of-hours reply per period in which a citizen waited.
    expected = {(cid, p) for cid, periods in handoff_periods.items() for p in periods}
    assert set(notices) == expected
    assert all(count == 1 for count in notices.values())

    # Nobody starves: everyone who asked for a person got one, and quickly when the office was open.
    assert set(queued_at) <= set(first_assigned)
    assert assigner.waiting(END) == []
    for cid, asked in queued_at.items():
        opening = mataro.next_opening(asked)
        assert opening is not None
        assert first_assigned[cid] - opening < timedelta(hours=4), cid

    # The scenario really exercised what it claims to.
    assert len(queued_at) > 1000
    assert reassigned > 0
    assert escalated > 0
    assert requeued > 0
    assert any(p.startswith("closed:") for _, p in notices)
