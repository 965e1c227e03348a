import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
import respx
from channels_helpers import MATARO, MATARO_010, NOW, SSL_CONTEXT

from civicchat.channels.whatsapp import WhatsAppChannel
from civicchat.clock import ManualClock
from civicchat.exceptions import (
    AuthenticationError,
    BlockedError,
    ConfigError,
    MediaExpiredError,
    MediaTooLargeError,
    SendError,
    TemplateError,
    ThrottledError,
    TransientError,
    UndeliverableError,
    UnsupportedContentError,
    WindowClosedError,
)
from civicchat.messages import (
    Buttons,
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
    TemplateParameter,
    Text,
)

MESSAGES_URL = "https://graph.test/v21.0/100000000000001/messages"
OK = {
    "messaging_product": "whatsapp",
    "contacts": [{"input": "34600111222", "wa_id": "34600111222"}],
    "messages": [{"id": "wamid.sent1"}],
}
RECENT = NOW - timedelta(hours=2)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=SSL_CONTEXT) as c:
        yield c


@pytest.fixture
def channel(client: httpx.AsyncClient) -> WhatsAppChannel:
    return WhatsAppChannel([MATARO, MATARO_010], client=client, clock=ManualClock(NOW))


def out(
    content: OutboundContent, account: str = "mataro", reply_to: str | None = None
) -> OutboundMessage:
    return OutboundMessage(
        channel="whatsapp",
        account=account,
        recipient_id="34600111222",
        content=content,
        reply_to=reply_to,
    )


async def sent_json(
    channel: WhatsAppChannel, content: OutboundContent, **kwargs: object
) -> dict[str, object]:
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(MESSAGES_URL).respond(200, json=OK)
        message_id = await channel.send(out(content, **kwargs), last_inbound_at=RECENT)  # type: ignore[arg-type]
        assert message_id == "wamid.sent1"
        request = route.calls.last.request
        assert request.headers["authorization"] == "Bearer EAAG-mataro-token"
        return json.loads(request.content)  # type: ignore[no-any-return]


async def test_text_with_link_asks_for_a_preview(channel: WhatsAppChannel) -> None:
    body = await sent_json(
        channel, Text(body="Consulta https://www.mataro.cat/010"), reply_to="wamid.in"
    )
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "34600111222",
        "type": "text",
        "text": {"body": "Consulta https://www.mataro.cat/010", "preview_url": True},
        "context": {"message_id": "wamid.in"},
    }


async def test_plain_text_has_no_preview(channel: WhatsAppChannel) -> None:
    body = await sent_json(channel, Text(body="Bon dia"))
    assert body["text"] == {"body": "Bon dia", "preview_url": False}


async def test_media_by_link_and_by_id(channel: WhatsAppChannel) -> None:
    image = await sent_json(
        channel, Media(media_kind=MediaKind.IMAGE, link="https://x.test/a.jpg", caption="Plànol")
    )
    assert image["image"] == {"link": "https://x.test/a.jpg", "caption": "Plànol"}
    voice = await sent_json(channel, Media(media_kind=MediaKind.VOICE, media_id="777", caption="x"))
    assert (voice["type"], voice["audio"]) == ("audio", {"id": "777"})
    doc = await sent_json(
        channel, Media(media_kind=MediaKind.DOCUMENT, media_id="778", filename="ordenança.pdf")
    )
    assert doc["document"] == {"id": "778", "filename": "ordenança.pdf"}


async def test_location(channel: WhatsAppChannel) -> None:
    body = await sent_json(
        channel, Location(latitude=41.5381, longitude=2.4445, name="OAC", address="La Riera, 48")
    )
    assert body["location"] == {
        "latitude": 41.5381,
        "longitude": 2.4445,
        "name": "OAC",
        "address": "La Riera, 48",
    }


