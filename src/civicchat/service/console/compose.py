"""The console's reply form: from what the operator typed to the message that is sent.

A field to correct raises :class:`InvalidReply` naming it, so the page can show the message next
to it and keep everything typed. Coordinates take a decimal comma, as written in ca/es::

    reply_content({"kind": "location", "latitude": "41,5391", "longitude": "2,4445"}, "location")
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from civicchat.messages import Location, Media, MediaKind, OutboundContent, Text
from civicchat.service.console.web import MAX_FORM_BYTES, Denied, field

__all__ = ["DRAFT_FIELDS", "REPLY_KINDS", "InvalidReply", "reply_content"]

_URL = re.compile(r"^https?://[^\s<>\"]+\Z")
DRAFT_FIELDS = ("body", "url", "filename", "latitude", "longitude", "name", "address")
REPLY_KINDS = ("text", "link", "location", "document")


class InvalidReply(Exception):
    """A reply the operator must correct: ``field`` is where the message ``key`` goes, filled
    in with ``params`` (``too_long`` takes ``n``, the most characters allowed)."""

    def __init__(self, field: str, key: str, **params: object) -> None:
        super().__init__(key)
        self.field = field
        self.key = key
        self.params = params


def _typed(form: Any, name: str, limit: int, *, shown_at: str | None = None) -> str:
    """Field ``name`` as typed; over ``limit`` characters it is a field to correct (shown at
    ``shown_at``, else at itself), never a bare refusal that would lose the draft."""
    value = field(form, name, max_length=MAX_FORM_BYTES)  # the whole form is bounded anyway
    if len(value) > limit:
        raise InvalidReply(shown_at or name, "too_long", n=limit)
    return value


def _coordinate(value: str, name: str, limit: float) -> float:
    """A latitude or longitude as typed: a decimal point or, as written in ca/es, a comma."""
    text = value.strip().replace(" ", "")
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")
    try:
        number = float(text)
    except ValueError:
        raise InvalidReply(name, f"bad_{name}") from None
    if not -limit <= number <= limit or number != number:
        raise InvalidReply(name, f"bad_{name}")
    return number


def reply_content(form: Any, kind: str) -> OutboundContent:
    """The message a reply form describes; :class:`InvalidReply` names the field to correct."""
    if kind == "text":
        body = _typed(form, "body", 4096)
        if not body:
            raise InvalidReply("body", "reply_empty")
        return Text(body=body)
    if kind == "link":
        url = _typed(form, "url", 2000)
        if not _URL.match(url):
            raise InvalidReply("url", "bad_url")
        body = _typed(form, "body", 4096)
        return Text(body=f"{body}\n{url}" if body else url, preview_url=True)
    if kind == "location":
        try:
            return Location(
                latitude=_coordinate(_typed(form, "latitude", 40), "latitude", 90),
                longitude=_coordinate(_typed(form, "longitude", 40), "longitude", 180),
                name=_typed(form, "name", 200) or None,
                address=_typed(form, "address", 300) or None,
            )
        except ValidationError:
            raise InvalidReply("latitude", "bad_latitude") from None
    if kind == "document":
        url = _typed(form, "url", 2000)
        if not _URL.match(url):
            raise InvalidReply("url", "bad_url")
        # The reply box is the document's caption (one text box, the one that is sent).
        caption = _typed(form, "body", 1000) or _typed(form, "caption", 1000, shown_at="body")
        return Media(
            media_kind=MediaKind.DOCUMENT,
            link=url,
            filename=_typed(form, "filename", 200) or None,
            caption=caption or None,
        )
    raise Denied(400, "invalid")
