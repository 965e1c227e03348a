"""Telegram Bot API channel: one bot (one account) per :class:`TelegramChannel`.

Telegram does not sign bodies: ``setWebhook`` registers a ``secret_token`` that Telegram sends
back in ``X-Telegram-Bot-Api-Secret-Token``, compared here in constant time.

Message ids are unique only within a chat, so ``provider_message_id`` is ``"<chat id>:<message
id>"`` (and ``"cb:<id>"`` for a pressed inline button); send returns ids of the same form.

A callback query (an inline button pressed) is answered in the webhook response itself, with an
``answerCallbackQuery`` method call in the body, as the Bot API allows: no extra request, and
:meth:`TelegramChannel.handle_webhook` stays pure.

Never log request URLs of this client at INFO: the bot token is part of them (httpx logs them
on its own ``httpx`` logger at INFO; keep that logger at WARNING in production).
"""

from __future__ import annotations

import hmac
import json
import logging
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from civicchat.channels._http import (
    load_json_object,
    retry_after_header,
    sniff_mime,
    stream_response,
    transport_error,
    unix_time,
    with_first_chunk,
)
from civicchat.channels.base import (
    Capabilities,
    Event,
    MediaDownload,
    WebhookRequest,
    WebhookResult,
)
from civicchat.channels.ratelimit import RateLimiter, telegram_limiter
from civicchat.clock import Clock, SystemClock
from civicchat.exceptions import (
    AuthenticationError,
    ConfigError,
    MediaError,
    MediaExpiredError,
    MediaTooLargeError,
    SendError,
    SignatureError,
    ThrottledError,
    TransientError,
    UndeliverableError,
    UnsupportedContentError,
    WebhookError,
)
from civicchat.messages import (
    Buttons,
    ContactCard,
    Contacts,
    InboundContent,
    InboundMessage,
    InteractiveReply,
    ListMenu,
    Location,
    LocationRequest,
    Media,
    MediaKind,
    OutboundContent,
    OutboundMessage,
    Sender,
    Text,
    Unsupported,
)

__all__ = ["TELEGRAM_CAPABILITIES", "TelegramAccount", "TelegramChannel"]

logger = logging.getLogger("civicchat.channels")

CHANNEL = "telegram"

TELEGRAM_CAPABILITIES = Capabilities(
    max_text_length=4096,
    buttons=True,
    max_buttons=20,
    lists=True,
    max_list_rows=20,
    locations=True,
    templates=False,
    location_requests=True,
    link_previews=True,
    mark_read=False,
    button_media=True,
    max_caption_length=1024,
)

_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}\Z")
_SEND_MEDIA = {
    MediaKind.IMAGE: ("sendPhoto", "photo"),
    MediaKind.VIDEO: ("sendVideo", "video"),
    MediaKind.AUDIO: ("sendAudio", "audio"),
    MediaKind.VOICE: ("sendVoice", "voice"),
    MediaKind.DOCUMENT: ("sendDocument", "document"),
    MediaKind.STICKER: ("sendSticker", "sticker"),
}
_INBOUND_MEDIA = (
    ("voice", MediaKind.VOICE),
    ("audio", MediaKind.AUDIO),
    ("video", MediaKind.VIDEO),
    ("video_note", MediaKind.VIDEO),
    ("animation", MediaKind.VIDEO),
    ("document", MediaKind.DOCUMENT),
    ("sticker", MediaKind.STICKER),
)
_OTHER_KINDS = ("poll", "dice", "game", "story", "invoice", "checklist", "paid_media")
_LOCATION_BUTTON = "📍 Ubicació / Ubicación"


@dataclass(frozen=True, slots=True)
class TelegramAccount:
    """One bot: its token (from @BotFather) and the webhook secret token you chose."""

    name: str
    bot_token: str = field(repr=False)
    secret_token: str = field(repr=False)
    api_base_url: str = "https://api.telegram.org"

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("TelegramAccount.name is empty")
        if ":" not in self.bot_token:
            raise ConfigError(
                f"TelegramAccount {self.name!r}: bot_token looks wrong; @BotFather gives "
                "'<digits>:<letters>'"
            )
        if not _SECRET.match(self.secret_token):
            raise ConfigError(
                f"TelegramAccount {self.name!r}: secret_token must be 1-256 characters of "
                "A-Z a-z 0-9 _ -"
            )
        if not self.api_base_url.startswith(("https://", "http://")):
            raise ConfigError(f"TelegramAccount {self.name!r}: api_base_url must be an http(s) URL")

    def method_url(self, method: str) -> str:
        """The URL of a Bot API method."""
        return f"{self.api_base_url.rstrip('/')}/bot{self.bot_token}/{method}"

    def file_url(self, file_path: str) -> str:
        """The download URL of a file returned by ``getFile``."""
        return f"{self.api_base_url.rstrip('/')}/file/bot{self.bot_token}/{file_path}"