async def test_reply_buttons(channel: WhatsAppChannel) -> None:
    buttons = Buttons(
        body="Volies dir...?",
        header="010",
        footer="Ajuntament de Mataró",
        buttons=(ReplyButton(id="kw:bus", title="Bus"), ReplyButton(id="kw:taxi", title="Taxi")),
    )
    body = await sent_json(channel, buttons)
    assert body["interactive"] == {
        "type": "button",
        "header": {"type": "text", "text": "010"},
        "body": {"text": "Volies dir...?"},
        "footer": {"text": "Ajuntament de Mataró"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "kw:bus", "title": "Bus"}},
                {"type": "reply", "reply": {"id": "kw:taxi", "title": "Taxi"}},
            ]
        },
    }


PLAN = Media(
    media_kind=MediaKind.DOCUMENT,
    link="https://www.mataro.cat/bus/planol.pdf",
    caption="Plànol de la xarxa",
    filename="planol-xarxa-mataro-bus.pdf",
)
THREE = (
    ReplyButton(id="kw:targetes_transport", title="Targetes i tarifes"),
    ReplyButton(id="kw:bus_interurba", title="Bus interurbà"),
    ReplyButton(id="kw:tren", title="Tren"),
)


async def test_reply_buttons_under_a_document_are_one_interactive_message(
    channel: WhatsAppChannel,
) -> None:
    content = Buttons(body="🚌 Mataró Bus: https://www.mataro.cat/bus", media=PLAN, buttons=THREE)
    body = await sent_json(channel, content)
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "34600111222",
        "type": "interactive",
        "interactive": {
            "type": "button",
            "header": {
                "type": "document",
                "document": {
                    "link": "https://www.mataro.cat/bus/planol.pdf",
                    "filename": "planol-xarxa-mataro-bus.pdf",
                },
            },
            "body": {"text": "🚌 Mataró Bus: https://www.mataro.cat/bus"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": b.id, "title": b.title}} for b in THREE
                ]
            },
        },
    }


@pytest.mark.parametrize(
    ("media", "header"),
    [
        (
            Media(media_kind=MediaKind.IMAGE, link="https://x.test/a.jpg", caption="x"),
            {"type": "image", "image": {"link": "https://x.test/a.jpg"}},
        ),
        (
            Media(media_kind=MediaKind.VIDEO, media_id="991"),
            {"type": "video", "video": {"id": "991"}},
        ),
        (
            Media(media_kind=MediaKind.DOCUMENT, media_id="992"),
            {"type": "document", "document": {"id": "992"}},
        ),
    ],
)
async def test_media_headers_by_link_or_id_with_a_footer(
    channel: WhatsAppChannel, media: Media, header: dict[str, object]
) -> None:
    content = Buttons(body="Tria", footer="010", media=media, buttons=THREE[:1])
    body = await sent_json(channel, content)
    interactive = body["interactive"]
    assert isinstance(interactive, dict)
    assert interactive["header"] == header
    assert interactive["footer"] == {"text": "010"}


async def test_list(channel: WhatsAppChannel) -> None:
    menu = ListMenu(
        body="Tria un tràmit",
        button="Tràmits",
        sections=(
            ListSection(
                title="Padró", rows=(ListRow(id="padro", title="Volant", description="En línia"),)
            ),
            ListSection(rows=(ListRow(id="ibi", title="IBI"),)),
        ),
    )
    body = await sent_json(channel, menu)
    assert body["interactive"] == {
        "type": "list",
        "body": {"text": "Tria un tràmit"},
        "action": {
            "button": "Tràmits",
            "sections": [
                {
                    "title": "Padró",
                    "rows": [{"id": "padro", "title": "Volant", "description": "En línia"}],
                },
                {"title": "2", "rows": [{"id": "ibi", "title": "IBI"}]},
            ],
        },
    }


async def test_location_request(channel: WhatsAppChannel) -> None:
    body = await sent_json(channel, LocationRequest(body="On és la incidència?"))
    assert body["interactive"] == {
        "type": "location_request_message",
        "body": {"text": "On és la incidència?"},
        "action": {"name": "send_location"},
    }


