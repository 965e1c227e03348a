"""The channel contract: every adapter (WhatsApp, Telegram, web chat, fake) runs these tests.

A new adapter adds one harness factory to ``HARNESSES`` and must pass everything here.
"""

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from channels_helpers import (
    BOT,
    MATARO,
    NOW,
    SSL_CONTEXT,
    telegram_post,
    text_message,
    whatsapp_envelope,
    whatsapp_post,
)

from civicchat.channels.base import Capabilities, Channel, WebhookRequest
from civicchat.channels.degrade import degrade
from civicchat.channels.fake import FakeChannel
from civicchat.channels.telegram import TelegramChannel
from civicchat.channels.webchat import WebChatChannel, WebChatHub
from civicchat.channels.whatsapp import WhatsAppChannel
from civicchat.clock import ManualClock
from civicchat.exceptions import (
    ConfigError,
    MediaError,
    MediaTooLargeError,
    PayloadError,
    SignatureError,
    WebhookError,
)
from civicchat.messages import (
    Buttons,
    InboundMessage,
    ListMenu,
    ListRow,
    ListSection,
    Location,
    LocationRequest,
    MarkRead,
    Media,
    MediaKind,
    OutboundContent,
    OutboundMessage,
    ReplyButton,
    Template,
    Text,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 3000


@dataclass
class Harness:
    channel: Channel
    account: str
    recipient: str
    text_request: Callable[[str], WebhookRequest]
    unsigned: Callable[[WebhookRequest], WebhookRequest] | None
    malformed: WebhookRequest
    media_id: str | None  # a media id that fetch_media serves as PNG, None if no inbound media


def strip(*names: str) -> Callable[[WebhookRequest], WebhookRequest]:
    def unsigned(request: WebhookRequest) -> WebhookRequest:
        headers = {k: v for k, v in request.headers.items() if k not in names}
        return WebhookRequest(
            method=request.method, headers=headers, query=request.query, body=request.body
        )

    return unsigned


def whatsapp_harness(client: httpx.AsyncClient) -> Harness:
    def request(text: str) -> WebhookRequest:
        return whatsapp_post(whatsapp_envelope([text_message("wamid.contract", text)]))

    return Harness(
        channel=WhatsAppChannel([MATARO], client=client, clock=ManualClock(NOW)),
        account="mataro",
        recipient="34600111222",
        text_request=request,
        unsigned=strip("x-hub-signature-256"),
        malformed=whatsapp_post(b"{oops"),
        media_id="900000000000001",
    )


def telegram_harness(client: httpx.AsyncClient) -> Harness:
    def request(text: str) -> WebhookRequest:
        update = {
            "update_id": 1,
            "message": {
                "message_id": 7,
                "date": 1774620000,
                "chat": {"id": 700000001, "type": "private"},
                "from": {"id": 700000001, "is_bot": False, "first_name": "Marta"},
                "text": text,
            },
        }
        return telegram_post(update)

    return Harness(
        channel=TelegramChannel(BOT, client=client, clock=ManualClock(NOW)),
        account="mataro-bot",
        recipient="700000001",
        text_request=request,
        unsigned=strip("x-telegram-bot-api-secret-token"),
        malformed=telegram_post(b"{oops"),
        media_id="AgACAgQAAxkBAAMq",
    )


def webchat_harness(client: httpx.AsyncClient) -> Harness:
    def request(text: str) -> WebhookRequest:
        body = json.dumps({"visitor": "v_3f9a2c71b84e4d0f", "id": "c1", "text": text}).encode()
        return WebhookRequest(
            method="POST", headers={"Content-Type": "application/json"}, body=body
        )

    return Harness(
        channel=WebChatChannel(WebChatHub(), account="web", clock=ManualClock(NOW)),
        account="web",
        recipient="v_3f9a2c71b84e4d0f",
        text_request=request,
        unsigned=None,  # the visitor id is the credential; the service checks its cookie
        malformed=WebhookRequest(
            method="POST", headers={"Content-Type": "application/json"}, body=b"{oops"
        ),
        media_id=None,
    )


def fake_harness(client: httpx.AsyncClient) -> Harness:
    def request(text: str) -> WebhookRequest:
        body = json.dumps({"from": "c1", "id": "f1", "text": text}).encode()
        return WebhookRequest(method="POST", headers={"X-Fake-Secret": "s"}, body=body)

    return Harness(
        channel=FakeChannel(secret="s", clock=ManualClock(NOW), media={"m1": (PNG, "image/png")}),
        account="test",
        recipient="c1",
        text_request=request,
        unsigned=strip("x-fake-secret"),
        malformed=WebhookRequest(method="POST", headers={"X-Fake-Secret": "s"}, body=b"{oops"),
        media_id="m1",
    )


def provider(request: httpx.Request) -> httpx.Response:
    """A tiny stand-in for Meta's and Telegram's servers."""
    url = str(request.url)
    if request.url.host == "graph.test":
        if url.endswith("/messages"):
            body = json.loads(request.content)
            if body.get("status") == "read":
                return httpx.Response(200, json={"success": True})
            return httpx.Response(200, json={"messages": [{"id": "wamid.out"}]})
        return httpx.Response(
            200,
            json={
                "url": "https://cdn.test/m",
                "mime_type": "image/png",
                "file_size": len(PNG),
                "id": "1",
            },
        )
    if request.url.host == "cdn.test":
        return httpx.Response(200, content=PNG)
    if request.url.host == "tg.test":
        if url.endswith("/getFile"):
            return httpx.Response(
                200,
                json={
                    "ok": True,
                    "result": {"file_id": "x", "file_size": len(PNG), "file_path": "photos/f.png"},
                },
            )
        if "/file/bot" in url:
            return httpx.Response(200, content=PNG)
        return httpx.Response(
            200, json={"ok": True, "result": {"message_id": 5, "chat": {"id": 700000001}}}
        )
    return httpx.Response(404)


HARNESSES = [whatsapp_harness, telegram_harness, webchat_harness, fake_harness]


@pytest.fixture(params=HARNESSES, ids=lambda f: f.__name__)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(provider), verify=SSL_CONTEXT
    ) as client:
        yield request.param(client)