class TelegramChannel:
    """The Telegram Bot API adapter for one bot.

    ``client`` is the injected ``httpx.AsyncClient``; ``clock`` stamps callback queries, which
    carry no time of their own.
    """

    def __init__(
        self,
        account: TelegramAccount,
        *,
        client: httpx.AsyncClient,
        clock: Clock | None = None,
        capabilities: Capabilities = TELEGRAM_CAPABILITIES,
    ) -> None:
        self.account = account
        self._clock = clock or SystemClock()
        self._client = client
        self._urls: dict[str, httpx.URL] = {}
        self._capabilities = capabilities
        self.limiter: RateLimiter = telegram_limiter()
        """The bot's rate limiter: about 30 messages a second, one a second per chat."""
        self.limiters: Mapping[str, RateLimiter] = {account.name: self.limiter}
        """The same limiter by account name, as :attr:`WhatsAppChannel.limiters`."""

    @property
    def name(self) -> str:
        return CHANNEL

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    # ------------------------------------------------------------------ webhook (pure)

    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        """Check the secret token and parse one update."""
        if request.method != "POST":
            raise WebhookError("only POST", channel=CHANNEL, status_code=405)
        given = request.headers.get("x-telegram-bot-api-secret-token")
        if given is None:
            raise SignatureError(
                "missing X-Telegram-Bot-Api-Secret-Token", channel=CHANNEL, status_code=401
            )
        if not hmac.compare_digest(given.encode(), self.account.secret_token.encode()):
            raise SignatureError(
                "wrong X-Telegram-Bot-Api-Secret-Token", channel=CHANNEL, status_code=403
            )
        update = load_json_object(request.body, channel=CHANNEL)
        if not isinstance(update.get("update_id"), int):
            raise WebhookError("update_id is missing", channel=CHANNEL, status_code=400)
        message = update.get("message")
        if isinstance(message, dict):
            return WebhookResult(events=(self._message(message),))
        callback = update.get("callback_query")
        if isinstance(callback, dict):
            return self._callback(callback)
        # Edits, channel posts, membership changes...: not a citizen writing to us.
        logger.debug("telegram update without message ignored: %s", sorted(update))
        return WebhookResult()

    def _message(self, message: dict[str, Any]) -> InboundMessage:
        chat = message.get("chat")
        message_id = message.get("message_id")
        if not isinstance(chat, dict) or not isinstance(chat.get("id"), int):
            raise WebhookError("message.chat.id is missing", channel=CHANNEL, status_code=400)
        if not isinstance(message_id, int):
            raise WebhookError("message.message_id is missing", channel=CHANNEL, status_code=400)
        chat_id = chat["id"]
        try:
            content = _content(message)
        except ValueError as exc:  # a pydantic bound refused a value (latitude...)
            content = Unsupported(provider_type="invalid", reason=str(exc)[:300])
        reply = message.get("reply_to_message")
        reply_to = None
        if isinstance(reply, dict) and isinstance(reply.get("message_id"), int):
            reply_to = f"{chat_id}:{reply['message_id']}"
        return InboundMessage(
            channel=CHANNEL,
            account=self.account.name,
            provider_message_id=f"{chat_id}:{message_id}",
            sender=_sender(chat_id, message.get("from")),
            timestamp=unix_time(message.get("date"), channel=CHANNEL),
            content=content,
            reply_to=reply_to,
            forwarded=any(k in message for k in ("forward_origin", "forward_from", "forward_date")),
        )

    def _callback(self, callback: dict[str, Any]) -> WebhookResult:
        callback_id = callback.get("id")
        if not isinstance(callback_id, str) or not callback_id:
            raise WebhookError("callback_query.id is missing", channel=CHANNEL, status_code=400)
        answer = json.dumps({"method": "answerCallbackQuery", "callback_query_id": callback_id})
        message = callback.get("message")
        sender = callback.get("from")
        chat_id: object = None
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            chat_id = message["chat"].get("id")
        if not isinstance(chat_id, int) and isinstance(sender, dict):
            chat_id = sender.get("id")
        if not isinstance(chat_id, int):
            raise WebhookError("callback_query without a chat", channel=CHANNEL, status_code=400)
        data = callback.get("data")
        content: InboundContent
        if isinstance(data, str) and data:
            content = InteractiveReply(
                reply_id=data, title=_button_title(message, data) or data, source="callback"
            )
        else:
            content = Unsupported(provider_type="callback_query", reason="no callback data")
        reply_to = None
        if isinstance(message, dict) and isinstance(message.get("message_id"), int):
            reply_to = f"{chat_id}:{message['message_id']}"
        event: Event = InboundMessage(
            channel=CHANNEL,
            account=self.account.name,
            provider_message_id=f"cb:{callback_id}",
            sender=_sender(chat_id, sender),
            timestamp=self._clock.now(),  # a callback query carries no time of its own
            content=content,
            reply_to=reply_to,
        )
        return WebhookResult(body=answer.encode(), content_type="application/json", events=(event,))

    # ------------------------------------------------------------------ sending

    async def set_webhook(self, url: str, *, drop_pending_updates: bool = False) -> None:
        """Register ``url`` as the bot's webhook with this account's secret token."""
        await self._call(
            "setWebhook",
            {
                "url": url,
                "secret_token": self.account.secret_token,
                "allowed_updates": ["message", "callback_query"],
                "drop_pending_updates": drop_pending_updates,
            },
        )

    async def send(self, message: OutboundMessage, *, last_inbound_at: datetime | None) -> str:
        """Send one message; ``last_inbound_at`` is ignored (Telegram has no window)."""
        if message.account != self.account.name:
            raise ConfigError(
                f"this Telegram channel serves account {self.account.name!r}, not {message.account!r}"
            )
        method, params = self.build_call(message)
        result = await self._call(method, params)
        if isinstance(result, dict):
            chat = result.get("chat")
            if isinstance(chat, dict) and isinstance(result.get("message_id"), int):
                logger.info("telegram %s sent on %s", message.content.kind, self.account.name)
                return f"{chat.get('id')}:{result['message_id']}"
        raise TransientError(
            "Telegram answered without a message", channel=CHANNEL, account=self.account.name
        )

    def build_call(self, message: OutboundMessage) -> tuple[str, dict[str, Any]]:
        """The Bot API method and parameters for ``message``."""
        chat_id = _chat_id(message.recipient_id)
        method, params = self._content_call(message.content)
        params["chat_id"] = chat_id
        if message.reply_to and ":" in message.reply_to:
            reply_id = message.reply_to.rsplit(":", 1)[1]
            if reply_id.isdigit():
                params["reply_parameters"] = {
                    "message_id": int(reply_id),
                    "allow_sending_without_reply": True,
                }
        return method, params

    def _content_call(self, content: OutboundContent) -> tuple[str, dict[str, Any]]:
        caps = self._capabilities

        def refuse(why: str) -> UnsupportedContentError:
            return UnsupportedContentError(
                f"{why}; run civicchat.channels.degrade first",
                channel=CHANNEL,
                account=self.account.name,
            )

        if isinstance(content, Text):
            if not 1 <= len(content.body) <= caps.max_text_length:
                raise refuse(f"text must have 1-{caps.max_text_length} characters")
            return "sendMessage", {
                "text": content.body,
                "link_preview_options": {"is_disabled": not _has_link(content.body)},
            }
        if isinstance(content, Buttons | ListMenu):
            if isinstance(content, Buttons):
                choices = [(b.id, b.title) for b in content.buttons]
                limit = caps.max_buttons
            else:
                choices = [(r.id, r.title) for r in content.rows]
                limit = caps.max_list_rows
            if len(choices) > limit:
                raise refuse(f"at most {limit} inline buttons")
            if any(len(choice_id.encode()) > 64 for choice_id, _ in choices):
                raise refuse("Telegram callback data holds at most 64 bytes")
            text = "\n\n".join(p for p in (content.header, content.body, content.footer) if p)
            keyboard = [[{"text": title, "callback_data": cid}] for cid, title in choices]
            markup = {"inline_keyboard": keyboard}
            media = content.media if isinstance(content, Buttons) else None
            if media is None:
                return "sendMessage", {"text": text, "reply_markup": markup}
            # One message: the photo, video or document, the text as its caption, the keyboard.
            if not caps.button_media:
                raise refuse("this bot's capabilities have no media with buttons")
            if len(text) > caps.max_caption_length:
                raise refuse(f"a caption has at most {caps.max_caption_length} characters")
            method, field_name = _SEND_MEDIA[media.media_kind]
            return method, {
                field_name: media.link or media.media_id,
                "caption": text,
                "reply_markup": markup,
            }
        if isinstance(content, Media):
            method, field_name = _SEND_MEDIA[content.media_kind]
            params: dict[str, Any] = {field_name: content.link or content.media_id}
            if content.caption and content.media_kind is not MediaKind.STICKER:
                params["caption"] = content.caption[:1024]
            return method, params
        if isinstance(content, Location):
            if content.name and content.address:
                return "sendVenue", {
                    "latitude": content.latitude,
                    "longitude": content.longitude,
                    "title": content.name,
                    "address": content.address,
                }
            return "sendLocation", {"latitude": content.latitude, "longitude": content.longitude}
        if isinstance(content, LocationRequest):
            return "sendMessage", {
                "text": content.body,
                "reply_markup": {
                    "keyboard": [[{"text": _LOCATION_BUTTON, "request_location": True}]],
                    "one_time_keyboard": True,
                    "resize_keyboard": True,
                },
            }
        raise refuse(f"Telegram cannot send {content.kind}")

    def _method_url(self, method: str) -> httpx.URL:
        """The Bot API URL of ``method``, parsed once (httpx parses a string on every call)."""
        url = self._urls.get(method)
        if url is None:
            url = self._urls[method] = httpx.URL(self.account.method_url(method))
        return url

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        try:
            response = await self._client.post(self._method_url(method), json=params)
        except httpx.HTTPError as exc:
            raise transport_error(exc, channel=CHANNEL, account=self.account.name) from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("ok") is True:
            return data.get("result")
        error = self._error(response, data)
        logger.warning(
            "telegram %s failed on %s: HTTP %s (%s)",
            method,
            self.account.name,
            response.status_code,
            type(error).__name__,
        )
        raise error

    def _error(self, response: httpx.Response, data: object) -> SendError:
        code = response.status_code
        description = ""
        retry_after: float | None = retry_after_header(response)
        if isinstance(data, dict):
            if isinstance(data.get("error_code"), int):
                code = data["error_code"]
            description = str(data.get("description") or "")
            parameters = data.get("parameters")
            if isinstance(parameters, dict) and isinstance(
                parameters.get("retry_after"), int | float
            ):
                retry_after = float(parameters["retry_after"])
        kwargs: dict[str, Any] = {
            "channel": CHANNEL,
            "account": self.account.name,
            "status_code": response.status_code,
            "provider_code": code,
        }
        message = f"Telegram error {code}: {description or response.reason_phrase}"
        if code == 429:
            return ThrottledError(message, retry_after=retry_after or 1.0, **kwargs)
        if code == 401 or (code == 404 and not description.startswith("Not Found: file")):
            return AuthenticationError(message, **kwargs)
        if code == 403:  # "bot was blocked by the user", "user is deactivated"
            return UndeliverableError(message, **kwargs)
        if code >= 500:
            return TransientError(message, retry_after=retry_after, **kwargs)
        return SendError(message, **kwargs)

    # ------------------------------------------------------------------ media

    async def fetch_media(self, account: str, media_id: str, *, max_bytes: int) -> MediaDownload:
        """Download a file: ``getFile`` for its path, then the file, asking again once on 404."""
        if account != self.account.name:
            raise ConfigError(f"this Telegram channel serves account {self.account.name!r}")
        for attempt in range(2):
            try:
                info = await self._call("getFile", {"file_id": media_id})
            except SendError as exc:
                if "too big" in str(exc):
                    raise MediaTooLargeError(
                        "Telegram serves bots files up to 20 MB", channel=CHANNEL, account=account
                    ) from exc
                if exc.status_code == 400:
                    raise MediaExpiredError(
                        "file_id is not valid any more", channel=CHANNEL, account=account
                    ) from exc
                raise MediaError(
                    f"getFile failed: {exc}", channel=CHANNEL, account=account
                ) from exc
            if not isinstance(info, dict) or not isinstance(info.get("file_path"), str):
                raise MediaError("getFile gave no file_path", channel=CHANNEL, account=account)
            size = info.get("file_size")
            if isinstance(size, int) and size > max_bytes:
                raise MediaTooLargeError(
                    f"file is {size} bytes, over the cap of {max_bytes}",
                    channel=CHANNEL,
                    account=account,
                )
            path: str = info["file_path"]
            request = self._client.build_request("GET", self.account.file_url(path))
            try:
                response, chunks = await stream_response(self._client, request)
            except httpx.HTTPError as exc:
                raise MediaError(
                    f"file download failed: {type(exc).__name__}", channel=CHANNEL, account=account
                ) from exc
            if response.status_code == 404:
                await response.aclose()
                if attempt == 0:
                    continue
                raise MediaExpiredError("file path expired", channel=CHANNEL, account=account)
            if not response.is_success:
                await response.aclose()
                raise MediaError(
                    f"file download answered HTTP {response.status_code}",
                    channel=CHANNEL,
                    account=account,
                )
            head, stream = await with_first_chunk(chunks)
            guessed, _ = mimetypes.guess_type(path)
            return MediaDownload(
                mime_type=sniff_mime(head) or guessed or "application/octet-stream",
                chunks=stream,
                max_bytes=max_bytes,
                size=size if isinstance(size, int) else None,
                filename=path.rsplit("/", 1)[-1],
            )
        raise MediaExpiredError(
            "file path expired", channel=CHANNEL, account=account
        )  # pragma: no cover


