import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx
from channels_helpers import BOT, NOW, SSL_CONTEXT, fixture_json, telegram_post

from civicchat.channels.base import WebhookRequest
from civicchat.channels.telegram import TelegramAccount, TelegramChannel
from civicchat.clock import ManualClock
from civicchat.exceptions import (
    AuthenticationError,
    ConfigError,
    MediaExpiredError,
    MediaTooLargeError,
    PayloadError,
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
    Contacts,
    InboundMessage,
    InteractiveReply,
    Location,
    LocationRequest,
    Media,
    MediaKind,
    OutboundContent,
    OutboundMessage,
    ReplyButton,
    Template,
    Text,
    Unsupported,
)

API = "https://tg.test/bot123456:ABC-def_ghi"
UPDATES: dict[str, Any] = fixture_json("telegram_updates.json")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=SSL_CONTEXT) as c:
        yield c


@pytest.fixture
def channel(client: httpx.AsyncClient) -> TelegramChannel:
    return TelegramChannel(BOT, client=client, clock=ManualClock(NOW))


def parse(channel: TelegramChannel, name: str) -> InboundMessage:
    (event,) = channel.handle_webhook(telegram_post(UPDATES[name])).events
    assert isinstance(event, InboundMessage)
    return event


def test_missing_secret_is_401(channel: TelegramChannel) -> None:
    request = WebhookRequest(method="POST", body=json.dumps(UPDATES["text"]).encode())
    with pytest.raises(SignatureError) as info:
        channel.handle_webhook(request)
    assert info.value.status_code == 401


def test_wrong_secret_is_403(channel: TelegramChannel) -> None:
    with pytest.raises(SignatureError) as info:
        channel.handle_webhook(telegram_post(UPDATES["text"], secret="s3cr3t_token-Mataro2"))
    assert info.value.status_code == 403


@pytest.mark.parametrize("body", [b"nope", b"[1]", b'{"message": {}}'])
def test_malformed_update_is_400(channel: TelegramChannel, body: bytes) -> None:
    with pytest.raises(WebhookError) as info:
        channel.handle_webhook(telegram_post(body))
    assert info.value.status_code == 400


def test_text_with_language_hint(channel: TelegramChannel) -> None:
    event = parse(channel, "text")
    assert event.content == Text(body="horari OAC")
    assert event.provider_message_id == "700000001:41"
    assert (event.sender.id, event.sender.name, event.sender.language_hint) == (
        "700000001",
        "Marta Serra",
        "ca",
    )
    assert event.account == "mataro-bot"
    assert event.timestamp.isoformat() == "2026-03-27T14:00:00+00:00"


def test_photo_keeps_the_largest_size(channel: TelegramChannel) -> None:
    content = parse(channel, "photo").content
    assert content == Media(
        media_kind=MediaKind.IMAGE,
        media_id="AgACAgQAAxkBAAMqlarge",
        caption="Contenidor cremat",
        size=98000,
    )


@pytest.mark.parametrize(
    ("name", "kind", "file_id"),
    [
        ("voice", MediaKind.VOICE, "AwACAgQAAxkBAAMrvoice"),
        ("audio", MediaKind.AUDIO, "CQACAgQAAxkBAAMsaudio"),
        ("video", MediaKind.VIDEO, "BAACAgQAAxkBAAMtvideo"),
        ("document", MediaKind.DOCUMENT, "BQACAgQAAxkBAAMudoc"),
    ],
)
def test_media_updates(channel: TelegramChannel, name: str, kind: MediaKind, file_id: str) -> None:
    content = parse(channel, name).content
    assert isinstance(content, Media)
    assert (content.media_kind, content.media_id) == (kind, file_id)


def test_document_keeps_name_mime_and_caption(channel: TelegramChannel) -> None:
    content = parse(channel, "document").content
    assert isinstance(content, Media)
    assert (content.filename, content.mime_type, content.caption) == (
        "instancia.pdf",
        "application/pdf",
        "Instància",
    )


def test_location_venue_and_contact(channel: TelegramChannel) -> None:
    assert parse(channel, "location").content == Location(latitude=41.5402, longitude=2.4437)
    # A venue carries a location too: the venue (with its name) wins.
    assert parse(channel, "venue").content == Location(
        latitude=41.5381, longitude=2.4445, name="Ajuntament de Mataró", address="La Riera, 48"
    )
    contact = parse(channel, "contact").content
    assert isinstance(contact, Contacts)
    assert (contact.contacts[0].name, contact.contacts[0].phones) == (
        "Anna Soler",
        ("+34600555666",),
    )


