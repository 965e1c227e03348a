"""The channel contract: what every messaging adapter (WhatsApp, Telegram, web chat...) provides.

A channel knows nothing of the web framework. The service turns an HTTP request into a
:class:`WebhookRequest` (method, headers, query, raw body bytes), calls
:meth:`Channel.handle_webhook`, stores the returned events, and only then answers with the
returned status, body and content type::

    try:
        result = channel.handle_webhook(request)
    except WebhookError as exc:          # bad signature (401/403), malformed body (400)...
        return Response(status_code=exc.status_code)   # nothing was parsed, nothing to store
    await inbox.store(result.events)     # commit first...
    return Response(result.body, result.status_code, media_type=result.content_type)  # ...then 200

Refusals are raised, never returned: a :class:`~civicchat.exceptions.WebhookError` carries the
``status_code`` to answer, so a caller cannot mistake a refused request for an empty batch.

Sending is one provider message per call: :meth:`Channel.send` refuses content the channel cannot
carry (:class:`~civicchat.exceptions.UnsupportedContentError`) instead of silently changing it.
Run :func:`civicchat.channels.degrade.degrade` first to turn rich content into what the channel
can show.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from civicchat.exceptions import MediaTooLargeError
from civicchat.messages import InboundMessage, OutboundMessage, StatusUpdate

__all__ = [
    "Capabilities",
    "Channel",
    "Event",
    "Headers",
    "MediaDownload",
    "WebhookRequest",
    "WebhookResult",
]

Event = InboundMessage | StatusUpdate
"""What a webhook yields: a citizen's message (unsupported content included) or a status."""


