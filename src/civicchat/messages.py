"""Typed message content, inbound and outbound, shared by every package.

Everything here is a frozen pydantic model with a ``kind`` discriminator, so a message can be
stored as JSON and read back as the same type::

    >>> from civicchat.messages import InboundMessage, Sender, Text, content_from_json
    >>> c = Text(body="horari bus")
    >>> content_from_json(c.model_dump_json()) == c
    True

Inbound content (what a citizen sends): :class:`Text`, :class:`Media`, :class:`Location`,
:class:`Contacts`, :class:`InteractiveReply`, :class:`Reaction`, :class:`Unsupported`,
:class:`SystemNotice`. Outbound content (what the city sends): :class:`Text`, :class:`Media`,
:class:`Location`, :class:`Buttons`, :class:`ListMenu`, :class:`LocationRequest`,
:class:`Template`, :class:`MarkRead`. Envelopes: :class:`InboundMessage`,
:class:`StatusUpdate`, :class:`OutboundMessage`.

No I/O happens in this module.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

__all__ = [
    "HEADER_MEDIA_KINDS",
    "Buttons",
    "ContactCard",
    "Contacts",
    "Content",
    "DeliveryStatus",
    "InboundContent",
    "InboundMessage",
    "InteractiveReply",
    "ListMenu",
    "ListRow",
    "ListSection",
    "Location",
    "LocationRequest",
    "MarkRead",
    "Media",
    "MediaKind",
    "OutboundContent",
    "OutboundMessage",
    "ProviderError",
    "Reaction",
    "ReplyButton",
    "Sender",
    "StatusUpdate",
    "SystemNotice",
    "Template",
    "TemplateParameter",
    "Text",
    "Unsupported",
    "content_from_json",
    "split_text",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MediaKind(enum.StrEnum):
    """The kinds of media a citizen can send or receive."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    VOICE = "voice"  # a voice note recorded in the app (WhatsApp ``audio.voice``, Telegram voice)
    DOCUMENT = "document"
    STICKER = "sticker"


class DeliveryStatus(enum.StrEnum):
    """Lifecycle of an outbound message as the provider reports it."""

    QUEUED = "queued"  # written to our outbox, not yet accepted by the provider
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    FAILED = "failed"

    @property
    def rank(self) -> int:
        """Order used to merge statuses that arrive out of order (``failed`` always wins)."""
        return _STATUS_RANK[self]


_STATUS_RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.READ: 3,
    DeliveryStatus.PLAYED: 4,
    DeliveryStatus.FAILED: 5,
}


# --------------------------------------------------------------------------- content, both ways


class Text(_Frozen):
    """Plain text. Outbound, ``preview_url`` asks the provider to preview the first link."""

    kind: Literal["text"] = "text"
    body: str
    preview_url: bool = False


class Media(_Frozen):
    """An image, video, audio, voice note, document or sticker.

    Inbound, ``media_id`` is the provider's handle to download it (WhatsApp media id, Telegram
    ``file_id``). Outbound, give either ``link`` (a public https URL) or ``media_id`` (an id
    uploaded to the provider before).
    """

    kind: Literal["media"] = "media"
    media_kind: MediaKind
    media_id: str | None = None
    link: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    animated: bool = False
    size: int | None = None

    @model_validator(mode="after")
    def _has_source(self) -> Media:
        if self.media_id is None and self.link is None:
            raise ValueError("Media needs a media_id or a link")
        return self


class Location(_Frozen):
    """A point on the map, optionally with a place name and address."""

    kind: Literal["location"] = "location"
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str | None = None
    address: str | None = None
    url: str | None = None

    @property
    def map_url(self) -> str:
        """A link that opens the point in a map application."""
        return f"https://www.openstreetmap.org/?mlat={self.latitude:.6f}&mlon={self.longitude:.6f}#map=18/{self.latitude:.6f}/{self.longitude:.6f}"


# --------------------------------------------------------------------------- inbound only


class ContactCard(_Frozen):
    """One contact shared by a citizen (a simplified vCard)."""

    name: str
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    organization: str | None = None


class Contacts(_Frozen):
    kind: Literal["contacts"] = "contacts"
    contacts: tuple[ContactCard, ...]


class InteractiveReply(_Frozen):
    """The citizen pressed a button or picked a list row (or a template quick reply)."""

    kind: Literal["interactive_reply"] = "interactive_reply"
    reply_id: str
    title: str
    description: str | None = None
    source: Literal["button", "list", "template_button", "callback"] = "button"


class Reaction(_Frozen):
    """An emoji reaction to one of our messages; ``emoji=None`` means it was removed."""

    kind: Literal["reaction"] = "reaction"
    message_id: str
    emoji: str | None = None


class Unsupported(_Frozen):
    """Content we do not handle (a poll, an order, a type the provider could not render).

    Stored so that nothing is silently dropped, and so an operator can see that something came.
    """

    kind: Literal["unsupported"] = "unsupported"
    provider_type: str
    reason: str | None = None


class SystemNotice(_Frozen):
    """A provider notice about the citizen, such as a changed phone number."""

    kind: Literal["system"] = "system"
    notice: str
    new_id: str | None = None


# --------------------------------------------------------------------------- outbound only


class ReplyButton(_Frozen):
    id: str = Field(min_length=1, max_length=256)
    title: str = Field(min_length=1)


#: The media kinds that can head a message with buttons (WhatsApp's interactive header).
HEADER_MEDIA_KINDS = frozenset({MediaKind.IMAGE, MediaKind.VIDEO, MediaKind.DOCUMENT})


