"""Routing: office hours, the conversation lifecycle, the decision pipeline, operator assignment.

Routing is pure: it takes an immutable :class:`ConversationView` and an inbound message and
returns decisions plus the new view. It sends nothing and stores nothing.
"""

from __future__ import annotations

from civicchat.routing.assignment import (
    Assigner,
    Assignment,
    ByLanguage,
    ByTeam,
    LeastBusy,
    RoundRobin,
    Sticky,
    apply_decision,
    backlog_key,
)
from civicchat.routing.base import AssignmentStrategy
from civicchat.routing.decisions import (
    Assign,
    Decision,
    Enqueue,
    Escalate,
    NotifyOperator,
    Outcome,
    Reply,
    ReplyReason,
    Requeue,
)
from civicchat.routing.hours import (
    DayOff,
    Interval,
    OfficeHours,
    SpecialDay,
    load_office_hours,
    parse_ical_holidays,
    parse_office_hours,
)
from civicchat.routing.operators import Operator, OperatorLoad, Presence, WaitingConversation
from civicchat.routing.pipeline import (
    KEYWORD_BUTTON_PREFIX,
    LANGUAGE_CHOICE_CHANNELS,
    LanguageDetector,
    Pipeline,
    Router,
    known_language,
)
from civicchat.routing.reminder import ReminderPolicy
from civicchat.routing.state import (
    ALLOWED_TRANSITIONS,
    ConversationState,
    ConversationView,
    HistoryEntry,
    transition,
)
from civicchat.routing.texts import DEFAULT_TEXTS, RoutingTexts
from civicchat.routing.window import (
    WINDOW_CHANNELS,
    PreparedOutbound,
    prepare_outbound,
    window_closes_at,
    window_is_open,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "DEFAULT_TEXTS",
    "KEYWORD_BUTTON_PREFIX",
    "LANGUAGE_CHOICE_CHANNELS",
    "WINDOW_CHANNELS",
    "Assign",
    "Assigner",
    "Assignment",
    "AssignmentStrategy",
    "ByLanguage",
    "ByTeam",
    "ConversationState",
    "ConversationView",
    "DayOff",
    "Decision",
    "Enqueue",
    "Escalate",
    "HistoryEntry",
    "Interval",
    "LanguageDetector",
    "LeastBusy",
    "NotifyOperator",
    "OfficeHours",
    "Operator",
    "OperatorLoad",
    "Outcome",
    "Pipeline",
    "PreparedOutbound",
    "Presence",
    "ReminderPolicy",
    "Reply",
    "ReplyReason",
    "Requeue",
    "RoundRobin",
    "Router",
    "RoutingTexts",
    "SpecialDay",
    "Sticky",
    "WaitingConversation",
    "apply_decision",
    "backlog_key",
    "known_language",
    "load_office_hours",
    "parse_ical_holidays",
    "parse_office_hours",
    "prepare_outbound",
    "transition",
    "window_closes_at",
    "window_is_open",
]
