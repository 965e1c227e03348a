"""WhatsApp Cloud API (Meta Graph API) channel, serving one or several business numbers.

One :class:`WhatsAppChannel` holds every :class:`WhatsAppAccount` of the city. A webhook POST is
verified with the app secret of the accounts (one Meta app secret often serves several numbers),
and each change is told apart by ``metadata.phone_number_id``: its events carry
``account=<WhatsAppAccount.name>``. Sending picks the account by ``OutboundMessage.account``.

>>> import httpx
>>> account = WhatsAppAccount(name="mataro", phone_number_id="1122", access_token="t",
...                           app_secret="s", verify_token="v")
>>> channel = WhatsAppChannel([account], client=httpx.AsyncClient())
>>> channel.capabilities.max_buttons
3
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from civicchat.channels._http import (
    load_json_object,
    retry_after_header,
    sniff_mime,
    stream_response,
    transport_error,
    with_first_chunk,
)
from civicchat.channels._whatsapp_parse import CHANNEL, parse_payload
from civicchat.channels.base import Capabilities, MediaDownload, WebhookRequest, WebhookResult
from civicchat.channels.ratelimit import RateLimiter, whatsapp_limiter
from civicchat.clock import Clock, SystemClock
from civicchat.exceptions import (
    AuthenticationError,
    BlockedError,
    ConfigError,
    MediaError,
    MediaExpiredError,
    MediaTooLargeError,
    SendError,
    SignatureError,
    TemplateError,
    ThrottledError,
    TransientError,
    UndeliverableError,
    UnsupportedContentError,
    WebhookError,
    WindowClosedError,
)
from civicchat.messages import (
    Buttons,
    ListMenu,
    Location,
    LocationRequest,
    MarkRead,
    Media,
    MediaKind,
    OutboundContent,
    OutboundMessage,
    Template,
    Text,
)

__all__ = [
    "WHATSAPP_CAPABILITIES",
    "WhatsAppAccount",
    "WhatsAppChannel",
    "error_from_code",
    "sign",
]

logger = logging.getLogger("civicchat.channels")

WINDOW = timedelta(hours=24)

WHATSAPP_CAPABILITIES = Capabilities(
    max_text_length=4096,
    buttons=True,
    max_buttons=3,
    max_button_title=20,
    max_button_body=1024,
    lists=True,
    max_list_rows=10,
    locations=True,
    templates=True,
    location_requests=True,
    link_previews=True,
    mark_read=True,
    button_media=True,
    max_caption_length=1024,
)

_TRANSIENT = {1, 2, 131000, 131016}
_THROTTLED = {4, 80007, 130429, 131056}
_AUTH = {0, 190}
_BLOCKED = {368, 130403, 131031}
# Seconds to wait when Meta throttles without a Retry-After header: 131056 is the per-recipient
# pair limit (about one message every 6 seconds), the others are account-wide.
_DEFAULT_RETRY_AFTER = {4: 60.0, 80007: 60.0, 130429: 1.0, 131056: 6.0}


@dataclass(frozen=True, slots=True)
class WhatsAppAccount:
    """One business phone number and its credentials.

    ``name`` is the account name found in events and outbound messages. ``api_base_url`` and
    ``graph_version`` can point at a proxy or a local fake server.
    """

    name: str
    phone_number_id: str
    access_token: str = field(repr=False)
    app_secret: str = field(repr=False)
    verify_token: str = field(repr=False)
    api_base_url: str = "https://graph.facebook.com"
    graph_version: str = "v21.0"
    messages_per_second: float = 80

    def __post_init__(self) -> None:
        for attr in ("name", "phone_number_id", "access_token", "app_secret", "verify_token"):
            if not getattr(self, attr):
                raise ConfigError(f"WhatsAppAccount.{attr} is empty: set it in the configuration")
        if not self.phone_number_id.isdigit():
            raise ConfigError(
                f"WhatsAppAccount {self.name!r}: phone_number_id must be Meta's numeric id "
                "(WhatsApp Manager > API setup), not the phone number itself"
            )
        if not self.api_base_url.startswith(("https://", "http://")):
            raise ConfigError(f"WhatsAppAccount {self.name!r}: api_base_url must be an http(s) URL")
        if not 0 < self.messages_per_second <= 1000:
            raise ConfigError(
                f"WhatsAppAccount {self.name!r}: messages_per_second must be 1-1000 (80 by default)"
            )

    def url(self, path: str) -> str:
        """The Graph API URL of ``path`` for this account's version and base URL."""
        return f"{self.api_base_url.rstrip('/')}/{self.graph_version}/{path}"

    @property
    def auth_header(self) -> dict[str, str]:
        """The ``Authorization`` header of this account's calls."""
        return {"Authorization": f"Bearer {self.access_token}"}