def test_reply_and_forward(channel: TelegramChannel) -> None:
    event = parse(channel, "reply_forwarded")
    assert event.reply_to == "700000001:40"
    assert event.forwarded is True


def test_unknown_content_is_unsupported(channel: TelegramChannel) -> None:
    content = parse(channel, "poll").content
    assert content == Unsupported(provider_type="poll")


def test_callback_query_is_answered_in_the_response(channel: TelegramChannel) -> None:
    result = channel.handle_webhook(telegram_post(UPDATES["callback"]))
    assert result.content_type == "application/json"
    assert json.loads(result.body) == {
        "method": "answerCallbackQuery",
        "callback_query_id": "4382bfdwdsb323b2d9",
    }
    (event,) = result.events
    assert isinstance(event, InboundMessage)
    assert event.content == InteractiveReply(reply_id="kw:taxi", title="Taxi", source="callback")
    assert event.provider_message_id == "cb:4382bfdwdsb323b2d9"
    assert event.sender.id == "700000001"
    assert event.sender.language_hint == "ca"
    assert event.reply_to == "700000001:60"
    assert event.timestamp == NOW


def test_edited_messages_and_other_updates_give_no_events(channel: TelegramChannel) -> None:
    result = channel.handle_webhook(telegram_post(UPDATES["edited"]))
    assert (result.status_code, result.events) == (200, ())


def test_account_validation() -> None:
    with pytest.raises(ConfigError, match="secret_token"):
        TelegramAccount(name="b", bot_token="1:a", secret_token="has spaces")
    with pytest.raises(ConfigError, match="secret_token"):
        TelegramAccount(name="b", bot_token="1:a", secret_token="ends_in_a_newline\n")
    with pytest.raises(ConfigError, match="BotFather"):
        TelegramAccount(name="b", bot_token="nocolon", secret_token="ok")


def test_the_bot_has_a_telegram_rate_limiter(channel: TelegramChannel) -> None:
    assert channel.limiters["mataro-bot"] is channel.limiter
    assert (channel.limiter.rate, channel.limiter.per_recipient_interval) == (30, 1.0)


def test_token_is_not_in_repr() -> None:
    assert "ABC-def" not in repr(BOT)
    assert BOT.secret_token not in repr(BOT)


# ---------------------------------------------------------------------------- sending


def out(content: OutboundContent, reply_to: str | None = None) -> OutboundMessage:
    return OutboundMessage(
        channel="telegram",
        account="mataro-bot",
        recipient_id="700000001",
        content=content,
        reply_to=reply_to,
    )


def sent(message_id: int = 99) -> dict[str, Any]:
    return {"ok": True, "result": {"message_id": message_id, "chat": {"id": 700000001}, "date": 1}}


async def call(
    channel: TelegramChannel, method: str, content: OutboundContent, **kw: Any
) -> dict[str, Any]:
    with respx.mock() as mock:
        route = mock.post(f"{API}/{method}").respond(200, json=sent())
        assert await channel.send(out(content, **kw), last_inbound_at=None) == "700000001:99"
        return json.loads(route.calls.last.request.content)  # type: ignore[no-any-return]


async def test_send_text_with_inline_keyboard(channel: TelegramChannel) -> None:
    buttons = Buttons(
        body="Volies dir...?",
        buttons=(ReplyButton(id="kw:bus", title="Bus"), ReplyButton(id="kw:taxi", title="Taxi")),
    )
    body = await call(channel, "sendMessage", buttons, reply_to="700000001:41")
    assert body == {
        "chat_id": 700000001,
        "text": "Volies dir...?",
        "reply_markup": {
            "inline_keyboard": [
                [{"text": "Bus", "callback_data": "kw:bus"}],
                [{"text": "Taxi", "callback_data": "kw:taxi"}],
            ]
        },
        "reply_parameters": {"message_id": 41, "allow_sending_without_reply": True},
    }


async def test_send_text_link_preview_only_with_a_link(channel: TelegramChannel) -> None:
    plain = await call(channel, "sendMessage", Text(body="Hola"))
    assert plain["link_preview_options"] == {"is_disabled": True}
    linked = await call(channel, "sendMessage", Text(body="https://www.mataro.cat"))
    assert linked["link_preview_options"] == {"is_disabled": False}