def test_is_a_channel(harness: Harness) -> None:
    assert isinstance(harness.channel, Channel)
    assert isinstance(harness.channel.capabilities, Capabilities)
    assert harness.channel.name


def test_a_location_request_it_cannot_ask_natively_gets_words_in_ca_and_es(
    harness: Harness,
) -> None:
    caps = harness.channel.capabilities
    if caps.location_requests:
        assert degrade(LocationRequest(body="?"), caps, "ca") == [LocationRequest(body="?")]
        return
    # The channel's own hint, when it gives one, speaks both languages of the service.
    if caps.share_location_hint:
        assert {"ca", "es"} <= set(caps.share_location_hint)
    texts = {
        lang: [
            p.body for p in degrade(LocationRequest(body="?"), caps, lang) if isinstance(p, Text)
        ]
        for lang in ("ca", "es")
    }
    assert texts["ca"] != texts["es"]
    assert all("📎" not in body for bodies in texts.values() for body in bodies)


def test_text_webhook_gives_one_typed_message(harness: Harness) -> None:
    result = harness.channel.handle_webhook(harness.text_request("horari bus"))
    assert result.status_code == 200
    (event,) = result.events
    assert isinstance(event, InboundMessage)
    assert (event.channel, event.account) == (harness.channel.name, harness.account)
    assert event.content == Text(body="horari bus")
    assert event.timestamp.tzinfo is not None
    assert event.provider_message_id


def test_redelivery_gives_the_same_provider_id(harness: Harness) -> None:
    first = harness.channel.handle_webhook(harness.text_request("hola")).events
    second = harness.channel.handle_webhook(harness.text_request("hola")).events
    assert [e.provider_message_id for e in first] == [e.provider_message_id for e in second]


