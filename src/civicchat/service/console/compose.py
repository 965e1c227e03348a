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
from civicchat.service.console.web import Denied, field

__all__ = ["DRAFT_FIELDS", "REPLY_KINDS", "InvalidReply", "reply_content"]

_URL = re.compile(r"^https?://[^\s<>\"]+\Z")
DRAFT_FIELDS = ("body", "url", "filename", "latitude", "longitude", "name", "address")
REPLY_KINDS = ("text", "link", "location", "document")


class InvalidReply(Exception):
    """A reply the operator must correct: ``field`` is where the message ``key`` goes."""

    def __init__(self, field: str, key: str) -> None:
        super().__init__(key)
        self.field = field
        self.key = key


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
    """The message a reply form describes; :class:`_Invalid` names the field to correct."""
    if kind == "text":
        body = field(form, "body")
        if not body:
            raise InvalidReply("body", "reply_empty")
        return Text(body=body)
    if kind == "link":
        url = field(form, "url", max_length=2000)
        if not _URL.match(url):
            raise InvalidReply("url", "bad_url")
        body = field(form, "body")
        return Text(body=f"{body}\n{url}" if body else url, preview_url=True)
    if kind == "location":
        try:
            return Location(
                latitude=_coordinate(field(form, "latitude", max_length=40), "latitude", 90),
                longitude=_coordinate(field(form, "longitude", max_length=40), "longitude", 180),
                name=field(form, "name", max_length=200) or None,
                address=field(form, "address", max_length=300) or None,
            )
        except ValidationError:
            raise InvalidReply("latitude", "bad_latitude") from None
    if kind == "document":
        url = field(form, "url", max_length=2000)
        if not _URL.match(url):
            raise InvalidReply("url", "bad_url")
        # The reply box is the document's caption (one text box, the one that is sent).
        caption = field(form, "body", max_length=1000) or field(form, "caption", max_length=1000)
        return Media(
            media_kind=MediaKind.DOCUMENT,
            link=url,
            filename=field(form, "filename", max_length=200) or None,
            caption=caption or None,
        )
    raise Denied(400, "invalid")
