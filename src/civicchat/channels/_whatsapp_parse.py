"""Parsing WhatsApp Cloud API webhook payloads into typed events. Pure, no I/O.

The envelope must be right (else :class:`PayloadError`, 400). A message we cannot read but can
identify (it has an ``id`` and a ``from``) becomes :class:`Unsupported` content, so it is stored
and an operator sees that something came; it never fails the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from civicchat.channels._http import unix_time
from civicchat.channels.base import Event
from civicchat.exceptions import PayloadError
from civicchat.messages import (
    ContactCard,
    Contacts,
    DeliveryStatus,
    InboundContent,
    InboundMessage,
    InteractiveReply,
    Location,
    Media,
    MediaKind,
    ProviderError,
    Reaction,
    Sender,
    StatusUpdate,
    SystemNotice,
    Text,
    Unsupported,
)

logger = logging.getLogger("civicchat.channels")

CHANNEL = "whatsapp"

_MEDIA_TYPES = {
    "image": MediaKind.IMAGE,
    "video": MediaKind.VIDEO,
    "audio": MediaKind.AUDIO,
    "document": MediaKind.DOCUMENT,
    "sticker": MediaKind.STICKER,
}
_STATUSES = {s.value: s for s in DeliveryStatus if s is not DeliveryStatus.QUEUED}


class _Skip(Exception):
    """A message item that cannot be read; recorded as unsupported with this reason."""


def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{what} must be a JSON object", channel=CHANNEL)
    return value


def _list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"{what} must be a JSON array", channel=CHANNEL)
    return value


def _str(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _need_str(data: Mapping[str, Any], key: str) -> str:
    value = _str(data.get(key))
    if not value:
        raise _Skip(f"missing {key}")
    return value


def _sub(message: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if not isinstance(value, dict):
        raise _Skip(f"missing {key} object")
    return value


def parse_payload(
    data: dict[str, Any], account_for: Callable[[str], str | None]
) -> tuple[Event, ...]:
    """All events of a verified webhook body; ``account_for(phone_number_id)`` names the account.

    Changes for a number that ``account_for`` does not know are skipped (logged at WARNING):
    answering 400 would make Meta retry them for days.
    """
    if data.get("object") != "whatsapp_business_account":
        raise PayloadError("not a whatsapp_business_account webhook", channel=CHANNEL)
    events: list[Event] = []
    seen_messages: set[str] = set()
    seen_statuses: set[tuple[str, str]] = set()
    for entry in _list(data.get("entry"), "entry"):
        for change in _list(_obj(entry, "entry item").get("changes"), "changes"):
            change = _obj(change, "change")
            if change.get("field") != "messages":
                logger.debug("ignoring whatsapp webhook field %r", change.get("field"))
                continue
            value = _obj(change.get("value"), "change value")
            metadata = _obj(value.get("metadata"), "metadata")
            number_id = _str(metadata.get("phone_number_id"))
            if number_id is None:
                raise PayloadError("metadata.phone_number_id is missing", channel=CHANNEL)
            account = account_for(number_id)
            if account is None:
                logger.warning("whatsapp webhook for unknown phone_number_id %s skipped", number_id)
                continue
            for error in _list(value.get("errors"), "errors"):
                if isinstance(error, dict):
                    logger.warning(
                        "whatsapp webhook error %s: %s", error.get("code"), error.get("title")
                    )
            names = _contact_names(value.get("contacts"))
            for item in _list(value.get("messages"), "messages"):
                message = _message(_obj(item, "message"), account, names)
                if message.provider_message_id in seen_messages:
                    continue
                seen_messages.add(message.provider_message_id)
                events.append(message)
            for item in _list(value.get("statuses"), "statuses"):
                status = _status(_obj(item, "status"), account)
                if status is None:
                    continue
                key = (status.provider_message_id, status.status.value)
                if key in seen_statuses:
                    continue
                seen_statuses.add(key)
                events.append(status)
    return tuple(events)


def _contact_names(contacts: object) -> dict[str, str]:
    names: dict[str, str] = {}
    for contact in _list(contacts, "contacts"):
        if not isinstance(contact, dict):
            continue
        wa_id = _str(contact.get("wa_id"))
        profile = contact.get("profile")
        if wa_id and isinstance(profile, dict) and isinstance(profile.get("name"), str):
            names[wa_id] = profile["name"]
    return names


def _message(message: dict[str, Any], account: str, names: Mapping[str, str]) -> InboundMessage:
    message_id = _str(message.get("id"))
    sender_id = _str(message.get("from"))
    if not message_id or not sender_id:
        raise PayloadError("a message lacks its id or from", channel=CHANNEL)
    timestamp = unix_time(message.get("timestamp"), channel=CHANNEL)
    provider_type = _str(message.get("type")) or "unknown"
    try:
        content = _content(provider_type, message)
    except _Skip as skip:
        content = Unsupported(provider_type=provider_type, reason=str(skip))
    except ValueError as exc:  # a pydantic bound (latitude...) refused the value
        content = Unsupported(provider_type=provider_type, reason=f"invalid value: {exc}"[:300])
    context = message.get("context")
    reply_to = None
    forwarded = False
    if isinstance(context, dict):
        reply_to = _str(context.get("id"))
        forwarded = bool(context.get("forwarded") or context.get("frequently_forwarded"))
    return InboundMessage(
        channel=CHANNEL,
        account=account,
        provider_message_id=message_id,
        sender=Sender(id=sender_id, name=names.get(sender_id)),
        timestamp=timestamp,
        content=content,
        reply_to=reply_to,
        forwarded=forwarded,
    )


def _content(kind: str, message: dict[str, Any]) -> InboundContent:
    if kind == "text":
        return Text(body=_need_str(_sub(message, "text"), "body"))
    if kind in _MEDIA_TYPES:
        media = _sub(message, kind)
        media_kind = _MEDIA_TYPES[kind]
        if kind == "audio" and media.get("voice") is True:
            media_kind = MediaKind.VOICE
        return Media(
            media_kind=media_kind,
            media_id=_need_str(media, "id"),
            link=_str(media.get("url")),
            mime_type=_str(media.get("mime_type")),
            sha256=_str(media.get("sha256")),
            caption=_str(media.get("caption")),
            filename=_str(media.get("filename")),
            animated=media.get("animated") is True,
            size=media.get("file_size") if isinstance(media.get("file_size"), int) else None,
        )
    if kind == "location":
        loc = _sub(message, "location")
        lat, lon = loc.get("latitude"), loc.get("longitude")
        if not isinstance(lat, int | float) or not isinstance(lon, int | float):
            raise _Skip("location without numeric latitude/longitude")
        return Location(
            latitude=float(lat),
            longitude=float(lon),
            name=_str(loc.get("name")),
            address=_str(loc.get("address")),
            url=_str(loc.get("url")),
        )
    if kind == "contacts":
        return _contacts(message.get("contacts"))
    if kind == "interactive":
        return _interactive(message)
    if kind == "button":
        button = _sub(message, "button")
        payload = _str(button.get("payload")) or _need_str(button, "text")
        return InteractiveReply(
            reply_id=payload,
            title=_str(button.get("text")) or payload,
            source="template_button",
        )
    if kind == "reaction":
        reaction = _sub(message, "reaction")
        return Reaction(
            message_id=_need_str(reaction, "message_id"),
            emoji=_str(reaction.get("emoji")) or None,
        )
    if kind == "system":
        system = _sub(message, "system")
        return SystemNotice(
            notice=_str(system.get("type")) or "system",
            new_id=_str(system.get("wa_id")) or _str(system.get("new_wa_id")),
        )
    return Unsupported(provider_type=_unsupported_type(kind, message), reason=_errors_text(message))


def _interactive(message: dict[str, Any]) -> InboundContent:
    interactive = message.get("interactive")
    if not isinstance(interactive, dict):
        return Unsupported(provider_type="interactive", reason=_errors_text(message) or "empty")
    sub_type = _str(interactive.get("type"))
    if sub_type in ("button_reply", "list_reply"):
        reply = _sub(interactive, sub_type)
        reply_id = _need_str(reply, "id")
        return InteractiveReply(
            reply_id=reply_id,
            title=_str(reply.get("title")) or reply_id,
            description=_str(reply.get("description")),
            source="button" if sub_type == "button_reply" else "list",
        )
    return Unsupported(provider_type=f"interactive/{sub_type}", reason=_errors_text(message))


def _contacts(items: object) -> Contacts:
    if not isinstance(items, list) or not items:
        raise _Skip("contacts without any contact")
    cards = []
    for item in items:
        if not isinstance(item, dict):
            continue
        raw_name = item.get("name")
        name: dict[str, Any] = raw_name if isinstance(raw_name, dict) else {}
        formatted = _str(name.get("formatted_name")) or " ".join(
            p for p in (_str(name.get("first_name")), _str(name.get("last_name"))) if p
        )
        phones = tuple(
            p for p in (_str(ph.get("phone")) for ph in _as_dicts(item.get("phones"))) if p
        )
        emails = tuple(
            e for e in (_str(em.get("email")) for em in _as_dicts(item.get("emails"))) if e
        )
        org = item.get("org")
        cards.append(
            ContactCard(
                name=formatted or "?",
                phones=phones,
                emails=emails,
                organization=_str(org.get("company")) if isinstance(org, dict) else None,
            )
        )
    if not cards:
        raise _Skip("contacts without any readable contact")
    return Contacts(contacts=tuple(cards))


def _as_dicts(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _unsupported_type(kind: str, message: dict[str, Any]) -> str:
    inner = message.get("unsupported")
    if kind == "unsupported" and isinstance(inner, dict) and _str(inner.get("type")):
        return f"unsupported/{inner['type']}"
    return kind


def _errors_text(message: dict[str, Any]) -> str | None:
    for error in _list(message.get("errors"), "errors"):
        if isinstance(error, dict):
            details = error.get("error_data")
            detail = _str(details.get("details")) if isinstance(details, dict) else None
            return f"{error.get('code')}: {detail or _str(error.get('title')) or ''}".strip()
    return None


def _status(status: dict[str, Any], account: str) -> StatusUpdate | None:
    name = _str(status.get("status"))
    message_id = _str(status.get("id"))
    recipient = _str(status.get("recipient_id"))
    if not message_id or not recipient:
        raise PayloadError("a status lacks its id or recipient_id", channel=CHANNEL)
    value = _STATUSES.get(name or "")
    if value is None:
        logger.debug("ignoring whatsapp status %r", name)
        return None
    errors = tuple(
        ProviderError(
            code=error.get("code") if isinstance(error.get("code"), int) else None,
            title=_str(error.get("title")),
            detail=_str(error.get("error_data", {}).get("details"))
            if isinstance(error.get("error_data"), dict)
            else _str(error.get("message")),
        )
        for error in _as_dicts(status.get("errors"))
    )
    return StatusUpdate(
        channel=CHANNEL,
        account=account,
        provider_message_id=message_id,
        recipient_id=recipient,
        status=value,
        timestamp=unix_time(status.get("timestamp"), channel=CHANNEL),
        errors=errors,
    )
