"""The decision pipeline: one inbound message in, decisions and the new conversation view out.

The rules, in order:

1. Keywords and the keyword index answer at any hour. While an operator attends a conversation,
   ordinary text goes to the operator; only a message that is exactly a keyword is still answered.
2. Otherwise, in office hours, the conversation is queued for a person with one acknowledgement
   per open period, not one per message. A citizen who keeps writing while queued gets a gentle
   reminder, paced by :class:`~civicchat.routing.ReminderPolicy` (at most one per interval,
   with the queue position when the caller gives it), never while an operator attends.
3. Out of hours: one out-of-hours reply per closed period, saying when the office reopens and how
   to use keywords; the conversation stays queued for the opening. A citizen who keeps writing
   gets a short "we have your message, a person answers you {reopening}", paced by
   :class:`~civicchat.routing.ReminderPolicy` (``out_of_hours_every``).
4. Media, locations, contact cards and unsupported content go to a person, acknowledged.
5. Replies outside WhatsApp's 24-hour window become the account's re-engagement template
   (:meth:`Pipeline.prepare_outbound`); the assigner serves windows about to close first.
6. Unclear keyword matches ask "Volia dir...?" / "¿Quería decir...?" (the responder's buttons).
7. The reply language: on channels where the citizen chooses a language (the web chat's
   selector, sent with every message as ``sender.language_hint``), that choice is the known
   language; elsewhere the conversation's last language is. A known language is kept unless the
   message itself is in another one (see ``docs/routing.md``).

The pipeline sends nothing and stores nothing.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol, cast

from civicchat.exceptions import ConfigError, RoutingError
from civicchat.keywords.base import AnswerKind, KeywordAnswer, KeywordResponder
from civicchat.messages import (
    InboundMessage,
    InteractiveReply,
    OutboundContent,
    Reaction,
    SystemNotice,
    Text,
)
from civicchat.routing.decisions import (
    Decision,
    Enqueue,
    NotifyOperator,
    Outcome,
    Reply,
    ReplyReason,
)
from civicchat.routing.hours import OfficeHours
from civicchat.routing.reminder import ReminderPolicy
from civicchat.routing.state import ConversationState, ConversationView, transition
from civicchat.routing.texts import DEFAULT_TEXTS, RoutingTexts
from civicchat.routing.window import (
    WINDOW_CHANNELS,
    PreparedOutbound,
    prepare_outbound,
    window_closes_at,
)

__all__ = [
    "KEYWORD_BUTTON_PREFIX",
    "LANGUAGE_CHOICE_CHANNELS",
    "LanguageDetector",
    "Pipeline",
    "Router",
    "known_language",
]

log = logging.getLogger("civicchat.routing")

KEYWORD_BUTTON_PREFIX = "kw:"
#: Channels whose ``sender.language_hint`` is the citizen's own choice, not a client setting.
LANGUAGE_CHOICE_CHANNELS: frozenset[str] = frozenset({"webchat"})
_REASON = {
    AnswerKind.KEYWORD: ReplyReason.KEYWORD,
    AnswerKind.INDEX: ReplyReason.INDEX,
    AnswerKind.CLARIFY: ReplyReason.CLARIFY,
}


class LanguageDetector(Protocol):
    """``civicchat.keywords.detect_language``'s shape: the reply language of ``text``."""

    def __call__(
        self,
        text: str,
        *,
        previous: str | None = None,
        default: str = "ca",
        hint: str | None = None,
    ) -> str: ...


def _find_detector() -> LanguageDetector | None:
    """The keyword engine's detector, if this civicchat has one (looked up, not imported, so
    routing works with any responder)."""
    try:
        module = importlib.import_module("civicchat.keywords")
    except ImportError:  # pragma: no cover - the package always exists
        return None
    found = getattr(module, "detect_language", None)
    return cast(LanguageDetector, found) if callable(found) else None