async def test_send_photo_document_location_venue(channel: TelegramChannel) -> None:
    photo = await call(
        channel,
        "sendPhoto",
        Media(media_kind=MediaKind.IMAGE, link="https://x.test/a.jpg", caption="Plànol"),
    )
    assert (photo["photo"], photo["caption"]) == ("https://x.test/a.jpg", "Plànol")
    doc = await call(channel, "sendDocument", Media(media_kind=MediaKind.DOCUMENT, media_id="BQAC"))
    assert doc["document"] == "BQAC"
    location = await call(channel, "sendLocation", Location(latitude=41.5, longitude=2.4))
    assert (location["latitude"], location["longitude"]) == (41.5, 2.4)
    venue = await call(
        channel,
        "sendVenue",
        Location(latitude=41.5, longitude=2.4, name="OAC", address="La Riera, 48"),
    )
    assert (venue["title"], venue["address"]) == ("OAC", "La Riera, 48")


@pytest.mark.parametrize(
    ("kind", "method", "field"),
    [
        (MediaKind.IMAGE, "sendPhoto", "photo"),
        (MediaKind.VIDEO, "sendVideo", "video"),
        (MediaKind.DOCUMENT, "sendDocument", "document"),
    ],
)
async def test_buttons_under_media_are_one_media_message_with_caption_and_keyboard(
    channel: TelegramChannel, kind: MediaKind, method: str, field: str
) -> None:
    content = Buttons(
        body="🚌 Mataró Bus",
        footer="010",
        media=Media(media_kind=kind, link="https://x.test/planol", caption="Plànol"),
        buttons=(ReplyButton(id="kw:tren", title="Tren"),),
    )
    body = await call(channel, method, content)
    assert body == {
        "chat_id": 700000001,
        field: "https://x.test/planol",
        "caption": "🚌 Mataró Bus\n\n010",
        "reply_markup": {"inline_keyboard": [[{"text": "Tren", "callback_data": "kw:tren"}]]},
    }


async def test_a_caption_over_1024_characters_is_refused_before_http(
    channel: TelegramChannel,
) -> None:
    content = Buttons(
        body="x" * 1025,
        media=Media(media_kind=MediaKind.IMAGE, media_id="AgAC"),
        buttons=(ReplyButton(id="kw:tren", title="Tren"),),
    )
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(url__startswith=API)
        with pytest.raises(UnsupportedContentError, match="caption has at most 1024"):
            await channel.send(out(content), last_inbound_at=None)
        assert not route.called


async def test_location_request_uses_a_reply_keyboard(channel: TelegramChannel) -> None:
    body = await call(channel, "sendMessage", LocationRequest(body="On és?"))
    assert body["reply_markup"]["keyboard"][0][0]["request_location"] is True


@pytest.mark.parametrize(
    "content",
    [
        Template(name="t", language="ca", fallback_text="x"),
        Buttons(body="?", buttons=(ReplyButton(id="x" * 65, title="Massa"),)),
        Text(body="x" * 4097),
    ],
)
async def test_unsupported_content_is_refused_before_http(
    channel: TelegramChannel, content: OutboundContent
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(url__startswith=API)
        with pytest.raises(UnsupportedContentError):
            await channel.send(out(content), last_inbound_at=None)
        assert not route.called


@pytest.mark.parametrize(
    ("status", "payload", "error", "retry_after"),
    [
        (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 7",
                "parameters": {"retry_after": 7},
            },
            ThrottledError,
            7.0,
        ),
        (
            401,
            {"ok": False, "error_code": 401, "description": "Unauthorized"},
            AuthenticationError,
            None,
        ),
        (
            403,
            {
                "ok": False,
                "error_code": 403,
                "description": "Forbidden: bot was blocked by the user",
            },
            UndeliverableError,
            None,
        ),
        (502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}, TransientError, None),
        (
            400,
            {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
            SendError,
            None,
        ),
    ],
)
async def test_errors_are_typed(
    channel: TelegramChannel,
    status: int,
    payload: dict[str, Any],
    error: type[SendError],
    retry_after: float | None,
) -> None:
    with respx.mock() as mock:
        mock.post(f"{API}/sendMessage").respond(status, json=payload)
        with pytest.raises(SendError) as info:
            await channel.send(out(Text(body="hola")), last_inbound_at=None)
    assert type(info.value) is error
    assert info.value.retry_after == retry_after
    assert info.value.provider_code == status