async def test_template(channel: WhatsAppChannel) -> None:
    template = Template(
        name="reobrir", language="ca", body_parameters=(TemplateParameter(text="Núria"),)
    )
    body = await sent_json(channel, template)
    assert body["template"] == {
        "name": "reobrir",
        "language": {"code": "ca"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Núria"}]}],
    }


async def test_mark_read(channel: WhatsAppChannel) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(MESSAGES_URL).respond(200, json={"success": True})
        result = await channel.send(out(MarkRead(message_id="wamid.in")), last_inbound_at=None)
    assert result == "wamid.in"
    assert json.loads(route.calls.last.request.content) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.in",
    }


async def test_second_account_uses_its_own_number_and_token(channel: WhatsAppChannel) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post("https://graph.test/v21.0/100000000000002/messages").respond(200, json=OK)
        await channel.send(out(Text(body="hola"), account="mataro-010"), last_inbound_at=RECENT)
    assert route.calls.last.request.headers["authorization"] == "Bearer EAAG-010-token"


def test_each_account_has_its_own_limiter(channel: WhatsAppChannel) -> None:
    assert channel.limiters["mataro"] is not channel.limiters["mataro-010"]
    assert channel.limiters["mataro"].rate == 80


async def test_unknown_account_is_a_config_error(channel: WhatsAppChannel) -> None:
    with pytest.raises(ConfigError, match="mataro-010"):
        await channel.send(out(Text(body="hola"), account="nowhere"), last_inbound_at=RECENT)


@pytest.mark.parametrize("age", [timedelta(hours=24), timedelta(hours=61), None])
async def test_window_closed_refuses_free_form_before_any_http(
    channel: WhatsAppChannel, age: timedelta | None
) -> None:
    last = None if age is None else NOW - age
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(MESSAGES_URL).respond(200, json=OK)
        with pytest.raises(WindowClosedError) as info:
            await channel.send(out(Text(body="Bon dia")), last_inbound_at=last)
        assert not route.called
    assert info.value.provider_code == 131047
    assert not info.value.retryable


async def test_window_closed_still_allows_templates_and_read_receipts(
    channel: WhatsAppChannel,
) -> None:
    old = NOW - timedelta(days=3)
    with respx.mock(assert_all_called=False) as mock:
        mock.post(MESSAGES_URL).respond(200, json=OK)
        assert await channel.send(out(Template(name="reobrir", language="es")), last_inbound_at=old)
        assert await channel.send(out(MarkRead(message_id="wamid.in")), last_inbound_at=old)


async def test_window_open_just_under_24_hours(channel: WhatsAppChannel) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.post(MESSAGES_URL).respond(200, json=OK)
        last = NOW - timedelta(hours=23, minutes=59)
        assert await channel.send(out(Text(body="hola")), last_inbound_at=last) == "wamid.sent1"


async def test_naive_last_inbound_is_refused(channel: WhatsAppChannel) -> None:
    with pytest.raises(ValueError, match="zone-aware"):
        await channel.send(out(Text(body="hola")), last_inbound_at=NOW.replace(tzinfo=None))


def meta_error(code: int, status: int = 400) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "error": {
                "message": f"(#{code}) error",
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": "details"},
                "fbtrace_id": "AbC",
            }
        },
    )