def test_missing_credentials_are_refused(harness: Harness) -> None:
    if harness.unsigned is None:
        assert harness.channel.name == "webchat"
        return
    with pytest.raises(SignatureError) as info:
        harness.channel.handle_webhook(harness.unsigned(harness.text_request("hola")))
    assert info.value.status_code in (401, 403)


def test_malformed_body_is_400(harness: Harness) -> None:
    with pytest.raises(PayloadError) as info:
        harness.channel.handle_webhook(harness.malformed)
    assert info.value.status_code == 400


def test_unknown_method_is_refused(harness: Harness) -> None:
    with pytest.raises(WebhookError) as info:
        harness.channel.handle_webhook(WebhookRequest(method="DELETE"))
    assert info.value.status_code == 405


def out(harness: Harness, content: OutboundContent, account: str | None = None) -> OutboundMessage:
    return OutboundMessage(
        channel=harness.channel.name,
        account=account or harness.account,
        recipient_id=harness.recipient,
        content=content,
    )


async def test_send_text_returns_a_provider_id(harness: Harness) -> None:
    message_id = await harness.channel.send(
        out(harness, Text(body="Bon dia")), last_inbound_at=NOW - timedelta(minutes=5)
    )
    assert isinstance(message_id, str)
    assert message_id


async def test_send_to_an_account_it_does_not_serve_is_a_config_error(harness: Harness) -> None:
    with pytest.raises(ConfigError):
        await harness.channel.send(
            out(harness, Text(body="x"), account="nobody"), last_inbound_at=NOW
        )


RICH: list[OutboundContent] = [
    Text(body="Una frase llarga. " * 400),
    Buttons(
        body="Tria", buttons=tuple(ReplyButton(id=f"b{i}", title=f"Opció {i}") for i in range(5))
    ),
    Buttons(
        body="Tria", buttons=(ReplyButton(id="b", title="Un títol massa llarg per a WhatsApp"),)
    ),
    ListMenu(
        body="Tràmits",
        button="Veure",
        sections=(
            ListSection(rows=tuple(ListRow(id=f"r{i}", title=f"Tràmit {i}") for i in range(25))),
        ),
    ),
    Buttons(
        body="🚌 Mataró Bus: https://www.mataro.cat/bus",
        media=Media(media_kind=MediaKind.DOCUMENT, link="https://x.test/planol.pdf"),
        buttons=(ReplyButton(id="kw:tren", title="Tren"),),
    ),
    Buttons(
        body="Plànol " * 200,
        media=Media(media_kind=MediaKind.IMAGE, link="https://x.test/planol.png"),
        buttons=(ReplyButton(id="kw:tren", title="Tren"),),
    ),
    Location(latitude=41.5381, longitude=2.4445, name="Ajuntament", address="La Riera, 48"),
    LocationRequest(body="On és la incidència?"),
    Template(name="reobrir", language="ca", fallback_text="Vols continuar?"),
    MarkRead(message_id="in-1"),
]


@pytest.mark.parametrize("content", RICH, ids=lambda c: c.kind)
async def test_whatever_degrade_gives_is_accepted_by_send(
    harness: Harness, content: OutboundContent
) -> None:
    pieces = degrade(content, harness.channel.capabilities, "ca")
    for piece in pieces:
        assert await harness.channel.send(
            out(harness, piece), last_inbound_at=NOW - timedelta(hours=1)
        )


async def test_fetch_media_streams_with_the_real_type_and_a_cap(harness: Harness) -> None:
    if harness.media_id is None:
        with pytest.raises(MediaError):
            await harness.channel.fetch_media(harness.account, "anything", max_bytes=1000)
        return
    media_id = harness.media_id
    download = await harness.channel.fetch_media(harness.account, media_id, max_bytes=10_000)
    assert download.mime_type == "image/png"
    assert await download.read() == PNG

    async def fetch_small() -> None:
        small = await harness.channel.fetch_media(harness.account, media_id, max_bytes=100)
        await small.read()

    with pytest.raises(MediaTooLargeError):
        await fetch_small()
