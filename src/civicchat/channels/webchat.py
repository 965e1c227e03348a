"""The city's own web chat: a browser page posts JSON, replies go out over an in-process hub.

The "webhook" is the page's POST, with ``Content-Type: application/json`` (a cross-site HTML form
cannot send that without a CORS preflight, so the content type doubles as CSRF protection)::

    {"visitor": "<16-128 of A-Z a-z 0-9 _ ->", "id": "<client message id, optional>",
     "text": "horari bus"}                                       # or
     "reply_id": "kw:bus", "text": "Bus"                         # a button pressed, or
     "location": {"latitude": 41.54, "longitude": 2.44}          # a shared location

The visitor id is the page's random, unguessable id (kept in a cookie by the service); knowing it
is being that visitor. ``id``, when the page gives one, makes a retried POST a duplicate of the
first (same ``provider_message_id``) instead of a second message.

:meth:`WebChatChannel.send` publishes to a :class:`WebChatHub`; the service streams
:meth:`WebChatHub.subscribe` to the page as server-sent events, using ``seq`` as the event id so
that a reconnecting page (``Last-Event-ID``) gets what it missed from the bounded backlog.
The hub lives in one process: with several app processes, put a pub/sub in front of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from civicchat.channels._http import load_json_object
from civicchat.channels.base import Capabilities, MediaDownload, WebhookRequest, WebhookResult
from civicchat.clock import Clock, SystemClock
from civicchat.exceptions import (
    ConfigError,
    MediaError,
    PayloadError,
    UnsupportedContentError,
    WebhookError,
)
from civicchat.messages import (
    Buttons,
    InboundContent,
    InboundMessage,
    InteractiveReply,
    Location,
    Media,
    OutboundMessage,
    Sender,
    Text,
)

__all__ = ["WEBCHAT_CAPABILITIES", "WebChatChannel", "WebChatHub", "valid_visitor_id"]

logger = logging.getLogger("civicchat.channels")

CHANNEL = "webchat"

WEBCHAT_CAPABILITIES = Capabilities(
    max_text_length=4096,
    buttons=True,
    max_buttons=10,
    lists=False,
    locations=False,
    templates=False,
    location_requests=False,
    link_previews=False,
    mark_read=False,
)

_VISITOR = re.compile(r"^[A-Za-z0-9_-]{16,128}\Z")  # \Z: "$" would let a final "\n" in
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


def valid_visitor_id(value: object) -> bool:
    """True for a well-formed visitor id (16-128 characters of A-Z a-z 0-9 _ -)."""
    return isinstance(value, str) and _VISITOR.match(value) is not None


@dataclass(slots=True)
class _Subscriber:
    pending: deque[dict[str, Any]]
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class _Visitor:
    backlog: deque[dict[str, Any]]
    seq: int = 0
    subscribers: list[_Subscriber] = field(default_factory=list)


class WebChatHub:
    """Fans outbound web chat events out to the visitor's open pages, keeping a short backlog.

    ``backlog``: events kept per visitor for reconnecting pages; ``max_visitors``: visitors kept
    in memory (the least recently active without an open page are forgotten first);
    ``queue_size``: events buffered for one slow page before its oldest are dropped (the page
    sees a gap in ``seq`` and can reconnect).
    """

    def __init__(
        self, *, backlog: int = 50, max_visitors: int = 10_000, queue_size: int = 100
    ) -> None:
        if backlog < 1 or max_visitors < 1 or queue_size < 1:
            raise ConfigError("WebChatHub backlog, max_visitors and queue_size must be >= 1")
        self._backlog = backlog
        self._max_visitors = max_visitors
        self._queue_size = queue_size
        self._visitors: OrderedDict[tuple[str, str], _Visitor] = OrderedDict()

    def _visitor(self, account: str, visitor: str) -> _Visitor:
        if not valid_visitor_id(visitor):
            raise ValueError("invalid web chat visitor id")
        key = (account, visitor)
        state = self._visitors.get(key)
        if state is None:
            state = _Visitor(backlog=deque(maxlen=self._backlog))
            self._visitors[key] = state
            self._evict()
        self._visitors.move_to_end(key)
        return state

    def _evict(self) -> None:
        if len(self._visitors) <= self._max_visitors:
            return
        for key in list(self._visitors):
            if len(self._visitors) <= self._max_visitors:
                break
            if not self._visitors[key].subscribers:
                del self._visitors[key]

    def publish(self, account: str, visitor: str, event: Mapping[str, Any]) -> dict[str, Any]:
        """Queue ``event`` for the visitor's pages; returns it with its ``seq`` number."""
        state = self._visitor(account, visitor)
        state.seq += 1
        stored = {**event, "seq": state.seq}
        state.backlog.append(stored)
        for subscriber in state.subscribers:
            subscriber.pending.append(stored)
            subscriber.wake.set()
        return stored

    def backlog(self, account: str, visitor: str) -> list[dict[str, Any]]:
        """The events still kept for the visitor, oldest first."""
        return list(self._visitor(account, visitor).backlog)

    async def subscribe(
        self, account: str, visitor: str, *, after: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the backlog after ``after`` (the page's Last-Event-ID), then live events.

        Runs until the consumer stops iterating (closing the iterator unsubscribes the page).
        """
        state = self._visitor(account, visitor)
        subscriber = _Subscriber(pending=deque(maxlen=self._queue_size))
        # Register before reading the backlog so nothing published in between is lost.
        state.subscribers.append(subscriber)
        last = after if after is not None else 0
        try:
            for event in list(state.backlog):
                if event["seq"] > last:
                    last = event["seq"]
                    yield event
            while True:
                while subscriber.pending:
                    event = subscriber.pending.popleft()
                    if event["seq"] > last:
                        last = event["seq"]
                        yield event
                subscriber.wake.clear()
                await subscriber.wake.wait()
        finally:
            state.subscribers.remove(subscriber)

    def subscribers(self, account: str, visitor: str) -> int:
        """How many pages of this visitor are listening."""
        state = self._visitors.get((account, visitor))
        return len(state.subscribers) if state else 0


class WebChatChannel:
    """The web chat adapter for one account (usually one per city website).

    ``new_id`` makes message ids (a seam for tests); ``clock`` stamps inbound messages.
    """

    def __init__(
        self,
        hub: WebChatHub,
        *,
        account: str = "web",
        clock: Clock | None = None,
        capabilities: Capabilities = WEBCHAT_CAPABILITIES,
        max_body_bytes: int = 16_384,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        if not account:
            raise ConfigError("WebChatChannel needs an account name")
        self.hub = hub
        self.account = account
        self._clock = clock or SystemClock()
        self._capabilities = capabilities
        self._max_body = max_body_bytes
        self._new_id = new_id

    @property
    def name(self) -> str:
        return CHANNEL

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        """Validate and parse one POST from the chat page."""
        if request.method != "POST":
            raise WebhookError("only POST", channel=CHANNEL, status_code=405)
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise WebhookError("send application/json", channel=CHANNEL, status_code=415)
        if len(request.body) > self._max_body:
            raise PayloadError("message too large", channel=CHANNEL, status_code=413)
        data = load_json_object(request.body, channel=CHANNEL)
        visitor = data.get("visitor")
        if not valid_visitor_id(visitor):
            raise PayloadError("visitor must be 16-128 of A-Z a-z 0-9 _ -", channel=CHANNEL)
        assert isinstance(visitor, str)  # narrowed by valid_visitor_id
        client_id = data.get("id")
        if client_id is not None and not (
            isinstance(client_id, str) and _CLIENT_ID.match(client_id)
        ):
            raise PayloadError("id must be 1-64 of A-Z a-z 0-9 _ -", channel=CHANNEL)
        content = _content(data, self._capabilities.max_text_length)
        message_id = f"{visitor}:{client_id or self._new_id()}"
        event = InboundMessage(
            channel=CHANNEL,
            account=self.account,
            provider_message_id=message_id,
            sender=Sender(id=visitor, language_hint=_language(data.get("language"))),
            timestamp=self._clock.now(),
            content=content,
        )
        body = json.dumps({"id": message_id}).encode()
        return WebhookResult(body=body, content_type="application/json", events=(event,))

    async def send(self, message: OutboundMessage, *, last_inbound_at: datetime | None) -> str:
        """Publish ``message`` to the visitor's pages; returns the event id."""
        if message.account != self.account:
            raise ConfigError(f"this web chat serves account {self.account!r}")
        if not valid_visitor_id(message.recipient_id):
            raise UnsupportedContentError("not a web chat visitor id", channel=CHANNEL)
        content = message.content
        caps = self._capabilities

        def refuse(why: str) -> UnsupportedContentError:
            return UnsupportedContentError(
                f"{why}; run civicchat.channels.degrade first",
                channel=CHANNEL,
                account=self.account,
            )

        if isinstance(content, Text):
            if not 1 <= len(content.body) <= caps.max_text_length:
                raise refuse(f"text must have 1-{caps.max_text_length} characters")
        elif isinstance(content, Buttons):
            if len(content.buttons) > caps.max_buttons:
                raise refuse(f"at most {caps.max_buttons} buttons")
        elif isinstance(content, Media):
            if not content.link or not content.link.startswith("https://"):
                raise refuse("the web chat shows media by https link only")
        else:
            raise refuse(f"the web chat cannot show {content.kind}")
        event_id = self._new_id()
        self.hub.publish(
            self.account,
            message.recipient_id,
            {
                "id": event_id,
                "timestamp": self._clock.now().isoformat(),
                "reply_to": message.reply_to,
                "content": content.model_dump(mode="json"),
            },
        )
        logger.info("webchat %s published on %s", content.kind, self.account)
        return event_id

    async def fetch_media(self, account: str, media_id: str, *, max_bytes: int) -> MediaDownload:
        """The web chat takes no uploads: always raises :class:`MediaError`."""
        raise MediaError("the web chat has no inbound media", channel=CHANNEL, account=account)


def _language(value: object) -> str | None:
    if isinstance(value, str) and re.fullmatch(r"[a-zA-Z]{2,3}(?:-[a-zA-Z0-9]{2,8})?", value):
        return value.lower()
    return None


def _content(data: Mapping[str, Any], max_text: int) -> InboundContent:
    text = data.get("text")
    reply_id = data.get("reply_id")
    location = data.get("location")
    if text is not None and not isinstance(text, str):
        raise PayloadError("text must be a string", channel=CHANNEL)
    if text is not None and len(text) > max_text:
        raise PayloadError(f"text has more than {max_text} characters", channel=CHANNEL)
    if reply_id is not None:
        if not isinstance(reply_id, str) or not 1 <= len(reply_id) <= 256:
            raise PayloadError("reply_id must be a string of 1-256 characters", channel=CHANNEL)
        return InteractiveReply(reply_id=reply_id, title=text or reply_id, source="button")
    if location is not None:
        if not isinstance(location, dict):
            raise PayloadError("location must be an object", channel=CHANNEL)
        lat, lon = location.get("latitude"), location.get("longitude")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lat, lon)):
            raise PayloadError("location needs numeric latitude and longitude", channel=CHANNEL)
        try:
            return Location(latitude=lat, longitude=lon)
        except ValueError:
            raise PayloadError("latitude or longitude out of range", channel=CHANNEL) from None
    if not text or not text.strip():
        raise PayloadError("nothing to send: give text, reply_id or location", channel=CHANNEL)
    return Text(body=text)