def _chat_id(recipient_id: str) -> int | str:
    if recipient_id.lstrip("-").isdigit():
        return int(recipient_id)
    if recipient_id.startswith("@"):
        return recipient_id
    raise UnsupportedContentError(f"not a Telegram chat id: {recipient_id[:3]}...", channel=CHANNEL)


def _has_link(text: str) -> bool:
    return "https://" in text or "http://" in text


def _sender(chat_id: int, user: object) -> Sender:
    name = None
    language = None
    if isinstance(user, dict):
        parts = [user.get("first_name"), user.get("last_name")]
        name = " ".join(p for p in parts if isinstance(p, str) and p) or None
        code = user.get("language_code")
        language = code if isinstance(code, str) and code else None
    return Sender(id=str(chat_id), name=name, language_hint=language)


def _button_title(message: object, data: str) -> str | None:
    if not isinstance(message, dict):
        return None
    markup = message.get("reply_markup")
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data:
                text = button.get("text")
                return text if isinstance(text, str) else None
    return None


def _file(obj: object) -> dict[str, Any] | None:
    if isinstance(obj, dict) and isinstance(obj.get("file_id"), str) and obj["file_id"]:
        return obj
    return None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _photo_area(photo: dict[str, Any]) -> tuple[int, int]:
    return (_int(photo.get("width")) * _int(photo.get("height")), _int(photo.get("file_size")))


