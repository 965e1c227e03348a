"""The city's own web chat: a browser page posts JSON, replies go out over an in-process hub.

The "webhook" is the page's POST, with ``Content-Type: application/json`` (a cross-site HTML form
cannot send that without a CORS preflight, so the content type doubles as CSRF protection)::

    {"visitor": "<16-128 of A-Z a-z 0-9 _ ->", "id": "<client message id, optional>",
     "text": "horari bus"}                                       # or
     "reply_id": "kw:bus", "text": "Bus"                         # a button pressed, or
     "location": {"latitude": 41.54, "longitude": 2.44}          # a shared location

A photo is not JSON: the service reads its bytes (bounded), checks the real type with
:func:`sniff_image`, stores them in the blob store under
:func:`~civicchat.storage.media.media_blob_key` (the media's SHA-256) and accepts the
event of :meth:`WebChatChannel.upload_message`; the media worker then takes the bytes back
through :meth:`WebChatChannel.fetch_media` (``uploads=`` the same blob store), as it downloads a
WhatsApp photo, so the console and the cases show it the same way.

The visitor id is the page's random, unguessable id (kept in a cookie by the service); knowing it
is being that visitor. ``id``, when the page gives one, makes a retried POST a duplicate of the
first (same ``provider_message_id``) instead of a second message.

:meth:`WebChatChannel.send` publishes to a :class:`WebChatHub`; the service streams
:meth:`WebChatHub.subscribe` to the page as server-sent events, using ``seq`` as the event id so
that a reconnecting page (``Last-Event-ID``) gets what it missed from the bounded backlog.
The hub lives in one process: with several app processes, put a pub/sub in front of it.

The page shows a ``Buttons``' text ``header`` above its text and its ``footer`` (smaller,
muted) under it; a ``ListMenu`` comes as buttons through ``degrade``, header and footer kept.

The page has no length limit, so a long text is one bubble (:data:`WEBCHAT_CAPABILITIES`). A
pub/sub may have one (PostgreSQL's ``NOTIFY`` carries under 8,000 bytes): an event whose content
is larger than ``max_event_bytes`` goes as several events of the same ``id``, each with
``part``, ``parts`` and ``chunk`` (a piece of the content's JSON) instead of ``content``; the
page joins them into one message.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import json
import logging
import math
import re
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from civicchat.channels._http import load_json_object
from civicchat.channels.base import Capabilities, MediaDownload, WebhookRequest, WebhookResult
from civicchat.clock import Clock, SystemClock
from civicchat.exceptions import (
    ConfigError,
    MediaError,
    MediaExpiredError,
    MediaTooLargeError,
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
    MediaKind,
    OutboundMessage,
    Sender,
    Text,
)
from civicchat.storage.media import media_blob_key

__all__ = [
    "MAX_CAPTION",
    "MAX_EVENT_BYTES",
    "MAX_TEXT_IN",
    "UPLOAD_TYPES",
    "WEBCHAT_CAPABILITIES",
    "UploadReader",
    "WebChatChannel",
    "WebChatHub",
    "event_chunks",
    "is_heif",
    "sniff_image",
    "valid_visitor_id",
]

logger = logging.getLogger("civicchat.channels")

CHANNEL = "webchat"

WEBCHAT_CAPABILITIES = Capabilities(
    max_text_length=32_768,  # the page has no limit: one bubble (the keyword index is ~2,100)
    buttons=True,
    max_buttons=10,
    lists=False,
    locations=False,
    templates=False,
    location_requests=False,
    link_previews=False,
    mark_read=False,
    button_media=True,  # the page draws the image, video or document above the text
    max_caption_length=4096,
    share_location_hint={  # the page's own button, when a report asks for the place
        "ca": "Per enviar-nos la teva ubicació, toca el botó 📍.",
        "es": "Para enviarnos tu ubicación, toca el botón 📍.",
    },
)

_VISITOR = re.compile(r"^[A-Za-z0-9_-]{16,128}\Z")  # \Z: "$" would let a final "\n" in
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_UPLOAD_ID = re.compile(r"^([0-9a-f]{64})-[0-9a-f]{16,32}\Z")

UPLOAD_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp")
"""What a citizen may upload from the page (decided from the bytes, never the browser's claim)."""

MAX_CAPTION = 1024  # WhatsApp's caption limit: the same photo and text fit every channel
MAX_TEXT_IN = 4096  # characters of a citizen's message (the page's box takes the same)
MAX_EVENT_BYTES = 6000
"""Default ``max_event_bytes``: an event's content JSON (UTF-8) above it goes in parts, so each
event fits one PostgreSQL ``NOTIFY`` (under 8,000 bytes) with room for its envelope."""
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})