class Buttons(_Frozen):
    """Text with reply buttons. Channels without buttons show numbered options instead.

    ``header`` is a short text above the body; ``media`` an image, video or document shown above
    it instead (one or the other, not both), so a keyword's text, file and buttons travel as one
    message::

        >>> doc = Media(media_kind=MediaKind.DOCUMENT, link="https://example.org/plànol.pdf")
        >>> Buttons(body="Bus urbà", media=doc, buttons=(ReplyButton(id="kw:tren", title="Tren"),)).media.media_kind
        <MediaKind.DOCUMENT: 'document'>
    """

    kind: Literal["buttons"] = "buttons"
    body: str
    buttons: tuple[ReplyButton, ...] = Field(min_length=1)
    header: str | None = None
    footer: str | None = None
    media: Media | None = None

    @model_validator(mode="after")
    def _one_header(self) -> Buttons:
        if self.media is None:
            return self
        if self.header:
            raise ValueError(
                "Buttons takes a text header or a media header, not both: drop 'header' or 'media'"
            )
        if self.media.media_kind not in HEADER_MEDIA_KINDS:
            raise ValueError(
                f"a Buttons media header is an image, a video or a document, "
                f"not {self.media.media_kind.value}"
            )
        return self


class ListRow(_Frozen):
    id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1)
    description: str | None = None


class ListSection(_Frozen):
    title: str | None = None
    rows: tuple[ListRow, ...] = Field(min_length=1)


class ListMenu(_Frozen):
    """Text with a button that opens a list of options."""

    kind: Literal["list"] = "list"
    body: str
    button: str
    sections: tuple[ListSection, ...] = Field(min_length=1)
    header: str | None = None
    footer: str | None = None

    @property
    def rows(self) -> tuple[ListRow, ...]:
        return tuple(row for section in self.sections for row in section.rows)


class LocationRequest(_Frozen):
    """Ask the citizen to share their location (WhatsApp ``location_request_message``)."""

    kind: Literal["location_request"] = "location_request"
    body: str


class TemplateParameter(_Frozen):
    """One body parameter of an approved template (text only, the common case)."""

    text: str


class Template(_Frozen):
    """An approved WhatsApp template, the only content allowed outside the 24-hour window."""

    kind: Literal["template"] = "template"
    name: str
    language: str
    body_parameters: tuple[TemplateParameter, ...] = ()
    fallback_text: str | None = None  # what channels without templates send instead


class MarkRead(_Frozen):
    """Tell the provider that the citizen's message ``message_id`` was read."""

    kind: Literal["mark_read"] = "mark_read"
    message_id: str


InboundContent = Annotated[
    Text | Media | Location | Contacts | InteractiveReply | Reaction | Unsupported | SystemNotice,
    Field(discriminator="kind"),
]
OutboundContent = Annotated[
    Text | Media | Location | Buttons | ListMenu | LocationRequest | Template | MarkRead,
    Field(discriminator="kind"),
]
Content = Annotated[
    Text
    | Media
    | Location
    | Contacts
    | InteractiveReply
    | Reaction
    | Unsupported
    | SystemNotice
    | Buttons
    | ListMenu
    | LocationRequest
    | Template
    | MarkRead,
    Field(discriminator="kind"),
]

_CONTENT_ADAPTER: TypeAdapter[Content] = TypeAdapter(Content)


def content_from_json(data: str | bytes) -> Content:
    """Read back any content serialised with ``model_dump_json()``."""
    return _CONTENT_ADAPTER.validate_json(data)


# --------------------------------------------------------------------------- text


_SENTENCE_END = re.compile(r"([.!?…:;][\"'»)\]]*)\s+")


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` characters, at the best boundary.

    Prefers a paragraph break, then a line break, then the end of a sentence, then a space, and
    cuts a word only when nothing else fits. Whitespace at the cut is dropped; nothing else is.
    Used for long keyword replies, the keyword index and a channel's text limit alike::

        >>> split_text("Bus urbà.\\n\\nTren i rodalies.", 12)
        ['Bus urbà.', 'Tren i', 'rodalies.']
    """
    if limit < 1:
        raise ValueError("split_text needs a positive limit")
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _best_cut(rest, limit)
        piece = rest[:cut].rstrip()
        if piece:
            pieces.append(piece)
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _best_cut(text: str, limit: int) -> int:
    window = text[: limit + 1]  # a boundary just after the limit still gives a piece <= limit
    floor = limit // 3
    for sep in ("\n\n", "\n"):
        at = window.rfind(sep)
        if at > floor:
            return at + len(sep)
    best = 0
    for match in _SENTENCE_END.finditer(window):
        if match.start() + len(match.group(1)) <= limit:
            best = match.end()
    if best > floor:
        return best
    at = window.rfind(" ")
    if at > 0:
        return at + 1
    return limit


# --------------------------------------------------------------------------- envelopes


class Sender(_Frozen):
    """Who wrote: the provider's id for the citizen on this channel, and what it tells us."""

    id: str
    name: str | None = None
    language_hint: str | None = None  # e.g. Telegram's ``from.language_code``


class InboundMessage(_Frozen):
    """One message a citizen sent to one of our accounts."""

    channel: str
    account: str
    provider_message_id: str
    sender: Sender
    timestamp: AwareDatetime
    content: InboundContent
    reply_to: str | None = None  # provider id of the message this one answers
    forwarded: bool = False


class ProviderError(_Frozen):
    code: int | None = None
    title: str | None = None
    detail: str | None = None


class StatusUpdate(_Frozen):
    """A delivery status for one of our outbound messages."""

    channel: str
    account: str
    provider_message_id: str
    recipient_id: str
    status: DeliveryStatus
    timestamp: AwareDatetime
    errors: tuple[ProviderError, ...] = ()


class OutboundMessage(_Frozen):
    """Content to send to a citizen on one account of one channel."""

    channel: str
    account: str
    recipient_id: str
    content: OutboundContent
    reply_to: str | None = None