class Headers(Mapping[str, str]):
    """An immutable, case-insensitive view of HTTP headers.

    >>> Headers({"X-Hub-Signature-256": "sha256=00"})["x-hub-signature-256"]
    'sha256=00'
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items = {key.lower(): value for key, value in (items or {}).items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._items == {str(k).lower(): v for k, v in other.items()}
        return NotImplemented

    def __repr__(self) -> str:
        return f"Headers({sorted(self._items)!r})"  # names only: values may hold secrets


def _to_headers(value: Mapping[str, str] | Headers) -> Headers:
    return value if isinstance(value, Headers) else Headers(value)


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A framework-free HTTP request as a channel sees it.

    ``headers`` is case-insensitive (a plain dict is converted), ``query`` holds the decoded query
    parameters (first value of each), ``body`` the raw bytes exactly as received: signatures are
    computed on them.
    """

    method: str
    headers: Mapping[str, str] = field(default_factory=Headers)
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", self.method.upper())
        object.__setattr__(self, "headers", _to_headers(self.headers))


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """The answer to give the provider, and the events to store before giving it."""

    status_code: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    events: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel can show natively; :func:`~civicchat.channels.degrade.degrade` covers the rest.

    ``max_button_title`` is the longest button title the provider accepts (WhatsApp: 20); longer
    titles make the buttons fall back to numbered options rather than being cut.
    ``max_button_body`` is the longest text a message with buttons may carry (WhatsApp: 1,024),
    when it is shorter than ``max_text_length``. ``button_media`` says that a message with
    buttons can carry an image, video or document above its text
    (:attr:`~civicchat.messages.Buttons.media`; WhatsApp's media header, Telegram's photo with a
    caption and an inline keyboard); ``max_caption_length`` is the longest text that can go
    with a media file (WhatsApp and Telegram: 1,024). ``share_location_hint`` is, per language
    (``{"ca": ..., "es": ...}``), how a citizen shares a location in this channel's own client,
    for channels without ``location_requests`` ("toca el botó 📍"); without it ``degrade`` uses
    wording true in any client.
    """

    max_text_length: int = 4096
    buttons: bool = False
    max_buttons: int = 0
    max_button_title: int | None = None
    max_button_body: int | None = None
    lists: bool = False
    max_list_rows: int = 0
    locations: bool = False
    templates: bool = False
    location_requests: bool = False
    link_previews: bool = False
    mark_read: bool = False
    button_media: bool = False
    max_caption_length: int = 1024
    share_location_hint: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    def __post_init__(self) -> None:
        if self.max_text_length < 16:
            raise ValueError("Capabilities.max_text_length must be at least 16 characters")
        if self.max_caption_length < 1:
            raise ValueError("Capabilities.max_caption_length must be at least 1 character")
        if self.buttons and self.max_buttons < 1:
            raise ValueError("Capabilities with buttons=True need max_buttons >= 1")
        if self.lists and self.max_list_rows < 1:
            raise ValueError("Capabilities with lists=True need max_list_rows >= 1")
        hints: object = self.share_location_hint
        if not isinstance(hints, Mapping) or not all(
            isinstance(lang, str) and lang and isinstance(text, str) and text.strip()
            for lang, text in hints.items()
        ):
            raise ValueError(
                "Capabilities.share_location_hint must map language codes to non-empty texts, "
                'for example {"ca": "Toca el botó 📍.", "es": "Toca el botón 📍."}'
            )
        object.__setattr__(self, "share_location_hint", MappingProxyType(dict(hints)))


class MediaDownload:
    """A media file being downloaded: its real MIME type, its size when known, and its bytes.

    Iterate over it (``async for chunk in download``) to stream the bytes; the size cap given to
    ``fetch_media`` is enforced while streaming (:class:`~civicchat.exceptions.MediaTooLargeError`)
    and the connection is closed at the end, on error, or by :meth:`aclose`. :meth:`read` collects
    everything (under the same cap).
    """

    def __init__(
        self,
        *,
        mime_type: str,
        chunks: AsyncIterator[bytes],
        max_bytes: int,
        size: int | None = None,
        sha256: str | None = None,
        filename: str | None = None,
    ) -> None:
        self.mime_type = mime_type
        self.size = size
        self.sha256 = sha256
        self.filename = filename
        self.max_bytes = max_bytes
        self._chunks = chunks
        self._received = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                self._received += len(chunk)
                if self._received > self.max_bytes:
                    raise MediaTooLargeError(
                        f"media is larger than the cap of {self.max_bytes} bytes"
                    )
                yield chunk
        finally:
            await self.aclose()

    async def read(self) -> bytes:
        """Download everything and return the bytes (raises over the cap)."""
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        """Close the underlying connection; safe to call twice."""
        closer = getattr(self._chunks, "aclose", None)
        if closer is not None:
            await closer()


@runtime_checkable
class Channel(Protocol):
    """One messaging provider, serving one or several accounts of the city.

    Implementations: :class:`~civicchat.channels.whatsapp.WhatsAppChannel`,
    :class:`~civicchat.channels.telegram.TelegramChannel`,
    :class:`~civicchat.channels.webchat.WebChatChannel`,
    :class:`~civicchat.channels.fake.FakeChannel`. Each passes ``tests/channels/test_channel_contract.py``.
    """

    @property
    def name(self) -> str:
        """The channel name found in events and outbound messages (``"whatsapp"``...)."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What this channel can show natively."""
        ...

    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        """Verify and parse one webhook request. Pure: no I/O.

        Returns the answer and the events (messages, statuses, unsupported content recorded as
        :class:`~civicchat.messages.Unsupported`). Raises
        :class:`~civicchat.exceptions.SignatureError` (401/403) or
        :class:`~civicchat.exceptions.PayloadError` (400) with nothing parsed.
        """
        ...

    async def send(self, message: OutboundMessage, *, last_inbound_at: datetime | None) -> str:
        """Send one message and return the provider's message id.

        ``last_inbound_at`` is when the citizen last wrote (WhatsApp's 24-hour window). Raises a
        :class:`~civicchat.exceptions.SendError` subclass whose ``retryable`` and
        ``retry_after`` say what to do next.
        """
        ...

    async def fetch_media(self, account: str, media_id: str, *, max_bytes: int) -> MediaDownload:
        """Start downloading an inbound media file of ``account``, refusing more than ``max_bytes``."""
        ...