def error_from_code(
    code: int | None,
    message: str,
    *,
    status_code: int | None,
    retry_after: float | None = None,
    account: str = "",
) -> SendError:
    """The typed error for Meta error ``code`` (decided on the code, then on the HTTP status)."""
    kwargs: dict[str, Any] = {
        "channel": CHANNEL,
        "account": account,
        "status_code": status_code,
        "provider_code": code,
    }
    if code in _TRANSIENT:
        return TransientError(message, retry_after=retry_after, **kwargs)
    if code in _THROTTLED:
        wait = retry_after if retry_after is not None else _DEFAULT_RETRY_AFTER[code]
        return ThrottledError(message, retry_after=wait, **kwargs)
    if code in _AUTH:
        return AuthenticationError(message, **kwargs)
    if code == 131047:
        return WindowClosedError(message, **kwargs)
    if code == 131026:
        return UndeliverableError(message, **kwargs)
    if code == 131051:
        return UnsupportedContentError(message, **kwargs)
    if code in _BLOCKED:
        return BlockedError(message, **kwargs)
    if code is not None and 132000 <= code <= 132016:
        return TemplateError(message, **kwargs)
    if status_code == 429:
        return ThrottledError(message, retry_after=retry_after or 60.0, **kwargs)
    if status_code is not None and status_code >= 500:
        return TransientError(message, retry_after=retry_after, **kwargs)
    return SendError(message, **kwargs)