def sniff_image(head: bytes) -> str | None:
    """The image type of a file from its first bytes (magic number), or None.

    Only the types of :data:`UPLOAD_TYPES`: JPEG, PNG and WebP, which every browser shows.

    >>> sniff_image(bytes.fromhex("ffd8ffe0") + b"JFIF")
    'image/jpeg'
    >>> sniff_image(b"%PDF-1.7") is None
    True
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def is_heif(head: bytes) -> bool:
    """True for a HEIC/HEIF photo (an iPhone's own format, which browsers cannot show)."""
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


class UploadReader(Protocol):
    """Where the channel reads uploaded photos back (a :class:`~civicchat.storage.base.BlobStore`)."""

    async def get(self, key: str) -> bytes:
        """The bytes, or :class:`KeyError` when there is no such blob."""
        ...


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
    sees a gap in ``seq`` and reads its history again).

    Both bounds drop whole messages: the parts of a long message (same ``id``) go together,
    never one alone, and the newest message stays even when it alone has more parts than the
    bound (a page could never complete a message missing a part).
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
            state = _Visitor(backlog=deque())
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
        _append_whole(state.backlog, stored, self._backlog)
        for subscriber in state.subscribers:
            _append_whole(subscriber.pending, stored, self._queue_size)
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
        subscriber = _Subscriber(pending=deque())
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


def _append_whole(events: deque[dict[str, Any]], event: dict[str, Any], limit: int) -> None:
    """Append ``event``; over ``limit``, drop the oldest whole messages (all parts of an id)."""
    events.append(event)
    newest = event.get("id")
    while len(events) > limit and events[0].get("id", object()) != newest:
        dropped = events.popleft()
        if "parts" in dropped:
            # Its other parts would never make a message on their own: they go too.
            while events and "parts" in events[0] and events[0].get("id") == dropped.get("id"):
                events.popleft()