class Pipeline:
    """The routing policy of one account: its hours, keywords, texts and template.

    ``responder`` answers keywords (any :class:`~civicchat.keywords.base.KeywordResponder`);
    ``reengagement_template`` names the WhatsApp template sent when the 24-hour window has closed;
    ``languages`` are the reply languages, the first being the default (routing texts exist in
    Catalan and Spanish; add others through ``texts``); ``detect_language`` picks
    the language of a text (by default ``civicchat.keywords.detect_language`` when it exists,
    else the responder's answer language or the conversation's last one); ``reminder`` paces
    the reminders to a citizen who keeps writing while queued (``None``: no reminders);
    ``language_choice_channels`` are the channels whose ``sender.language_hint`` is the
    citizen's explicit choice of language (by default the web chat's selector), which then
    wins over the conversation's last language.
    """

    def __init__(
        self,
        *,
        account: str,
        office_hours: OfficeHours,
        responder: KeywordResponder,
        texts: RoutingTexts = DEFAULT_TEXTS,
        reengagement_template: str | None = None,
        languages: Sequence[str] = ("ca", "es"),
        detect_language: LanguageDetector | None = None,
        reminder: ReminderPolicy | None = ReminderPolicy(),  # noqa: B008 - frozen, shared safely
        language_choice_channels: Collection[str] = LANGUAGE_CHOICE_CHANNELS,
    ) -> None:
        if not languages:
            raise ConfigError("Pipeline needs at least one language, e.g. languages=('ca', 'es')")
        missing = [lang for lang in languages if lang not in texts.languages]
        if missing:
            raise ConfigError(
                f"account {account}: routing texts have no {', '.join(missing)} version; "
                "add them to RoutingTexts or drop those languages"
            )
        self.account = account
        self.office_hours = office_hours
        self.responder = responder
        self.texts = texts
        self.reengagement_template = reengagement_template
        self.reminder = reminder
        self.languages = tuple(languages)
        if isinstance(language_choice_channels, str):
            raise ConfigError(
                "language_choice_channels is a collection of channel names, e.g. ('webchat',)"
            )
        self.language_choice_channels = frozenset(language_choice_channels)
        self.detect_language = detect_language if detect_language is not None else _find_detector()
        try:
            self._hours_text = {lang: office_hours.describe(lang) for lang in self.languages}
        except ValueError as exc:
            raise ConfigError(f"account {account}: {exc}") from exc

    def __repr__(self) -> str:
        return f"Pipeline(account={self.account!r}, languages={self.languages!r})"

    def set_office_hours(self, office_hours: OfficeHours) -> None:
        """Put new office hours in force (an edit in the admin) for every later decision.

        Raises :class:`~civicchat.exceptions.ConfigError`, leaving the hours in force untouched,
        when the new hours cannot be described in one of the pipeline's languages.
        """
        try:
            hours_text = {lang: office_hours.describe(lang) for lang in self.languages}
        except ValueError as exc:
            raise ConfigError(f"account {self.account}: {exc}") from exc
        self.office_hours = office_hours
        self._hours_text = hours_text

    # ------------------------------------------------------------------ public

    def decide(
        self,
        view: ConversationView,
        message: InboundMessage,
        now: datetime,
        *,
        queue_position: int | None = None,
    ) -> Outcome:
        """Decide what to do with ``message`` on conversation ``view`` at ``now``.

        ``queue_position`` (1 = next to be served), when the caller knows it, goes into a
        reminder to a citizen who keeps writing while queued.
        """
        if now.tzinfo is None:
            raise ValueError("Pipeline.decide needs a zone-aware 'now'")
        if message.account != view.account or view.account != self.account:
            raise RoutingError(
                f"message for account {message.account!r} given to conversation {view.id} of "
                f"{view.account!r} in the pipeline of {self.account!r}"
            )
        content = message.content
        if isinstance(content, Reaction | SystemNotice):
            # Neither asks for an answer; a reaction is not counted as reopening the window.
            return Outcome(view)
        last_in = view.last_inbound_at
        if last_in is None or message.timestamp > last_in:
            view = view.replace(last_inbound_at=message.timestamp)
        if view.state is ConversationState.CLOSED:
            view = transition(view, ConversationState.BOT, at=now, actor="citizen")

        context: dict[str, object] = {
            "name": message.sender.name or "",
            "now": now,
            "office_hours": self._hours_text,
            "language_hint": _short(message.sender.language_hint),
        }
        known = self._known_language(view, message)
        text: str | None = None
        answer: KeywordAnswer | None = None
        chosen = False  # a keyword picked from a button counts as exactly that keyword
        if isinstance(content, Text):
            text = content.body
        elif isinstance(content, InteractiveReply):
            if content.reply_id.startswith(KEYWORD_BUTTON_PREFIX):
                answer = self.responder.answer_choice(
                    content.reply_id.removeprefix(KEYWORD_BUTTON_PREFIX),
                    language=self._language(known, None, message),
                    context=context,
                )
                chosen = answer is not None
            if answer is None:
                text = content.title
        if text is not None and text.strip():
            answer = self.responder.answer(text, language=known, context=context)
        language = self._language(known, text, message, answer)
        view = view.replace(language=language)

        if view.state is ConversationState.ASSIGNED:
            return self._attended(view, answer if chosen or _is_exact(answer) else None)
        if answer is not None:
            log.debug("conversation %s: automatic %s answer", view.id, answer.kind.value)
            return Outcome(view, (self._reply(answer),))
        return self._handoff(view, now, language, queue_position)

    def prepare_outbound(
        self, view: ConversationView, contents: Sequence[OutboundContent], now: datetime
    ) -> PreparedOutbound:
        """:func:`~civicchat.routing.window.prepare_outbound` with this account's template."""
        return prepare_outbound(
            view, contents, now, self.reengagement_template, default_language=self.languages[0]
        )

    # ------------------------------------------------------------------ rules

    def _attended(self, view: ConversationView, exact: KeywordAnswer | None) -> Outcome:
        """Rule 1 while a person attends: only an exact keyword is still answered."""
        operator = view.assigned_operator or ""
        decisions: list[Decision] = []
        if exact is not None:
            decisions.append(self._reply(exact))
            decisions.append(NotifyOperator(view.id, operator, reason="keyword_answered"))
        else:
            decisions.append(NotifyOperator(view.id, operator, reason="message"))
        return Outcome(view, tuple(decisions))

    def _handoff(
        self, view: ConversationView, now: datetime, language: str, position: int | None
    ) -> Outcome:
        decisions: list[Decision] = []
        if view.state is ConversationState.BOT:
            view = transition(view, ConversationState.QUEUED, at=now, actor="bot", note="handoff")
            log.info("conversation %s queued for a person", view.id)
        # Also while already queued: the new message moved the WhatsApp window, so the assigner's
        # entry is refreshed (enqueueing is idempotent).
        decisions.append(
            Enqueue(
                view.id,
                view.priority,
                view.queued_at or now,
                language=language,
                team=view.team,
                window_closes_at=_window_deadline(view),
            )
        )
        hours = self.office_hours
        period = hours.period_key(now)
        if hours.is_open(now):
            if view.last_ack_period != period:
                body = self.texts.render("ack", language)
                decisions.append(Reply((Text(body=body),), ReplyReason.ACK, language))
                view = view.replace(last_ack_period=period, last_ack_at=now, messages_since_ack=1)
            elif self.reminder is not None and self.reminder.due(view, now):
                decisions.append(
                    Reply(
                        (Text(body=self._reminder(language, position)),),
                        ReplyReason.REMINDER,
                        language,
                    )
                )
                view = view.replace(last_ack_at=now, messages_since_ack=1)
                log.debug("conversation %s: reminder while queued", view.id)
            else:
                view = view.replace(messages_since_ack=view.messages_since_ack + 1)
        elif view.last_out_of_hours_period != period:
            if hours.next_opening(now) is None:
                body = self.texts.render("out_of_hours_unknown", language)
            else:
                body = self.texts.render(
                    "out_of_hours",
                    language,
                    reopening=hours.reopening_phrase(now, language),
                    hours=self._hours_text.get(language) or hours.describe(language),
                )
            decisions.append(Reply((Text(body=body),), ReplyReason.OUT_OF_HOURS, language))
            view = view.replace(
                last_out_of_hours_period=period, last_ack_at=now, messages_since_ack=1
            )
        elif self.reminder is not None and self.reminder.due_closed(view, now):
            if hours.next_opening(now) is None:
                body = self.texts.render("out_of_hours_reminder_unknown", language)
            else:
                body = self.texts.render(
                    "out_of_hours_reminder",
                    language,
                    reopening=hours.reopening_phrase(now, language),
                )
            decisions.append(Reply((Text(body=body),), ReplyReason.REMINDER, language))
            view = view.replace(last_ack_at=now, messages_since_ack=view.messages_since_ack + 1)
            log.debug("conversation %s: reminder while closed", view.id)
        elif view.last_ack_at is not None:
            view = view.replace(messages_since_ack=view.messages_since_ack + 1)
        return Outcome(view, tuple(decisions))

    # ------------------------------------------------------------------ helpers

    def _reminder(self, language: str, position: int | None) -> str:
        if position is not None and position >= 1:
            return self.texts.render("reminder_position", language, position=str(position))
        return self.texts.render("reminder", language)

    def _reply(self, answer: KeywordAnswer) -> Reply:
        return Reply(answer.contents, _REASON[answer.kind], answer.language)

    def _known_language(self, view: ConversationView, message: InboundMessage) -> str | None:
        return known_language(
            message.channel,
            message.sender.language_hint,
            view.language,
            self.languages,
            self.language_choice_channels,
        )

    def _language(
        self,
        known: str | None,
        text: str | None,
        message: InboundMessage,
        answer: KeywordAnswer | None = None,
    ) -> str:
        if answer is not None and answer.language in self.languages:
            return answer.language
        hint = _short(message.sender.language_hint)
        if text and self.detect_language is not None:
            found = self.detect_language(text, previous=known, default=self.languages[0], hint=hint)
            if found in self.languages:
                return found
        for candidate in (known, hint):
            if candidate in self.languages:
                return candidate
        return self.languages[0]


