"""Explicit assembly of a civicchat bot: accounts, channels, keyword engines, routing pipelines,
and the inbox handler that turns one inbound message into conversation updates and replies.

The handler runs inside the inbox processor's transaction (``civicchat.storage.workers``): it
identifies the citizen, loads or opens the conversation, runs the account's routing
:class:`~civicchat.routing.Pipeline`, saves the new state and history, and returns the replies,
which the processor writes to the outbox in the same transaction::

    bot = Bot({"mataro-web": account}, clock=SystemClock())
    processor = InboxProcessor(store, bot.handle)

Nothing here reads the environment or sends anything.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from civicchat.cases.chat import CaseChat, other_keyword
from civicchat.cases.flow import FlowStep
from civicchat.channels.base import Channel
from civicchat.channels.degrade import degrade, match_numbered_reply
from civicchat.clock import Clock
from civicchat.exceptions import ConfigError, UnsupportedContentError
from civicchat.keywords.base import AnswerKind, KeywordAnswer, KeywordResponder
from civicchat.keywords.engine import KeywordEngine
from civicchat.messages import (
    Buttons,
    InboundMessage,
    ListMenu,
    Media,
    OutboundContent,
    OutboundMessage,
    Text,
    content_from_json,
)
from civicchat.routing import (
    ConversationState,
    ConversationView,
    HistoryEntry,
    Outcome,
    Pipeline,
    ReplyReason,
    RoutingTexts,
    transition,
)
from civicchat.storage.base import Conversation, InboxEvent, LifecycleEntry, Transaction
from civicchat.storage.workers import Reply

__all__ = [
    "AccountTexts",
    "Bot",
    "BotAccount",
    "HandledMessage",
    "RecordingResponder",
    "load_account_texts",
    "view_from_conversation",
]

logger = logging.getLogger("civicchat.bot")

HELD_KEY = "held"  # conversation.data: free-form contents waiting for the WhatsApp window
MENU_KEY = "menu"  # conversation.data: the last menu shown as numbered options


@dataclass(frozen=True, slots=True)
class AccountTexts:
    """An account's own messages, read from its ``templates.yaml``.

    ``routing`` feeds the pipeline (ack, out of hours); ``first_contact`` is the privacy notice
    per language (already filled); ``whatsapp_templates`` maps a purpose to the approved name.
    """

    routing: RoutingTexts | None = None
    first_contact: Mapping[str, str] = field(default_factory=dict)
    whatsapp_templates: Mapping[str, str] = field(default_factory=dict)


def load_account_texts(path: str | Path | None) -> AccountTexts:
    """Read a templates file (the format of ``examples/mataro/templates.yaml``)."""
    if path is None:
        return AccountTexts()
    try:
        data: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the templates file {path}: {exc}") from None
    templates = data.get("templates") if isinstance(data, dict) else None
    if not isinstance(templates, dict):
        raise ConfigError(f"{path}: expected a 'templates' mapping")

    def text_of(key: str) -> dict[str, str]:
        entry = templates.get(key)
        text = entry.get("text") if isinstance(entry, dict) else None
        if text is None:
            return {}
        if not isinstance(text, dict) or not all(isinstance(v, str) for v in text.values()):
            raise ConfigError(f"{path}: templates.{key}.text must map language to text")
        return {str(k): v for k, v in text.items()}

    routing_keys = ("ack", "out_of_hours", "out_of_hours_unknown")
    optional_keys = (
        "reminder",
        "reminder_position",
        "out_of_hours_reminder",
        "out_of_hours_reminder_unknown",
    )
    routing = None
    if all(text_of(k) for k in routing_keys):
        texts = {k: text_of(k) for k in routing_keys}
        texts.update({k: text_of(k) for k in optional_keys if text_of(k)})
        routing = RoutingTexts(texts)
    privacy = data.get("privacy_url") if isinstance(data, dict) else None
    privacy_urls = privacy if isinstance(privacy, dict) else {}
    first_contact = {}
    for lang, text in text_of("first_contact").items():
        url = privacy_urls.get(lang) or next(iter(privacy_urls.values()), "")
        first_contact[lang] = text.replace("{privacy_url}", str(url))
    names: dict[str, str] = {}
    for key, entry in templates.items():
        wa = entry.get("whatsapp") if isinstance(entry, dict) else None
        if isinstance(wa, dict) and isinstance(wa.get("name"), str):
            names[str(key)] = wa["name"]
    return AccountTexts(routing=routing, first_contact=first_contact, whatsapp_templates=names)


_last_answer: contextvars.ContextVar[KeywordAnswer | None] = contextvars.ContextVar(
    "civicchat_last_answer", default=None
)


class RecordingResponder:
    """A :class:`KeywordResponder` that remembers its last answer (for statistics and metrics)."""

    def __init__(self, inner: KeywordResponder) -> None:
        self.inner = inner

    def answer(
        self,
        text: str,
        *,
        language: str | None = None,
        context: Mapping[str, object] | None = None,
        max_length: int = 4096,
    ) -> KeywordAnswer | None:
        found = self.inner.answer(text, language=language, context=context, max_length=max_length)
        _last_answer.set(found)
        return found

    def answer_choice(
        self,
        keyword_id: str,
        *,
        language: str,
        context: Mapping[str, object] | None = None,
        max_length: int = 4096,
    ) -> KeywordAnswer | None:
        found = self.inner.answer_choice(
            keyword_id, language=language, context=context, max_length=max_length
        )
        _last_answer.set(found)
        return found


@dataclass(frozen=True)
class BotAccount:
    """One account of the bot: its channel, keyword engine, routing pipeline and texts."""

    name: str
    channel_name: str
    channel: Channel
    engine: KeywordEngine
    pipeline: Pipeline
    texts: AccountTexts = AccountTexts()
    display_name: str = ""
    catalog_path: Path | None = None
    first_contact_notice: bool = True

    @property
    def default_language(self) -> str:
        return self.pipeline.languages[0]


@dataclass(frozen=True, slots=True)
class HandledMessage:
    """What the handler did with one message (given to the ``on_handled`` callback)."""

    account: str
    channel: str
    conversation_id: int
    state_before: str
    state_after: str
    keyword: str | None  # "hit", "miss", "index", "clarify" or None (no text to match)
    keyword_id: str | None
    replies: int


def view_from_conversation(conv: Conversation) -> ConversationView:
    """The routing view of a stored conversation (operators are ``str(operator id)``)."""
    data = conv.data or {}
    assigned_at = data.get("assigned_at")
    last_ack_at = data.get("last_ack_at")
    since_ack = data.get("messages_since_ack")
    return ConversationView(
        id=str(conv.id),
        account=conv.account,
        channel=conv.channel,
        citizen_id=conv.recipient_id,
        state=ConversationState(conv.state),
        language=conv.language,
        assigned_operator=None if conv.assigned_operator is None else str(conv.assigned_operator),
        assigned_at=datetime.fromisoformat(assigned_at) if isinstance(assigned_at, str) else None,
        last_operator=data.get("last_operator"),
        queued_at=conv.queued_at,
        last_inbound_at=conv.last_inbound_at,
        last_operator_reply_at=conv.last_operator_reply_at,
        last_ack_period=conv.last_ack_period,
        last_out_of_hours_period=conv.last_out_of_hours_period,
        last_ack_at=datetime.fromisoformat(last_ack_at) if isinstance(last_ack_at, str) else None,
        messages_since_ack=since_ack if isinstance(since_ack, int) else 0,
        priority=conv.priority,
        team=conv.team,
        topic=data.get("topic"),
    )


def _apply_view(conv: Conversation, view: ConversationView) -> Conversation:
    data = dict(conv.data or {})
    data["assigned_at"] = view.assigned_at.isoformat() if view.assigned_at else None
    data["last_operator"] = view.last_operator
    # The reminders' pace (routing.ReminderPolicy), kept with the conversation.
    data["last_ack_at"] = view.last_ack_at.isoformat() if view.last_ack_at else None
    data["messages_since_ack"] = view.messages_since_ack
    if view.topic is not None:
        data["topic"] = view.topic
    operator = view.assigned_operator
    return dataclasses.replace(
        conv,
        state=view.state.value,
        language=view.language,
        assigned_operator=int(operator) if operator and operator.isdigit() else None,
        queued_at=view.queued_at,
        last_inbound_at=view.last_inbound_at,
        last_operator_reply_at=view.last_operator_reply_at,
        last_ack_period=view.last_ack_period,
        last_out_of_hours_period=view.last_out_of_hours_period,
        priority=view.priority,
        team=view.team,
        data=data,
    )


def _actor(entry: HistoryEntry) -> str:
    if entry.actor in ("bot", "citizen", "system"):
        return entry.actor
    return f"operator:{entry.actor}"


_KEYWORD_REASONS = {
    ReplyReason.KEYWORD: "hit",
    ReplyReason.INDEX: "index",
    ReplyReason.CLARIFY: "clarify",
}


class Bot:
    """The inbox handler of a set of accounts.

    ``on_handled`` is called (inside the transaction, so keep it cheap and I/O-free) with a
    :class:`HandledMessage` for metrics and live notifications.
    """

    def __init__(
        self,
        accounts: Mapping[str, BotAccount],
        *,
        clock: Clock,
        on_handled: Callable[[HandledMessage], None] | None = None,
        cases: CaseChat | None = None,
    ) -> None:
        for key, account in accounts.items():
            if key != account.name:
                raise ConfigError(f"bot account {account.name!r} registered under {key!r}")
        self.accounts = dict(accounts)
        self.clock = clock
        self.on_handled = on_handled
        self.cases = cases

    async def handle(self, event: InboxEvent, tx: Transaction) -> Reply:
        """Handle one inbound message event (see the module docstring)."""
        message = event.payload
        if not isinstance(message, InboundMessage):
            return Reply()
        account = self.accounts.get(message.account)
        if account is None or account.channel_name != message.channel:
            # Its account was removed or disabled since the webhook accepted it: keep the
            # event as done (it stays stored) rather than retrying it forever.
            logger.warning("event %d: no account %s/%s", event.id, message.channel, message.account)
            return Reply()
        now = self.clock.now()
        contact = await tx.contacts.identify(
            message.channel, message.account, message.sender.id, name=message.sender.name
        )
        conv = await tx.conversations.latest_for(message.channel, message.account, contact.id)
        first_contact = conv is None
        if conv is None:
            conv = await tx.conversations.create(
                channel=message.channel,
                account=message.account,
                contact_id=contact.id,
                recipient_id=message.sender.id,
                state=ConversationState.BOT.value,
            )
        data = dict(conv.data or {})
        routed = _numbered_answer(message, data.pop(MENU_KEY, None))
        view = view_from_conversation(conv)
        _last_answer.set(None)
        case_step = await self._case_step(account, view, data, routed, tx)
        if case_step is not None and case_step.handled:
            outcome = Outcome(_flow_view(view, routed, case_step, now))
        else:
            # Where a waiting citizen stands, for a reminder that says so (one count, only for
            # a conversation queued unassigned).
            position = await tx.conversations.queue_position(conv)
            outcome = account.pipeline.decide(view, routed, now, queue_position=position)
        answer = _last_answer.get()
        new_view = outcome.view

        contents: list[OutboundContent] = []
        language = new_view.language or account.default_language
        if first_contact and account.first_contact_notice:
            notice = account.texts.first_contact.get(language) or next(
                iter(account.texts.first_contact.values()), None
            )
            if notice:
                contents.append(Text(body=notice))
        held = data.pop(HELD_KEY, None)
        if held and isinstance(held, list):
            # The citizen answered the re-engagement template: the window is open again.
            for raw in held:
                try:
                    item = content_from_json(raw)
                except ValueError:
                    continue
                contents.append(item)  # type: ignore[arg-type]
        conv = dataclasses.replace(conv, data=data)
        if case_step is not None:
            contents.extend(case_step.contents)
        for reply in outcome.replies:
            contents.extend(reply.contents)

        keyword, keyword_id = self._keyword_result(message, outcome.replies, answer)
        if case_step is not None and case_step.handled:
            keyword = None  # the report flow answered: not a keyword miss
        if keyword_id is not None:
            await tx.keywords.count_keyword(account.name, keyword_id, now.date())

        saved = _apply_view(conv, new_view)
        messages, held_now, menu = self._outbound(account, saved, contents, now)
        if held_now or menu is not None:
            data = dict(saved.data)
            if held_now:
                # The window had closed before we got to it: the template went instead.
                data[HELD_KEY] = [c.model_dump_json() for c in held_now]
            if menu is not None:
                # Shown as numbered options: the next "2" means its second option.
                data[MENU_KEY] = menu.model_dump_json()
            saved = dataclasses.replace(saved, data=data)
        await tx.conversations.save(saved)
        for entry in new_view.history[len(view.history) :]:
            await tx.history.record(
                LifecycleEntry(
                    conversation_id=conv.id,
                    at=entry.at,
                    actor=_actor(entry),
                    from_state=entry.from_state.value,
                    to_state=entry.to_state.value,
                    note=entry.note or None,
                )
            )
        if self.on_handled is not None:
            self.on_handled(
                HandledMessage(
                    account=account.name,
                    channel=account.channel_name,
                    conversation_id=conv.id,
                    state_before=view.state.value,
                    state_after=new_view.state.value,
                    keyword=keyword,
                    keyword_id=keyword_id,
                    replies=len(messages),
                )
            )
        return Reply(messages, conversation_id=conv.id)

    # -- cases (civicchat.cases): the report flow answers before the routing pipeline -------

    async def _case_step(
        self,
        account: BotAccount,
        view: ConversationView,
        data: dict[str, Any],
        message: InboundMessage,
        tx: Transaction,
    ) -> FlowStep | None:
        """The report flow's step for ``message``, or None when the flow is not asked.

        Asked while the bot answers the conversation, and while it waits in the queue for a
        person nobody has taken yet: a citizen who said "hola" out of hours can still report an
        incident, and the conversation stays queued for the person. Not asked while an operator
        attends it (a photo then goes to the operator). ``data`` gets the new flow state.
        ``handled=False``: routing answers too.
        """
        cases = self.cases
        if cases is None or not cases.enabled_for(account.name):
            return None
        waiting = view.state is ConversationState.QUEUED and view.assigned_operator is None
        if not waiting and view.state not in (ConversationState.BOT, ConversationState.CLOSED):
            return None
        connection = getattr(tx, "connection", None)
        if connection is None:  # a store without SQL transactions cannot keep cases
            return None
        return await cases.step(
            connection,
            data,
            message,
            language=view.language,
            default_language=account.default_language,
            other_request=other_keyword(account.engine),
        )

    def _keyword_result(
        self,
        message: InboundMessage,
        replies: Sequence[Any],
        answer: KeywordAnswer | None,
    ) -> tuple[str | None, str | None]:
        reasons = [r.reason for r in replies if r.reason in _KEYWORD_REASONS]
        if reasons:
            result = _KEYWORD_REASONS[reasons[0]]
            keyword_id = None
            if answer is not None and answer.kind is AnswerKind.KEYWORD and answer.match:
                keyword_id = answer.match.keyword_id
            return result, keyword_id
        if isinstance(message.content, Media) or not _has_text(message):
            return None, None
        return "miss", None

    def _outbound(
        self,
        account: BotAccount,
        conv: Conversation,
        contents: Sequence[OutboundContent],
        now: datetime,
    ) -> tuple[list[OutboundMessage], tuple[OutboundContent, ...], Buttons | ListMenu | None]:
        """The outbound messages, the contents held until the citizen answers a template, and
        the last menu that went out as numbered options (the channel could not show it)."""
        if not contents:
            return [], (), None
        view = view_from_conversation(conv)
        held: tuple[OutboundContent, ...] = ()
        try:
            result = account.pipeline.prepare_outbound(view, contents, now)
            prepared, held = result.contents, result.held
        except ValueError:
            prepared = tuple(contents)
        language = conv.language or account.default_language
        out: list[OutboundMessage] = []
        menu: Buttons | ListMenu | None = None
        for content in prepared:
            try:
                pieces = degrade(content, account.channel.capabilities, language)
            except UnsupportedContentError:
                logger.warning(
                    "account %s: dropped a %s it cannot show", account.name, content.kind
                )
                continue
            if isinstance(content, Buttons | ListMenu) and not any(
                isinstance(p, Buttons | ListMenu) for p in pieces
            ):
                menu = content
            for piece in pieces:
                out.append(
                    OutboundMessage(
                        channel=account.channel_name,
                        account=account.name,
                        recipient_id=conv.recipient_id,
                        content=piece,
                    )
                )
        return out, held, menu


def _flow_view(
    view: ConversationView, message: InboundMessage, step: FlowStep, now: datetime
) -> ConversationView:
    """The conversation after a message the report flow answered (routing did not see it).

    A queued conversation stays queued, for the person it waits for: the report answered only
    itself, and the operator sees it (with the case's reference) when taking the conversation.
    """
    if view.last_inbound_at is None or message.timestamp > view.last_inbound_at:
        view = view.replace(last_inbound_at=message.timestamp)
    if view.state is ConversationState.CLOSED:
        view = transition(view, ConversationState.BOT, at=now, actor="citizen")
    if step.state is not None:
        view = view.replace(language=step.state.language)
    return view


def _numbered_answer(message: InboundMessage, menu_json: object) -> InboundMessage:
    """``message`` as the option it picks from the last numbered menu ("2", "opció 2"...)."""
    if not isinstance(menu_json, str) or not isinstance(message.content, Text):
        return message
    try:
        menu = content_from_json(menu_json)
    except ValueError:
        return message
    if not isinstance(menu, Buttons | ListMenu):
        return message
    picked = match_numbered_reply(message.content.body, menu)
    if picked is None:
        return message
    return message.model_copy(update={"content": picked})


def _has_text(message: InboundMessage) -> bool:
    content = message.content
    return isinstance(content, Text) or content.kind == "interactive_reply"