class WebChatChannel:
    """The web chat adapter for one account (usually one per city website).

    ``new_id`` makes message ids (a seam for tests); ``clock`` stamps inbound messages;
    ``uploads`` is the blob store the service writes the citizens' photos to (without it the
    channel has no inbound media and :meth:`fetch_media` refuses); ``max_event_bytes``: larger
    contents are published in parts (see the module's documentation).
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
        uploads: UploadReader | None = None,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        if not account:
            raise ConfigError("WebChatChannel needs an account name")
        if max_event_bytes < 256:
            raise ConfigError("WebChatChannel max_event_bytes must be at least 256")
        self._max_event = max_event_bytes
        self.hub = hub
        self.uploads = uploads
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
        content = _content(data, MAX_TEXT_IN)
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
            header = content.media
            if header is not None and not (header.link or "").startswith("https://"):
                raise refuse("the web chat shows a media header by https link only")
        elif isinstance(content, Media):
            if not content.link or not content.link.startswith("https://"):
                raise refuse("the web chat shows media by https link only")
        else:
            raise refuse(f"the web chat cannot show {content.kind}")
        event_id = self._new_id()
        head = {
            "id": event_id,
            "timestamp": self._clock.now().isoformat(),
            "reply_to": message.reply_to,
        }
        data = content.model_dump(mode="json")
        encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        if len(encoded.encode()) <= self._max_event:
            self.hub.publish(self.account, message.recipient_id, {**head, "content": data})
            parts = 1
        else:
            chunks = event_chunks(encoded, self._max_event)
            parts = len(chunks)
            for number, chunk in enumerate(chunks, 1):
                event = {**head, "part": number, "parts": parts, "chunk": chunk}
                self.hub.publish(self.account, message.recipient_id, event)
        logger.info("webchat %s published on %s in %d event(s)", content.kind, self.account, parts)
        return event_id

    def upload_message(
        self,
        *,
        visitor: str,
        data: bytes,
        mime_type: str,
        client_id: str | None = None,
        caption: str | None = None,
        language: str | None = None,
    ) -> InboundMessage:
        """The inbound message of a photo the page uploaded (its bytes already checked).

        ``mime_type`` is what :func:`sniff_image` found. The media id holds the bytes' SHA-256
        (so :meth:`fetch_media` finds them) and, like a text's id, is the same for a retried
        upload with the same ``client_id``. Raises :class:`PayloadError` for a bad visitor id,
        client id or caption, or a type outside :data:`UPLOAD_TYPES`.
        """
        if not valid_visitor_id(visitor):
            raise PayloadError("visitor must be 16-128 of A-Z a-z 0-9 _ -", channel=CHANNEL)
        if client_id is not None and not _CLIENT_ID.match(client_id):
            raise PayloadError("id must be 1-64 of A-Z a-z 0-9 _ -", channel=CHANNEL)
        if mime_type not in UPLOAD_TYPES:
            raise PayloadError(f"uploads are {', '.join(UPLOAD_TYPES)}", channel=CHANNEL)
        if not data:
            raise PayloadError("the upload is empty", channel=CHANNEL)
        if caption is not None and len(caption) > MAX_CAPTION:
            raise PayloadError(f"caption has more than {MAX_CAPTION} characters", channel=CHANNEL)
        digest = hashlib.sha256(data).hexdigest()
        local = client_id or self._new_id()
        # Unique per message (the same photo sent twice is two media), never the visitor id.
        suffix = hashlib.sha256(f"{visitor}:{local}".encode()).hexdigest()[:24]
        message_id = f"{visitor}:{local}"
        return InboundMessage(
            channel=CHANNEL,
            account=self.account,
            provider_message_id=message_id,
            sender=Sender(id=visitor, language_hint=_language(language)),
            timestamp=self._clock.now(),
            content=Media(
                media_kind=MediaKind.IMAGE,
                media_id=f"{digest}-{suffix}",
                mime_type=mime_type,
                sha256=digest,
                size=len(data),
                caption=caption.strip() if caption and caption.strip() else None,
            ),
        )

    async def fetch_media(self, account: str, media_id: str, *, max_bytes: int) -> MediaDownload:
        """The bytes of a photo the page uploaded, from the ``uploads`` blob store.

        Raises :class:`MediaError` without an upload store or for an id the page did not make,
        :class:`MediaExpiredError` when the bytes are gone, :class:`MediaTooLargeError` over
        ``max_bytes``.
        """
        found = _UPLOAD_ID.match(media_id)
        if self.uploads is None or found is None or account != self.account:
            raise MediaError("no such web chat upload", channel=CHANNEL, account=account)
        try:
            data = await self.uploads.get(media_blob_key(CHANNEL, account, found.group(1)))
        except KeyError:
            raise MediaExpiredError(
                "the uploaded bytes are gone", channel=CHANNEL, account=account
            ) from None
        if len(data) > max_bytes:
            raise MediaTooLargeError(
                f"upload is {len(data)} bytes, over {max_bytes}", channel=CHANNEL, account=account
            )
        mime = sniff_image(data[:16])
        if mime is None:
            raise MediaError("the stored upload is not an image", channel=CHANNEL, account=account)

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        return MediaDownload(mime_type=mime, chunks=chunks(), max_bytes=max_bytes, size=len(data))


# What one character costs in a JSON string (UTF-8, ``ensure_ascii=False``): ASCII from a table
# (``\"`` and ``\\``: 2; ``\b \f \n \r \t``: 2; other control characters ``\u00XX``: 6).
_ASCII_COST = tuple(len(json.dumps(chr(o), ensure_ascii=False)) - 2 for o in range(128))


def event_chunks(text: str, max_bytes: int) -> list[str]:
    """``text`` cut into pieces whose JSON string (UTF-8, escapes included) is at most
    ``max_bytes``; joined, they are ``text`` again.

    >>> event_chunks('{"body":"àà"}', 8)
    ['{"body', '":"à', 'à"}']
    """
    ascii_cost = _ASCII_COST
    costs = [
        ascii_cost[o] if o < 0x80 else 2 if o < 0x800 else 3 if o < 0x10000 else 4
        for o in map(ord, text)
    ]
    ends = list(itertools.accumulate(costs, initial=0))  # ends[i]: cost of text[:i]
    pieces: list[str] = []
    start = 0
    while True:
        # The longest piece from ``start`` within budget; one character at least.
        stop = bisect.bisect_right(ends, ends[start] + max_bytes, lo=start + 1) - 1
        stop = max(stop, start + 1)
        if stop >= len(text):
            pieces.append(text[start:])
            return pieces
        pieces.append(text[start:stop])
        start = stop


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
        if any(isinstance(v, float) and not math.isfinite(v) for v in (lat, lon)):
            # json.loads reads NaN and Infinity: neither is a place.
            raise PayloadError("latitude and longitude must be finite numbers", channel=CHANNEL)
        try:
            return Location(latitude=lat, longitude=lon)
        except ValueError:
            raise PayloadError("latitude or longitude out of range", channel=CHANNEL) from None
    if not text or not text.strip():
        raise PayloadError("nothing to send: give text, reply_id or location", channel=CHANNEL)
    return Text(body=text)
