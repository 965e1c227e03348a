"""One shared fallback for content a channel cannot show natively.

:func:`degrade` turns one outbound content into a list of contents that the channel described by a
:class:`~civicchat.channels.base.Capabilities` can carry, one provider message each:

- buttons (too many, titles too long, or no buttons at all) and lists become numbered options
  ("1. ...", "2. ...") that the citizen answers with "1", "2"; :func:`match_numbered_reply` maps
  that answer back to the button id;
- buttons under a media header (:attr:`~civicchat.messages.Buttons.media`) stay one message where
  the channel has ``button_media``; elsewhere the file goes first, then the buttons, or, without
  buttons, the file with the numbered options as its caption (one message when they fit);
- a list that does not fit becomes reply buttons when they fit, numbered options otherwise;
- a location becomes its name, address and a map link;
- a location request becomes text asking to share the location: the channel's own
  :attr:`~civicchat.channels.base.Capabilities.share_location_hint` ("toca el botó 📍"), else
  wording true in any client (its location option, or the address written out);
- a template becomes its ``fallback_text`` on channels without templates;
- a "mark as read" is dropped where the provider has no read receipts;
- a long text is split at paragraph, line, sentence or word boundaries under the text limit.

>>> from civicchat.channels.base import Capabilities
>>> from civicchat.messages import Buttons, ReplyButton
>>> menu = Buttons(body="Què vols fer?", buttons=(ReplyButton(id="bus", title="Bus"),
...                                                ReplyButton(id="taxi", title="Taxi")))
>>> print(degrade(menu, Capabilities(), "ca")[0].body)
Què vols fer?
<BLANKLINE>
1. Bus
2. Taxi
<BLANKLINE>
Respon amb el número de l'opció.
>>> match_numbered_reply(" 2 ", menu).reply_id
'taxi'
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from civicchat.channels.base import Capabilities
from civicchat.exceptions import UnsupportedContentError
from civicchat.messages import (
    Buttons,
    InteractiveReply,
    ListMenu,
    Location,
    LocationRequest,
    MarkRead,
    Media,
    OutboundContent,
    ReplyButton,
    Template,
    Text,
    split_text,
)

__all__ = ["degrade", "match_numbered_reply", "numbered_text", "split_text"]

_WORDING = {
    "ca": {
        "choose": "Respon amb el número de l'opció.",
        "location": "Ubicació",
        "share_location": (
            "Per enviar-nos la teva ubicació, fes servir l'opció d'ubicació del xat, "
            "o escriu-nos l'adreça."
        ),
    },
    "es": {
        "choose": "Responde con el número de la opción.",
        "location": "Ubicación",
        "share_location": (
            "Para enviarnos tu ubicación, usa la opción de ubicación del chat, "
            "o escríbenos la dirección."
        ),
    },
}

_NUMBER_ANSWER = re.compile(r"^\s*(?:(?:opci[oó]n?|n[uú]m(?:ero)?\.?)\s*)?(\d{1,3})\s*[.)]?\s*$")


def _lang(language: str | None) -> str:
    return "es" if (language or "").lower().startswith("es") else "ca"


def degrade(
    content: OutboundContent, capabilities: Capabilities, language: str | None = "ca"
) -> list[OutboundContent]:
    """Render ``content`` for a channel with ``capabilities``; wording in ``language`` (ca/es).

    Returns the contents to send in order (possibly none, for a read receipt the channel cannot
    give). Raises :class:`~civicchat.exceptions.UnsupportedContentError` for a template without
    ``fallback_text`` on a channel without templates.
    """
    lang = _lang(language)
    caps = capabilities
    if isinstance(content, Text):
        return _split(content.body, caps, preview=content.preview_url and caps.link_previews)
    if isinstance(content, Buttons):
        if content.media is not None:
            return _buttons_with_media(content, content.media, caps, lang)
        if _buttons_fit(content.buttons, content.body, caps):
            return [content]
        options: list[tuple[str, str | None]] = [(b.title, None) for b in content.buttons]
        text = numbered_text(content.body, options, lang, content.header, content.footer)
        return _split(text, caps)
    if isinstance(content, ListMenu):
        rows = content.rows
        fits_text = len(content.body) <= caps.max_text_length
        if caps.lists and len(rows) <= caps.max_list_rows and fits_text:
            return [content]
        as_buttons = tuple(ReplyButton(id=row.id, title=row.title) for row in rows)
        if _buttons_fit(as_buttons, content.body, caps):
            return [
                Buttons(
                    body=content.body,
                    buttons=as_buttons,
                    header=content.header,
                    footer=content.footer,
                )
            ]
        options = [(row.title, row.description) for row in rows]
        text = numbered_text(content.body, options, lang, content.header, content.footer)
        return _split(text, caps)
    if isinstance(content, Location):
        if caps.locations:
            return [content]
        lines = [f"📍 {content.name or _WORDING[lang]['location']}"]
        if content.address:
            lines.append(content.address)
        lines.append(content.map_url)
        return _split("\n".join(lines), caps)
    if isinstance(content, LocationRequest):
        if caps.location_requests:
            return [content]
        how = _share_location_hint(caps, language, lang) or _WORDING[lang]["share_location"]
        return _split(f"{content.body}\n\n{how}", caps)
    if isinstance(content, Template):
        if caps.templates:
            return [content]
        if not content.fallback_text:
            raise UnsupportedContentError(
                f"template {content.name!r} has no fallback_text for a channel without templates"
            )
        return _split(content.fallback_text, caps)
    if isinstance(content, MarkRead):
        return [content] if caps.mark_read else []
    if (
        isinstance(content, Media)
        and content.caption
        and len(content.caption) > caps.max_caption_length
    ):
        # WhatsApp refuses a caption over 1,024 characters and Telegram cuts it: the file
        # without it, then the caption as text, split like any other.
        return [content.model_copy(update={"caption": None}), *_split(content.caption, caps)]
    return [content]


def _buttons_with_media(
    content: Buttons, media: Media, caps: Capabilities, lang: str
) -> list[OutboundContent]:
    """Buttons under an image, video or document, in as few messages as the channel allows."""
    fits = _buttons_fit(content.buttons, content.body, caps)
    if fits and caps.button_media and len(content.body) <= caps.max_caption_length:
        return [content]
    bare = content.model_copy(update={"media": None})
    if fits:
        return [media, bare]  # the file (with its own caption), then the text with buttons
    options: list[tuple[str, str | None]] = [(b.title, None) for b in content.buttons]
    text = numbered_text(content.body, options, lang, content.header, content.footer)
    if len(text) <= caps.max_caption_length:
        return [media.model_copy(update={"caption": text})]  # one message, options as caption
    return [media, *_split(text, caps)]


def _share_location_hint(caps: Capabilities, language: str | None, lang: str) -> str | None:
    """The channel's own words for sharing a location in ``language`` ("es-ES" finds "es"),
    else in ``lang``, the language of the rest of the wording."""
    hints = caps.share_location_hint
    code = (language or "").replace("_", "-").lower()
    return hints.get(code) or hints.get(code.split("-", 1)[0]) or hints.get(lang) or None


def _buttons_fit(buttons: tuple[ReplyButton, ...], body: str, caps: Capabilities) -> bool:
    if not caps.buttons or len(buttons) > caps.max_buttons:
        return False
    if len(body) > min(caps.max_text_length, caps.max_button_body or caps.max_text_length):
        return False
    limit = caps.max_button_title
    return limit is None or all(len(b.title) <= limit for b in buttons)


def _split(text: str, caps: Capabilities, *, preview: bool = False) -> list[OutboundContent]:
    return [Text(body=part, preview_url=preview) for part in split_text(text, caps.max_text_length)]


def numbered_text(
    body: str,
    options: Sequence[tuple[str, str | None]],
    language: str | None = "ca",
    header: str | None = None,
    footer: str | None = None,
) -> str:
    """The text form of a menu: body, "1. title - description" lines, how to answer."""
    lines = [
        f"{i}. {title}" + (f" - {desc}" if desc else "")
        for i, (title, desc) in enumerate(options, 1)
    ]
    parts = [p for p in (header, body, "\n".join(lines), footer) if p]
    parts.append(_WORDING[_lang(language)]["choose"])
    return "\n\n".join(parts)


def _fold(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value.casefold().strip())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def match_numbered_reply(text: str, options: Buttons | ListMenu) -> InteractiveReply | None:
    """Map a citizen's answer to numbered options ("1", "2.", "opció 2", or a title) to the button.

    ``options`` is the last menu sent to the citizen. Returns None when the answer is not one of
    its options, so the text goes on to the keyword engine.
    """
    if isinstance(options, Buttons):
        items: list[tuple[str, str, str | None]] = [(b.id, b.title, None) for b in options.buttons]
        source = "button"
    else:
        items = [(r.id, r.title, r.description) for r in options.rows]
        source = "list"
    number = _NUMBER_ANSWER.match(_fold(text))
    chosen: tuple[str, str, str | None] | None = None
    if number:
        index = int(number.group(1))
        if 1 <= index <= len(items):
            chosen = items[index - 1]
    else:
        folded = _fold(text)
        chosen = next((item for item in items if _fold(item[1]) == folded), None)
    if chosen is None:
        return None
    return InteractiveReply(
        reply_id=chosen[0],
        title=chosen[1],
        description=chosen[2],
        source="button" if source == "button" else "list",
    )
