"""Reading a citizen's answer to the flow: its text, the button tapped, yes / no, a photo.

Words are compared folded (the keyword engine's normalisation) and with a typo forgiven, so
"Sí", "si", "d'acord" and "vale" are all yes. "1" and "2" are the first and second option where a
channel without buttons shows them as a numbered list.
"""

from __future__ import annotations

from civicchat.cases._text import fold, fuzzy_in
from civicchat.cases.models import MediaRef
from civicchat.messages import InboundMessage, InteractiveReply, Media, MediaKind, Text

__all__ = [
    "CANCEL",
    "NO",
    "NO_ID",
    "SKIP_ID",
    "SKIP_MEDIA",
    "UNKNOWN_PLACE",
    "YES",
    "YES_ID",
    "is_no",
    "is_yes",
    "media_ref",
    "reply_id",
    "says",
    "text_of",
    "visual_media",
]

CANCEL = ("cancellar", "cancella", "cancelar", "cancela", "cancel", "anullar", "anular")
YES = (
    "si",
    "s",
    "yes",
    "ok",
    "acord",
    "dacord",
    "vale",
    "correcte",
    "correcto",
    "envia",
    "enviar",
)
NO = ("no", "n", "no gracies", "no gracias")
SKIP_MEDIA = (
    "no",
    "n",
    "cap",
    "ninguna",
    "ninguno",
    "no tinc",
    "no tengo",
    "sense foto",
    "sin foto",
)
UNKNOWN_PLACE = ("no ho se", "no lo se", "no se", "nose", "ni idea", "no")

YES_ID = "case:yes"
NO_ID = "case:no"
SKIP_ID = "case:skip"


def says(text: str, vocabulary: tuple[str, ...]) -> bool:
    """``text`` is one of ``vocabulary`` (folded entries), typos and accents forgiven."""
    folded = fold(text)
    return bool(folded) and fuzzy_in(folded, vocabulary)


def text_of(message: InboundMessage) -> str | None:
    """What the citizen wrote, or the title of the button or row they tapped."""
    content = message.content
    if isinstance(content, Text):
        return content.body
    if isinstance(content, InteractiveReply):
        return content.title
    return None


def reply_id(message: InboundMessage) -> str | None:
    """The id of the button or list row tapped, None for anything else."""
    content = message.content
    return content.reply_id if isinstance(content, InteractiveReply) else None


def is_yes(message: InboundMessage) -> bool:
    """The yes button, "1", or a yes in words."""
    return _chose(message, YES_ID, "1", YES)


def is_no(message: InboundMessage) -> bool:
    """The no button, "2", or a no in words."""
    return _chose(message, NO_ID, "2", NO)


def _chose(message: InboundMessage, button: str, number: str, words: tuple[str, ...]) -> bool:
    tapped = reply_id(message)
    if tapped is not None:
        return tapped == button
    text = text_of(message)
    # The number is the option's where a channel without buttons shows them as a numbered list.
    return text is not None and (fold(text) == number or says(text, words))


def visual_media(message: InboundMessage) -> Media | None:
    """The photo or video the message carries, None for anything else."""
    content = message.content
    if isinstance(content, Media) and content.media_kind in (MediaKind.IMAGE, MediaKind.VIDEO):
        return content
    return None


def media_ref(message: InboundMessage, media: Media) -> MediaRef:
    """How the case keeps ``media``: the provider's id (or link) and the channel it came by."""
    ref = media.media_id or media.link or ""
    return MediaRef(
        media_kind=media.media_kind, ref=ref, channel=message.channel, mime_type=media.mime_type
    )