async def test_set_webhook_sends_the_secret_token(channel: TelegramChannel) -> None:
    with respx.mock() as mock:
        route = mock.post(f"{API}/setWebhook").respond(200, json={"ok": True, "result": True})
        await channel.set_webhook("https://civic.mataro.cat/webhooks/telegram/mataro-bot")
    body = json.loads(route.calls.last.request.content)
    assert body["secret_token"] == BOT.secret_token
    assert body["url"].endswith("/mataro-bot")


async def test_fetch_media_through_get_file(channel: TelegramChannel) -> None:
    ogg = b"OggS" + b"\x00" * 500
    with respx.mock() as mock:
        mock.post(f"{API}/getFile").respond(
            200,
            json={
                "ok": True,
                "result": {"file_id": "AwAC", "file_size": 504, "file_path": "voice/file_7.oga"},
            },
        )
        mock.get("https://tg.test/file/bot123456:ABC-def_ghi/voice/file_7.oga").respond(
            200, content=ogg, headers={"Content-Type": "application/octet-stream"}
        )
        download = await channel.fetch_media("mataro-bot", "AwAC", max_bytes=10_000)
        assert await download.read() == ogg
    assert download.mime_type == "audio/ogg"
    assert download.filename == "file_7.oga"


async def test_fetch_media_refuses_big_files(channel: TelegramChannel) -> None:
    with respx.mock() as mock:
        mock.post(f"{API}/getFile").respond(
            200,
            json={
                "ok": True,
                "result": {"file_id": "A", "file_size": 9_000_000, "file_path": "p/x.jpg"},
            },
        )
        with pytest.raises(MediaTooLargeError):
            await channel.fetch_media("mataro-bot", "A", max_bytes=5_000_000)
        mock.post(f"{API}/getFile").respond(
            400,
            json={"ok": False, "error_code": 400, "description": "Bad Request: file is too big"},
        )
        with pytest.raises(MediaTooLargeError):
            await channel.fetch_media("mataro-bot", "A", max_bytes=5_000_000)


async def test_fetch_media_invalid_file_id_is_expired(channel: TelegramChannel) -> None:
    with respx.mock() as mock:
        mock.post(f"{API}/getFile").respond(
            400,
            json={"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"},
        )
        with pytest.raises(MediaExpiredError):
            await channel.fetch_media("mataro-bot", "A", max_bytes=5_000_000)


def test_webhook_body_must_be_json_object(channel: TelegramChannel) -> None:
    with pytest.raises(PayloadError):
        channel.handle_webhook(telegram_post(b'"string"'))


async def test_fetch_media_asks_get_file_again_when_the_path_expired(
    channel: TelegramChannel,
) -> None:
    jpeg = b"\xff\xd8\xff" + b"\x00" * 100
    with respx.mock() as mock:
        get_file = mock.post(f"{API}/getFile")
        get_file.side_effect = [
            httpx.Response(
                200, json={"ok": True, "result": {"file_id": "A", "file_path": "photos/old.jpg"}}
            ),
            httpx.Response(
                200, json={"ok": True, "result": {"file_id": "A", "file_path": "photos/new.jpg"}}
            ),
        ]
        mock.get("https://tg.test/file/bot123456:ABC-def_ghi/photos/old.jpg").respond(404)
        mock.get("https://tg.test/file/bot123456:ABC-def_ghi/photos/new.jpg").respond(
            200, content=jpeg
        )
        download = await channel.fetch_media("mataro-bot", "A", max_bytes=1000)
        assert await download.read() == jpeg
    assert download.mime_type == "image/jpeg"
    assert get_file.call_count == 2


async def test_fetch_media_for_another_account_is_a_config_error(channel: TelegramChannel) -> None:
    with pytest.raises(ConfigError):
        await channel.fetch_media("other-bot", "A", max_bytes=1000)


async def test_network_errors_are_transient(channel: TelegramChannel) -> None:
    with respx.mock() as mock:
        mock.post(f"{API}/sendMessage").mock(side_effect=httpx.ConnectError("down"))
        with pytest.raises(TransientError):
            await channel.send(out(Text(body="hola")), last_inbound_at=None)
