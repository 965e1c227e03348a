"""Bad input never crashes an adapter, and nothing personal is logged at INFO."""

import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from channels_helpers import (
    BOT,
    MATARO,
    NOW,
    SSL_CONTEXT,
    fixture_bytes,
    telegram_post,
    text_message,
    whatsapp_envelope,
    whatsapp_post,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicchat.channels.base import WebhookRequest
from civicchat.channels.telegram import TelegramChannel
from civicchat.channels.webchat import WebChatChannel, WebChatHub
from civicchat.channels.whatsapp import WhatsAppChannel
from civicchat.clock import ManualClock
from civicchat.exceptions import WebhookError
from civicchat.messages import OutboundMessage, Text

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
WHATSAPP_KEYS = [
    "from",
    "id",
    "timestamp",
    "type",
    "text",
    "image",
    "audio",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "system",
    "context",
    "errors",
    "unsupported",
]
TELEGRAM_KEYS = [
    "message_id",
    "date",
    "chat",
    "from",
    "text",
    "photo",
    "voice",
    "document",
    "venue",
    "location",
    "contact",
    "sticker",
    "reply_to_message",
    "caption",
]

WHATSAPP = WhatsAppChannel(
    [MATARO], client=httpx.AsyncClient(verify=SSL_CONTEXT), clock=ManualClock(NOW)
)
TELEGRAM = TelegramChannel(
    BOT, client=httpx.AsyncClient(verify=SSL_CONTEXT), clock=ManualClock(NOW)
)
WEBCHAT = WebChatChannel(WebChatHub(), clock=ManualClock(NOW))


def tolerant(channel: Any, request: WebhookRequest) -> None:
    status: int
    try:
        status = channel.handle_webhook(request).status_code
    except WebhookError as exc:
        status = exc.status_code
        assert status != 200
    assert status == 200 or 400 <= status < 500


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(WHATSAPP_KEYS), JSON, max_size=8))
def test_whatsapp_survives_any_message_shape(message: dict[str, Any]) -> None:
    tolerant(WHATSAPP, whatsapp_post(whatsapp_envelope([message], statuses=[message])))


INNER_KEYS = [
    "id",
    "body",
    "mime_type",
    "caption",
    "voice",
    "animated",
    "file_size",
    "filename",
    "url",
    "latitude",
    "longitude",
    "name",
    "address",
    "emoji",
    "message_id",
    "payload",
    "text",
    "type",
    "button_reply",
    "list_reply",
    "title",
    "description",
    "wa_id",
    "phones",
    "forwarded",
]
INNER = st.dictionaries(st.sampled_from(INNER_KEYS), JSON | st.text(max_size=5), max_size=6)
TYPES = [
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "system",
    "unsupported",
    "order",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(TYPES), INNER, INNER | st.lists(INNER, max_size=2), st.lists(INNER, max_size=2)
)
def test_whatsapp_survives_any_typed_content(
    kind: str, inner: dict[str, Any], deeper: Any, errors: list[dict[str, Any]]
) -> None:
    if "button_reply" in inner or "list_reply" in inner or kind == "interactive":
        inner = {**inner, "button_reply": deeper, "list_reply": deeper}
    message = {
        "from": "34600111222",
        "id": "wamid.f",
        "timestamp": "1774620000",
        "type": kind,
        kind: deeper if kind == "contacts" else inner,
        "context": inner,
        "errors": errors,
    }
    status = {
        "id": "wamid.s",
        "recipient_id": "1",
        "timestamp": "1",
        "status": "failed",
        "errors": errors,
    }
    tolerant(WHATSAPP, whatsapp_post(whatsapp_envelope([message], statuses=[status])))


@settings(max_examples=100, deadline=None)
@given(JSON)
def test_whatsapp_survives_any_json_body(body: Any) -> None:
    tolerant(WHATSAPP, whatsapp_post(json.dumps(body).encode()))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(TELEGRAM_KEYS), JSON, max_size=8), st.booleans())
def test_telegram_survives_any_message_shape(message: dict[str, Any], callback: bool) -> None:
    update: dict[str, Any] = {"update_id": 1}
    if callback:
        update["callback_query"] = {
            "id": "q",
            "from": {"id": 1},
            "message": message,
            "data": message.get("text"),
        }
    else:
        update["message"] = {"message_id": 1, "date": 1774620000, "chat": {"id": 5}, **message}
    tolerant(TELEGRAM, telegram_post(update))


PHOTO_SIZE = st.fixed_dictionaries(
    {"file_id": st.text(min_size=1, max_size=5)},
    optional={"width": JSON, "height": JSON, "file_size": JSON},
)


@settings(max_examples=100, deadline=None)
@given(st.lists(PHOTO_SIZE | JSON, max_size=4))
def test_telegram_survives_any_photo_sizes(sizes: list[Any]) -> None:
    message = {"message_id": 1, "date": 1774620000, "chat": {"id": 5}, "photo": sizes}
    tolerant(TELEGRAM, telegram_post({"update_id": 1, "message": message}))


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["visitor", "id", "text", "reply_id", "location", "language"]), JSON
    )
)
def test_webchat_survives_any_post(data: dict[str, Any]) -> None:
    if "visitor" not in data:
        data["visitor"] = "v_3f9a2c71b84e4d0f"
    body = json.dumps(data).encode()
    tolerant(WEBCHAT, WebhookRequest("POST", {"Content-Type": "application/json"}, {}, body))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=SSL_CONTEXT) as c:
        yield c


async def test_no_phone_number_token_or_text_in_info_logs(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    whatsapp = WhatsAppChannel([MATARO], client=client, clock=ManualClock(NOW))
    telegram = TelegramChannel(BOT, client=client, clock=ManualClock(NOW))
    whatsapp.handle_webhook(whatsapp_post(fixture_bytes("whatsapp_every_type.json")))
    whatsapp.handle_webhook(
        whatsapp_post(whatsapp_envelope([text_message("w1")], phone_number_id="999"))
    )
    telegram.handle_webhook(
        telegram_post(json.loads(fixture_bytes("telegram_updates.json"))["edited"])
    )
    message = OutboundMessage(
        channel="whatsapp",
        account="mataro",
        recipient_id="34600111222",
        content=Text(body="secret text"),
    )
    tg_message = message.model_copy(
        update={"channel": "telegram", "account": "mataro-bot", "recipient_id": "700000001"}
    )
    with respx.mock(assert_all_called=False) as mock:
        mock.post(url__startswith="https://graph.test").respond(
            500, json={"error": {"code": 131000}}
        )
        mock.post(url__startswith="https://tg.test").respond(
            200, json={"ok": True, "result": {"message_id": 1, "chat": {"id": 700000001}}}
        )
        with pytest.raises(Exception, match="131000"):
            await whatsapp.send(message, last_inbound_at=NOW - timedelta(hours=1))
        await telegram.send(tg_message, last_inbound_at=None)
    records = [
        r for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith("civicchat")
    ]
    assert records  # something was logged, and none of it is personal
    for record in records:
        text = record.getMessage()
        for secret in (
            "34600111222",
            "700000001",
            "secret text",
            "fanal",
            MATARO.access_token,
            BOT.bot_token,
        ):
            assert secret not in text, (record.name, text)