def _content(message: dict[str, Any]) -> InboundContent:
    caption = message.get("caption") if isinstance(message.get("caption"), str) else None
    text = message.get("text")
    if isinstance(text, str):
        return Text(body=text)
    photos = message.get("photo")
    if isinstance(photos, list):
        sizes = [p for p in photos if _file(p)]
        if sizes:
            # Telegram lists sizes smallest first; the largest is the one worth keeping.
            largest = max(sizes, key=_photo_area)
            return Media(
                media_kind=MediaKind.IMAGE,
                media_id=largest["file_id"],
                caption=caption,
                size=largest.get("file_size")
                if isinstance(largest.get("file_size"), int)
                else None,
            )
    for key, kind in _INBOUND_MEDIA:
        item = _file(message.get(key))
        if item is not None:
            return Media(
                media_kind=kind,
                media_id=item["file_id"],
                mime_type=item.get("mime_type") if isinstance(item.get("mime_type"), str) else None,
                caption=caption,
                filename=item.get("file_name") if isinstance(item.get("file_name"), str) else None,
                animated=bool(item.get("is_animated") or item.get("is_video")),
                size=item.get("file_size") if isinstance(item.get("file_size"), int) else None,
            )
    venue = message.get("venue")
    if isinstance(venue, dict) and isinstance(venue.get("location"), dict):
        point = venue["location"]
        return Location(
            latitude=point.get("latitude"),
            longitude=point.get("longitude"),
            name=venue.get("title") if isinstance(venue.get("title"), str) else None,
            address=venue.get("address") if isinstance(venue.get("address"), str) else None,
        )
    location = message.get("location")
    if isinstance(location, dict):
        return Location(latitude=location.get("latitude"), longitude=location.get("longitude"))
    contact = message.get("contact")
    if isinstance(contact, dict):
        parts = [contact.get("first_name"), contact.get("last_name")]
        phone = contact.get("phone_number")
        return Contacts(
            contacts=(
                ContactCard(
                    name=" ".join(p for p in parts if isinstance(p, str) and p) or "?",
                    phones=(phone,) if isinstance(phone, str) and phone else (),
                ),
            )
        )
    other = next((k for k in _OTHER_KINDS if k in message), None)
    return Unsupported(provider_type=other or "unknown", reason=caption)