class Router:
    """The pipelines of several accounts (numbers, bots, web chats), each with its own policy.

    ``Router([wa_pipeline, tg_pipeline]).decide(view, message, now)`` uses the pipeline of
    ``view.account``; an unknown account is a :class:`RoutingError`, never a silent default.
    """

    def __init__(self, pipelines: Sequence[Pipeline]) -> None:
        self.pipelines: dict[str, Pipeline] = {}
        for pipeline in pipelines:
            if pipeline.account in self.pipelines:
                raise ConfigError(f"two pipelines for account {pipeline.account!r}")
            self.pipelines[pipeline.account] = pipeline

    def pipeline(self, account: str) -> Pipeline:
        """The pipeline of ``account``."""
        try:
            return self.pipelines[account]
        except KeyError:
            raise RoutingError(
                f"no routing pipeline for account {account!r}; known: {sorted(self.pipelines)}"
            ) from None

    def decide(
        self,
        view: ConversationView,
        message: InboundMessage,
        now: datetime,
        *,
        queue_position: int | None = None,
    ) -> Outcome:
        """:meth:`Pipeline.decide` of the conversation's account."""
        return self.pipeline(view.account).decide(view, message, now, queue_position=queue_position)


def _window_deadline(view: ConversationView) -> datetime | None:
    return window_closes_at(view.last_inbound_at) if view.channel in WINDOW_CHANNELS else None


