"""Messaging channels: WhatsApp Cloud API, Telegram, the web chat, and a fake for tests.

The contract is in :mod:`civicchat.channels.base`; the shared fallback for rich content in
:mod:`civicchat.channels.degrade`; per-account rate limits in :mod:`civicchat.channels.ratelimit`.
"""

from __future__ import annotations

from civicchat.channels.base import (
    Capabilities,
    Channel,
    Event,
    Headers,
    MediaDownload,
    WebhookRequest,
    WebhookResult,
)
from civicchat.channels.degrade import degrade, match_numbered_reply, split_text
from civicchat.channels.fake import FakeChannel
from civicchat.channels.ratelimit import RateLimiter, telegram_limiter, whatsapp_limiter
from civicchat.channels.telegram import TelegramAccount, TelegramChannel
from civicchat.channels.webchat import WebChatChannel, WebChatHub
from civicchat.channels.whatsapp import WhatsAppAccount, WhatsAppChannel

__all__ = [
    "Capabilities",
    "Channel",
    "Event",
    "FakeChannel",
    "Headers",
    "MediaDownload",
    "RateLimiter",
    "TelegramAccount",
    "TelegramChannel",
    "WebChatChannel",
    "WebChatHub",
    "WebhookRequest",
    "WebhookResult",
    "WhatsAppAccount",
    "WhatsAppChannel",
    "degrade",
    "match_numbered_reply",
    "split_text",
    "telegram_limiter",
    "whatsapp_limiter",
]
