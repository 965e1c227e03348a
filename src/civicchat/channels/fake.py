"""A fake channel for other packages' tests: records what is sent, fails when told to.

>>> import asyncio
>>> from civicchat.messages import OutboundMessage, Text
>>> fake = FakeChannel()
>>> message = OutboundMessage(channel="fake", account="test", recipient_id="c1",
...                           content=Text(body="Hola"))
>>> asyncio.run(fake.send(message, last_inbound_at=None))
'fake-1'
>>> fake.sent[0].content.body
'Hola'

Its webhook takes ``{"from": "...", "id": "...", "text": "..."}`` (``"reply_id"`` for a button),
signed with the header ``X-Fake-Secret`` when a ``secret`` is configured.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime

from civicchat.channels._http import load_json_object
from civicchat.channels.base import Capabilities, MediaDownload, WebhookRequest, WebhookResult
from civicchat.channels.degrade import degrade
from civicchat.clock import Clock, SystemClock
from civicchat.exceptions import (
    ConfigError,
    MediaExpiredError,
    MediaTooLargeError,
    PayloadError,
    SendError,
    SignatureError,
    UnsupportedContentError,
    WebhookError,
)
from civicchat.messages import (
    InboundContent,
    InboundMessage,
    InteractiveReply,
    OutboundMessage,
    Sender,
    Text,
)

__all__ = ["FakeChannel"]

_DEFAULT_CAPS = Capabilities(
    max_text_length=4096,
    buttons=True,
    max_buttons=3,
    lists=True,
    max_list_rows=10,
    locations=True,
    templates=True,
    location_requests=True,
    link_previews=True,
    mark_read=True,
)


class FakeChannel:
    """A channel that talks to nobody.

    ``sent`` lists every message accepted (with ``last_inbound_at`` in ``sent_windows``);
    :meth:`fail_next` makes the next sends raise a given :class:`SendError`; ``media`` maps
    media ids to ``(bytes, mime type)`` for :meth:`fetch_media`. With ``enforce_capabilities``
    (default) content beyond ``capabilities`` is refused as a real adapter would.
    """

    def __init__(
        self,
        name: str = "fake",
        *,
        account: str = "test",
        capabilities: Capabilities = _DEFAULT_CAPS,
        secret: str | None = None,
        clock: Clock | None = None,
        media: Mapping[str, tuple[bytes, str]] | None = None,
        enforce_capabilities: bool = True,
    ) -> None:
        self._name = name
        self.account = account
        self._capabilities = capabilities
        self._secret = secret
        self._clock = clock or SystemClock()
        self.media: dict[str, tuple[bytes, str]] = dict(media or {})
        self.enforce_capabilities = enforce_capabilities
        self.sent: list[OutboundMessage] = []
        self.sent_windows: list[datetime | None] = []
        self._failures: list[SendError] = []
        self._counter = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def fail_next(self, error: SendError, times: int = 1) -> None:
        """Make the next ``times`` sends raise ``error`` (nothing is recorded for them)."""
        self._failures.extend([error] * times)

    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        """Parse ``{"from", "id", "text" | "reply_id"}``; checks ``X-Fake-Secret`` if set."""
        if request.method != "POST":
            raise WebhookError("only POST", channel=self._name, status_code=405)
        if self._secret is not None:
            given = request.headers.get("x-fake-secret")
            if given is None:
                raise SignatureError("missing X-Fake-Secret", channel=self._name, status_code=401)
            if not hmac.compare_digest(given.encode(), self._secret.encode()):
                raise SignatureError("wrong X-Fake-Secret", channel=self._name, status_code=403)
        data = load_json_object(request.body, channel=self._name)
        sender, message_id = data.get("from"), data.get("id")
        if not isinstance(sender, str) or not isinstance(message_id, str):
            raise PayloadError("from and id must be strings", channel=self._name)
        content: InboundContent
        if isinstance(data.get("reply_id"), str):
            content = InteractiveReply(reply_id=data["reply_id"], title=str(data.get("text", "")))
        elif isinstance(data.get("text"), str):
            content = Text(body=data["text"])
        else:
            raise PayloadError("text or reply_id is needed", channel=self._name)
        event = InboundMessage(
            channel=self._name,
            account=self.account,
            provider_message_id=message_id,
            sender=Sender(id=sender),
            timestamp=self._clock.now(),
            content=content,
        )
        return WebhookResult(body=json.dumps({"ok": True}).encode(), events=(event,))

    async def send(self, message: OutboundMessage, *, last_inbound_at: datetime | None) -> str:
        """Record ``message`` and return ``"<name>-<n>"``, or raise the next queued failure."""
        if message.account != self.account:
            raise ConfigError(
                f"this fake channel serves account {self.account!r}, not {message.account!r}"
            )
        if self._failures:
            raise self._failures.pop(0)
        if self.enforce_capabilities:
            self._check(message)
        self._counter += 1
        self.sent.append(message)
        self.sent_windows.append(last_inbound_at)
        return f"{self._name}-{self._counter}"

    def _check(self, message: OutboundMessage) -> None:
        try:
            rendered = degrade(message.content, self._capabilities)
        except UnsupportedContentError:
            rendered = []
        if rendered != [message.content]:
            raise UnsupportedContentError(
                f"{self._name} cannot carry this {message.content.kind} as it is; degrade it first",
                channel=self._name,
                account=message.account,
            )

    async def fetch_media(self, account: str, media_id: str, *, max_bytes: int) -> MediaDownload:
        """Serve ``media[media_id]`` in 3-byte chunks (so streaming and the cap are exercised)."""
        if media_id not in self.media:
            raise MediaExpiredError(f"no media {media_id!r}", channel=self._name, account=account)
        data, mime = self.media[media_id]
        if len(data) > max_bytes:
            raise MediaTooLargeError(
                f"media is {len(data)} bytes, over {max_bytes}", channel=self._name, account=account
            )

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 3):
                yield data[start : start + 3]

        return MediaDownload(mime_type=mime, chunks=chunks(), max_bytes=max_bytes, size=len(data))