class WhatsAppChannel:
    """The WhatsApp Cloud API adapter for one or several business numbers.

    ``client`` is the injected ``httpx.AsyncClient`` (its timeouts apply); ``clock`` decides the
    24-hour window.
    """

    def __init__(
        self,
        accounts: Iterable[WhatsAppAccount],
        *,
        client: httpx.AsyncClient,
        clock: Clock | None = None,
        capabilities: Capabilities = WHATSAPP_CAPABILITIES,
    ) -> None:
        self._accounts = {a.name: a for a in accounts}
        if not self._accounts:
            raise ConfigError("WhatsAppChannel needs at least one WhatsAppAccount")
        self._by_number: dict[str, WhatsAppAccount] = {}
        for account in self._accounts.values():
            if account.phone_number_id in self._by_number:
                raise ConfigError(
                    f"two WhatsApp accounts use phone_number_id {account.phone_number_id}"
                )
            self._by_number[account.phone_number_id] = account
        self._secrets = sorted({a.app_secret.encode() for a in self._accounts.values()})
        self._client = client
        self._clock = clock or SystemClock()
        self._capabilities = capabilities
        self._targets: dict[str, tuple[httpx.URL, dict[str, str]]] = {}
        self.limiters: Mapping[str, RateLimiter] = {
            name: whatsapp_limiter(a.messages_per_second) for name, a in self._accounts.items()
        }
        """One rate limiter per account name, at the account's ``messages_per_second``."""

    @property
    def name(self) -> str:
        return CHANNEL

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def accounts(self) -> Mapping[str, WhatsAppAccount]:
        """The accounts by name."""
        return dict(self._accounts)

    # ------------------------------------------------------------------ webhook (pure)

    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        """Answer Meta's verification handshake (GET) or verify and parse a notification (POST)."""
        if request.method == "GET":
            return self._verify_subscription(request)
        if request.method != "POST":
            raise WebhookError("only GET and POST", channel=CHANNEL, status_code=405)
        secret = self._check_signature(request)
        data = load_json_object(request.body, channel=CHANNEL)

        def account_for(number_id: str) -> str | None:
            account = self._by_number.get(number_id)
            # A valid signature from one app must not speak for another app's number.
            if account is None or account.app_secret.encode() != secret:
                return None
            return account.name

        events = parse_payload(data, account_for)
        logger.debug("whatsapp webhook: %d events", len(events))
        return WebhookResult(status_code=200, body=b"OK", events=events)

    def _verify_subscription(self, request: WebhookRequest) -> WebhookResult:
        mode = request.query.get("hub.mode")
        token = request.query.get("hub.verify_token", "")
        challenge = request.query.get("hub.challenge")
        if mode != "subscribe" or challenge is None:
            raise WebhookError("not a subscription handshake", channel=CHANNEL, status_code=400)
        matched = False
        for account in self._accounts.values():
            # Check every token, without stopping early, so timing does not tell which matched.
            matched |= hmac.compare_digest(token.encode(), account.verify_token.encode())
        if not matched:
            raise SignatureError("wrong hub.verify_token", channel=CHANNEL, status_code=403)
        if not challenge.isascii() or not challenge.isalnum() or len(challenge) > 128:
            raise WebhookError("unexpected hub.challenge", channel=CHANNEL, status_code=400)
        return WebhookResult(status_code=200, body=challenge.encode())

    def _check_signature(self, request: WebhookRequest) -> bytes:
        header = request.headers.get("x-hub-signature-256")
        if not header:
            raise SignatureError(
                "missing X-Hub-Signature-256 header", channel=CHANNEL, status_code=401
            )
        prefix, _, given = header.partition("=")
        if prefix != "sha256" or not given:
            raise SignatureError("malformed X-Hub-Signature-256", channel=CHANNEL, status_code=403)
        given_bytes = given.strip().lower().encode()
        found: bytes | None = None
        for secret in self._secrets:
            expected = hmac.new(secret, request.body, hashlib.sha256).hexdigest().encode()
            if hmac.compare_digest(expected, given_bytes):
                found = secret
        if found is None:
            raise SignatureError("wrong X-Hub-Signature-256", channel=CHANNEL, status_code=403)
        return found

    # ------------------------------------------------------------------ sending

    def _account(self, name: str) -> WhatsAppAccount:
        try:
            return self._accounts[name]
        except KeyError:
            raise ConfigError(
                f"no WhatsApp account named {name!r}; configured: {sorted(self._accounts)}"
            ) from None

    async def send(self, message: OutboundMessage, *, last_inbound_at: datetime | None) -> str:
        """Send one message through the account named by ``message.account``.

        Free-form content (anything but a template or a read receipt) is refused with
        :class:`WindowClosedError` before any HTTP call when the citizen's last message is 24
        hours old or more, or when ``last_inbound_at`` is None (they never wrote).
        """
        account = self._account(message.account)
        content = message.content
        if not isinstance(content, Template | MarkRead):
            self._check_window(last_inbound_at, account)
        payload = self.build_payload(message)
        url, auth = self._send_target(account)
        try:
            response = await self._client.post(url, json=payload, headers=auth)
        except httpx.HTTPError as exc:
            raise transport_error(exc, channel=CHANNEL, account=account.name) from exc
        data = self._answer(response, account)
        if isinstance(content, MarkRead):
            return content.message_id
        messages = data.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            message_id = messages[0].get("id")
            if isinstance(message_id, str) and message_id:
                logger.info("whatsapp %s sent on %s", content.kind, account.name)
                return message_id
        raise TransientError(
            "WhatsApp accepted the send without a message id",
            channel=CHANNEL,
            account=account.name,
            status_code=response.status_code,
        )

    def _send_target(self, account: WhatsAppAccount) -> tuple[httpx.URL, dict[str, str]]:
        """The messages URL (parsed once) and the Authorization header of ``account``."""
        target = self._targets.get(account.name)
        if target is None:
            url = httpx.URL(account.url(f"{account.phone_number_id}/messages"))
            target = self._targets[account.name] = (url, account.auth_header)
        return target

    def _check_window(self, last_inbound_at: datetime | None, account: WhatsAppAccount) -> None:
        if last_inbound_at is not None and last_inbound_at.tzinfo is None:
            raise ValueError("last_inbound_at must be zone-aware")
        if last_inbound_at is None or self._clock.now() - last_inbound_at >= WINDOW:
            raise WindowClosedError(
                "outside the 24-hour window: send the account's template",
                channel=CHANNEL,
                account=account.name,
                provider_code=131047,
            )

    def _answer(self, response: httpx.Response, account: WhatsAppAccount) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success and isinstance(data, dict) and "error" not in data:
            return data
        error = data.get("error") if isinstance(data, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        text = error.get("message") if isinstance(error, dict) else None
        error_exc = error_from_code(
            code if isinstance(code, int) else None,
            f"WhatsApp error {code}: {text or response.reason_phrase}",
            status_code=response.status_code,
            retry_after=retry_after_header(response),
            account=account.name,
        )
        logger.warning(
            "whatsapp send failed on %s: HTTP %s code %s (%s)",
            account.name,
            response.status_code,
            code,
            type(error_exc).__name__,
        )
        raise error_exc

    def build_payload(self, message: OutboundMessage) -> dict[str, Any]:
        """The Graph API JSON for ``message`` (raises :class:`UnsupportedContentError`)."""
        content = message.content
        if isinstance(content, MarkRead):
            return {
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": content.message_id,
            }
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.recipient_id,
        }
        payload.update(self._content_payload(content, message.account))
        if message.reply_to:
            payload["context"] = {"message_id": message.reply_to}
        return payload

    def _content_payload(self, content: OutboundContent, account: str) -> dict[str, Any]:
        caps = self._capabilities

        def refuse(why: str) -> UnsupportedContentError:
            return UnsupportedContentError(
                f"{why}; run civicchat.channels.degrade first", channel=CHANNEL, account=account
            )

        if isinstance(content, Text):
            if not 1 <= len(content.body) <= caps.max_text_length:
                raise refuse(f"text must have 1-{caps.max_text_length} characters")
            preview = content.preview_url or "http://" in content.body or "https://" in content.body
            return {"type": "text", "text": {"body": content.body, "preview_url": preview}}
        if isinstance(content, Media):
            kind = "audio" if content.media_kind is MediaKind.VOICE else content.media_kind.value
            media: dict[str, Any] = (
                {"link": content.link} if content.link else {"id": content.media_id}
            )
            if content.caption and kind in ("image", "video", "document"):
                media["caption"] = content.caption
            if content.filename and kind == "document":
                media["filename"] = content.filename
            return {"type": kind, kind: media}
        if isinstance(content, Location):
            location: dict[str, Any] = {
                "latitude": content.latitude,
                "longitude": content.longitude,
            }
            if content.name:
                location["name"] = content.name
            if content.address:
                location["address"] = content.address
            return {"type": "location", "location": location}
        if isinstance(content, Buttons):
            if len(content.buttons) > caps.max_buttons:
                raise refuse(f"at most {caps.max_buttons} reply buttons")
            if any(len(b.title) > (caps.max_button_title or 20) for b in content.buttons):
                raise refuse("button titles have at most 20 characters")
            if len(content.body) > (caps.max_button_body or 1024):
                raise refuse("a message with buttons has at most 1,024 characters")
            action: dict[str, Any] = {
                "buttons": [
                    {"type": "reply", "reply": {"id": b.id, "title": b.title}}
                    for b in content.buttons
                ]
            }
            interactive = _interactive(
                "button", content.body, action, content.header, content.footer
            )
            if content.media is not None:
                if not caps.button_media:
                    raise refuse("this account's capabilities have no media header on buttons")
                interactive["interactive"]["header"] = _media_header(content.media)
            return interactive
        if isinstance(content, ListMenu):
            if len(content.rows) > caps.max_list_rows:
                raise refuse(f"at most {caps.max_list_rows} list rows")
            sections = []
            for index, section in enumerate(content.sections, 1):
                rows = []
                for row in section.rows:
                    item = {"id": row.id, "title": row.title[:24]}
                    if row.description:
                        item["description"] = row.description[:72]
                    rows.append(item)
                entry: dict[str, Any] = {"rows": rows}
                if section.title or len(content.sections) > 1:
                    entry["title"] = (section.title or str(index))[:24]
                sections.append(entry)
            menu = {"button": content.button[:20], "sections": sections}
            return _interactive("list", content.body, menu, content.header, content.footer)
        if isinstance(content, LocationRequest):
            return _interactive(
                "location_request_message", content.body, {"name": "send_location"}, None, None
            )
        if isinstance(content, Template):
            template: dict[str, Any] = {
                "name": content.name,
                "language": {"code": content.language},
            }
            if content.body_parameters:
                template["components"] = [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": p.text} for p in content.body_parameters
                        ],
                    }
                ]
            return {"type": "template", "template": template}
        raise refuse(f"WhatsApp cannot send {content.kind}")

    # ------------------------------------------------------------------ media

    async def fetch_media(self, account: str, media_id: str, *, max_bytes: int) -> MediaDownload:
        """Download inbound media in Meta's two steps, asking for a fresh URL once if expired."""
        acct = self._account(account)
        auth = {"Authorization": f"Bearer {acct.access_token}"}
        for attempt in range(2):
            info = await self._media_info(acct, media_id, auth)
            size = info.get("file_size")
            if isinstance(size, int) and size > max_bytes:
                raise MediaTooLargeError(
                    f"media is {size} bytes, over the cap of {max_bytes}",
                    channel=CHANNEL,
                    account=acct.name,
                )
            url = info.get("url")
            if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                raise MediaError(
                    "media info without a download url", channel=CHANNEL, account=acct.name
                )
            try:
                response, chunks = await stream_response(
                    self._client, self._client.build_request("GET", url, headers=auth)
                )
            except httpx.HTTPError as exc:
                raise MediaError(
                    f"media download failed: {type(exc).__name__}", channel=CHANNEL
                ) from exc
            if response.status_code in (404, 410):
                await response.aclose()
                if attempt == 0:
                    logger.info("whatsapp media url expired on %s, asking for a new one", acct.name)
                    continue
                raise MediaExpiredError(
                    "media url expired twice", channel=CHANNEL, account=acct.name
                )
            if not response.is_success:
                await response.aclose()
                raise MediaError(
                    f"media download answered HTTP {response.status_code}",
                    channel=CHANNEL,
                    account=acct.name,
                )
            length = response.headers.get("content-length")
            if length and length.isdigit() and int(length) > max_bytes:
                await response.aclose()
                raise MediaTooLargeError(
                    f"media is {length} bytes, over the cap of {max_bytes}",
                    channel=CHANNEL,
                    account=acct.name,
                )
            head, stream = await with_first_chunk(chunks)
            declared = info.get("mime_type") if isinstance(info.get("mime_type"), str) else None
            mime = sniff_mime(head) or declared or response.headers.get("content-type", "")
            return MediaDownload(
                mime_type=mime.split(";")[0].strip() or "application/octet-stream",
                chunks=stream,
                max_bytes=max_bytes,
                size=size if isinstance(size, int) else None,
                sha256=info.get("sha256") if isinstance(info.get("sha256"), str) else None,
            )
        raise MediaExpiredError(
            "media url expired", channel=CHANNEL, account=acct.name
        )  # pragma: no cover

    async def _media_info(
        self, account: WhatsAppAccount, media_id: str, auth: Mapping[str, str]
    ) -> dict[str, Any]:
        if not media_id.isdigit():
            raise MediaError(
                "a WhatsApp media id is numeric", channel=CHANNEL, account=account.name
            )
        try:
            response = await self._client.get(
                account.url(media_id),
                params={"phone_number_id": account.phone_number_id},
                headers=dict(auth),
            )
        except httpx.HTTPError as exc:
            raise MediaError(f"media info failed: {type(exc).__name__}", channel=CHANNEL) from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success and isinstance(data, dict):
            return data
        error = data.get("error") if isinstance(data, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if response.status_code in (400, 404) and code in (100, None):
            raise MediaExpiredError(
                "media id is no longer valid (webhook media stays for 7 days)",
                channel=CHANNEL,
                account=account.name,
            )
        raise MediaError(
            f"media info answered HTTP {response.status_code} code {code}",
            channel=CHANNEL,
            account=account.name,
        )


def _interactive(
    kind: str, body: str, action: dict[str, Any], header: str | None, footer: str | None
) -> dict[str, Any]:
    interactive: dict[str, Any] = {"type": kind, "body": {"text": body}, "action": action}
    # Meta refuses headers and footers over 60 characters; they are decoration, so cut them.
    if header:
        interactive["header"] = {"type": "text", "text": header[:60]}
    if footer:
        interactive["footer"] = {"text": footer[:60]}
    return {"type": "interactive", "interactive": interactive}


def _media_header(media: Media) -> dict[str, Any]:
    """The ``interactive.header`` of an image, video or document (a link, else a media id)."""
    kind = media.media_kind.value  # image, video or document: Buttons validates it
    source: dict[str, Any] = {"link": media.link} if media.link else {"id": media.media_id}
    if media.filename and media.media_kind is MediaKind.DOCUMENT:
        source["filename"] = media.filename
    return {"type": kind, kind: source}


def sign(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta would send for ``body`` (for tests and tools)."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