@pytest.mark.parametrize(
    ("code", "status", "error", "retryable"),
    [
        (1, 500, TransientError, True),
        (2, 503, TransientError, True),
        (131000, 500, TransientError, True),
        (131016, 503, TransientError, True),
        (4, 400, ThrottledError, True),
        (80007, 400, ThrottledError, True),
        (130429, 400, ThrottledError, True),
        (131056, 400, ThrottledError, True),
        (0, 401, AuthenticationError, False),
        (190, 401, AuthenticationError, False),
        (131047, 400, WindowClosedError, False),
        (131026, 400, UndeliverableError, False),
        (131051, 400, UnsupportedContentError, False),
        (368, 403, BlockedError, False),
        (130403, 403, BlockedError, False),
        (131031, 403, BlockedError, False),
        (132000, 400, TemplateError, False),
        (132016, 400, TemplateError, False),
        (100, 400, SendError, False),
    ],
)
async def test_meta_error_codes_map_to_typed_errors(
    channel: WhatsAppChannel, code: int, status: int, error: type[SendError], retryable: bool
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.post(MESSAGES_URL).mock(return_value=meta_error(code, status))
        with pytest.raises(SendError) as info:
            await channel.send(out(Text(body="hola")), last_inbound_at=RECENT)
    assert type(info.value) is error
    assert info.value.provider_code == code
    assert info.value.status_code == status
    assert info.value.retryable is retryable
    assert (info.value.channel, info.value.account) == ("whatsapp", "mataro")
    if error is ThrottledError:
        assert info.value.retry_after is not None
        assert info.value.retry_after > 0


async def test_retry_after_header_wins_for_throttling(channel: WhatsAppChannel) -> None:
    response = meta_error(130429, 429)
    response.headers["Retry-After"] = "17"
    with respx.mock(assert_all_called=False) as mock:
        mock.post(MESSAGES_URL).mock(return_value=response)
        with pytest.raises(ThrottledError) as info:
            await channel.send(out(Text(body="hola")), last_inbound_at=RECENT)
    assert info.value.retry_after == 17


async def test_non_json_5xx_and_timeouts_are_transient(channel: WhatsAppChannel) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(MESSAGES_URL)
        route.respond(502, text="<html>Bad gateway</html>")
        with pytest.raises(TransientError):
            await channel.send(out(Text(body="hola")), last_inbound_at=RECENT)
        route.side_effect = httpx.ReadTimeout("slow")
        with pytest.raises(TransientError):
            await channel.send(out(Text(body="hola")), last_inbound_at=RECENT)


async def test_success_without_message_id_is_transient(channel: WhatsAppChannel) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.post(MESSAGES_URL).respond(200, json={"messaging_product": "whatsapp"})
        with pytest.raises(TransientError):
            await channel.send(out(Text(body="hola")), last_inbound_at=RECENT)


@pytest.mark.parametrize(
    "content",
    [
        Text(body="x" * 4097),
        Buttons(body="?", buttons=tuple(ReplyButton(id=str(i), title=str(i)) for i in range(4))),
        Buttons(
            body="?", buttons=(ReplyButton(id="a", title="Un títol massa llarg per WhatsApp"),)
        ),
        ListMenu(
            body="?",
            button="Veure",
            sections=(
                ListSection(rows=tuple(ListRow(id=str(i), title=str(i)) for i in range(11))),
            ),
        ),
    ],
)
async def test_content_beyond_capabilities_is_refused_before_http(
    channel: WhatsAppChannel, content: OutboundContent
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(MESSAGES_URL).respond(200, json=OK)
        with pytest.raises(UnsupportedContentError, match="degrade"):
            await channel.send(out(content), last_inbound_at=RECENT)
        assert not route.called


# ---------------------------------------------------------------------------- media

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 2000
INFO_URL = "https://graph.test/v21.0/900000000000001"
CDN = "https://lookaside.test/whatsapp_business/attachments/"


def media_info(url: str, size: int = len(JPEG), mime: str = "image/jpeg") -> dict[str, object]:
    return {
        "messaging_product": "whatsapp",
        "url": url,
        "mime_type": mime,
        "sha256": "abc",
        "file_size": size,
        "id": "900000000000001",
    }


async def test_media_download_in_two_steps(channel: WhatsAppChannel) -> None:
    with respx.mock(assert_all_called=False) as mock:
        info = mock.get(INFO_URL).respond(200, json=media_info(CDN + "?mid=1"))
        file = mock.get(CDN).respond(200, content=JPEG, headers={"Content-Type": "image/jpeg"})
        download = await channel.fetch_media("mataro", "900000000000001", max_bytes=10_000)
        data = await download.read()
    assert data == JPEG
    assert (download.mime_type, download.size, download.sha256) == ("image/jpeg", len(JPEG), "abc")
    assert info.calls.last.request.headers["authorization"] == "Bearer EAAG-mataro-token"
    assert file.calls.last.request.headers["authorization"] == "Bearer EAAG-mataro-token"


async def test_media_real_mime_type_is_sniffed(channel: WhatsAppChannel) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(INFO_URL).respond(200, json=media_info(CDN, mime="application/octet-stream"))
        mock.get(CDN).respond(200, content=JPEG)
        download = await channel.fetch_media("mataro", "900000000000001", max_bytes=10_000)
        await download.aclose()
    assert download.mime_type == "image/jpeg"


async def test_expired_media_url_asks_for_a_fresh_one(channel: WhatsAppChannel) -> None:
    with respx.mock(assert_all_called=False) as mock:
        info = mock.get(INFO_URL)
        info.side_effect = [
            httpx.Response(200, json=media_info(CDN + "?old=1")),
            httpx.Response(200, json=media_info(CDN + "?new=1")),
        ]
        mock.get(CDN, params={"old": "1"}).respond(404)
        mock.get(CDN, params={"new": "1"}).respond(200, content=JPEG)
        download = await channel.fetch_media("mataro", "900000000000001", max_bytes=10_000)
        assert await download.read() == JPEG
    assert info.call_count == 2


async def test_media_url_expired_twice_is_media_expired(channel: WhatsAppChannel) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(INFO_URL).respond(200, json=media_info(CDN))
        mock.get(CDN).respond(404)
        with pytest.raises(MediaExpiredError):
            await channel.fetch_media("mataro", "900000000000001", max_bytes=10_000)


async def test_media_id_older_than_7_days_is_media_expired(channel: WhatsAppChannel) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(INFO_URL).mock(return_value=meta_error(100, 400))
        with pytest.raises(MediaExpiredError):
            await channel.fetch_media("mataro", "900000000000001", max_bytes=10_000)


async def test_media_over_the_cap_by_declared_size_is_refused_before_download(
    channel: WhatsAppChannel,
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(INFO_URL).respond(200, json=media_info(CDN, size=20_000_000))
        file = mock.get(CDN).respond(200, content=JPEG)
        with pytest.raises(MediaTooLargeError):
            await channel.fetch_media("mataro", "900000000000001", max_bytes=5_000_000)
        assert not file.called


async def test_media_over_the_cap_by_content_length(channel: WhatsAppChannel) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(INFO_URL).respond(200, json=media_info(CDN, size=10))
        mock.get(CDN).respond(200, content=b"\xff\xd8\xff" + b"\x01" * 300_000)
        with pytest.raises(MediaTooLargeError):
            await channel.fetch_media("mataro", "900000000000001", max_bytes=100_000)


async def test_media_over_the_cap_while_streaming(channel: WhatsAppChannel) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"\xff\xd8\xff"
        for _ in range(30):
            yield b"\x01" * 10_000

    with respx.mock(assert_all_called=False) as mock:
        # No Content-Length and lying metadata: the cap is enforced on the bytes themselves.
        mock.get(INFO_URL).respond(200, json=media_info(CDN, size=10))
        mock.get(CDN).mock(return_value=httpx.Response(200, content=body()))
        download = await channel.fetch_media("mataro", "900000000000001", max_bytes=100_000)
        assert download.mime_type == "image/jpeg"
        received: list[int] = []

        async def consume() -> None:
            async for chunk in download:
                received.append(len(chunk))

        with pytest.raises(MediaTooLargeError):
            await consume()
    assert 0 < sum(received) <= 100_000