def _is_exact(answer: KeywordAnswer | None) -> bool:
    if answer is None:
        return False
    if answer.kind is AnswerKind.INDEX:
        return True
    match = answer.match
    return answer.kind is AnswerKind.KEYWORD and match is not None and match.exact


def known_language(
    channel: str,
    hint: str | None,
    previous: str | None,
    languages: Collection[str],
    choice_channels: Collection[str] = LANGUAGE_CHOICE_CHANNELS,
) -> str | None:
    """The citizen's chosen language, else ``previous`` (the conversation's, None if unknown).

    On a channel of ``choice_channels`` the sender's ``language_hint`` is the citizen's own
    choice (the web chat's selector): it wins when it is one of ``languages`` (``es-ES`` and
    ``es_ES`` count as ``es``). Elsewhere a hint is a client setting and ``previous`` stays.
    The pipeline and the report flow both decide this way.

    >>> known_language("webchat", "es-ES", "ca", ("ca", "es"))
    'es'
    >>> known_language("whatsapp", "es", "ca", ("ca", "es"))
    'ca'
    >>> known_language("webchat", "fr", None, ("ca", "es")) is None
    True
    """
    if channel in choice_channels:
        choice = _short(hint)
        if choice is not None and choice in languages:
            return choice
    return previous


def _short(language: str | None) -> str | None:
    if not language:
        return None
    return language.replace("_", "-").split("-", 1)[0].lower()
