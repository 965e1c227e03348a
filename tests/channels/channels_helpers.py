"""Shared helpers for the channel tests (imported by the test modules of this folder)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from civicchat.channels.base import WebhookRequest
from civicchat.channels.telegram import TelegramAccount
from civicchat.channels.whatsapp import WhatsAppAccount, sign

FIXTURES = Path(__file__).parent / "fixtures"

# Loading the CA bundle takes ~0.15 s per client: share one context across the tests.
SSL_CONTEXT = httpx.create_ssl_context()

# 1774620000 is 2026-03-27 14:00 UTC, the time of the first fixture message.
NOW = datetime(2026, 3, 27, 14, 5, tzinfo=UTC)

MATARO = WhatsAppAccount(
    name="mataro",
    phone_number_id="100000000000001",
    access_token="EAAG-mataro-token",
    app_secret="mataro-app-secret",
    verify_token="mataro-verify",
    api_base_url="https://graph.test",
    graph_version="v21.0",
)
# A second number of the same Meta app (same app secret), and one of another app.
MATARO_010 = WhatsAppAccount(
    name="mataro-010",
    phone_number_id="100000000000002",
    access_token="EAAG-010-token",
    app_secret="mataro-app-secret",
    verify_token="mataro-010-verify",
    api_base_url="https://graph.test",
)
OTHER_APP = WhatsAppAccount(
    name="argentona",
    phone_number_id="100000000000003",
    access_token="EAAG-other-token",
    app_secret="other-app-secret",
    verify_token="other-verify",
    api_base_url="https://graph.test",
)

BOT = TelegramAccount(
    name="mataro-bot",
    bot_token="123456:ABC-def_ghi",
    secret_token="s3cr3t_token-Mataro",
    api_base_url="https://tg.test",
)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return json.loads(fixture_bytes(name))


def whatsapp_post(
    body: bytes | dict[str, Any], secret: str = "mataro-app-secret"
) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest(
        method="POST",
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(raw, secret)},
        body=raw,
    )


def telegram_post(update: dict[str, Any] | bytes, secret: str = BOT.secret_token) -> WebhookRequest:
    raw = update if isinstance(update, bytes) else json.dumps(update).encode()
    return WebhookRequest(
        method="POST",
        headers={"X-Telegram-Bot-Api-Secret-Token": secret, "Content-Type": "application/json"},
        body=raw,
    )


def whatsapp_envelope(
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    phone_number_id: str = MATARO.phone_number_id,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "34937000010", "phone_number_id": phone_number_id},
    }
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "300000000000001", "changes": [{"field": "messages", "value": value}]}],
    }


def text_message(
    message_id: str, body: str = "hola", sender: str = "34600111222"
) -> dict[str, Any]:
    return {
        "from": sender,
        "id": message_id,
        "timestamp": "1774620000",
        "type": "text",
        "text": {"body": body},
    }
