from collections.abc import AsyncIterator

import pytest

from civicchat.channels._http import sniff_mime
from civicchat.channels.base import Headers, MediaDownload, WebhookRequest
from civicchat.channels.whatsapp import WhatsAppAccount
from civicchat.exceptions import ConfigError, MediaTooLargeError


def test_headers_are_case_insensitive_and_hide_values_in_repr() -> None:
    headers = Headers({"X-Hub-Signature-256": "sha256=abc", "Content-Type": "application/json"})
    assert headers["x-hub-signature-256"] == "sha256=abc"
    assert headers.get("CONTENT-TYPE") == "application/json"
    assert "X-HUB-SIGNATURE-256" in headers
    assert headers == {"content-type": "application/json", "x-hub-signature-256": "sha256=abc"}
    assert "abc" not in repr(headers)


def test_webhook_request_normalises_method_and_headers() -> None:
    request = WebhookRequest("post", {"X-Telegram-Bot-Api-Secret-Token": "s"}, {}, b"{}")
    assert request.method == "POST"
    assert request.headers["x-telegram-bot-api-secret-token"] == "s"
    with pytest.raises(AttributeError):
        request.body = b"changed"  # type: ignore[misc]


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_media_download_enforces_the_cap_while_streaming() -> None:
    ok = MediaDownload(mime_type="image/png", chunks=chunks(b"ab", b"cd"), max_bytes=4)
    assert await ok.read() == b"abcd"
    over = MediaDownload(mime_type="image/png", chunks=chunks(b"ab", b"cd", b"e"), max_bytes=4)
    with pytest.raises(MediaTooLargeError):
        await over.read()


async def test_media_download_closes_its_source() -> None:
    closed: list[bool] = []

    async def source() -> AsyncIterator[bytes]:
        try:
            yield b"x"
            yield b"y"
        finally:
            closed.append(True)

    download = MediaDownload(mime_type="text/plain", chunks=source(), max_bytes=10)
    async for _ in download:
        break
    await download.aclose()
    assert closed == [True]


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00", "image/png"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"%PDF-1.7\n", "application/pdf"),
        (b"OggS\x00\x02", "audio/ogg"),
        (b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
        (b"GIF89a", "image/gif"),
        (b"hello", None),
        (b"", None),
    ],
)
def test_sniff_mime(head: bytes, mime: str | None) -> None:
    assert sniff_mime(head) == mime


def test_whatsapp_account_is_validated_and_hides_secrets() -> None:
    account = WhatsAppAccount(
        name="m",
        phone_number_id="123",
        access_token="tok-9f3",
        app_secret="sec-7a1",
        verify_token="ver-2b8",
    )
    assert "tok-9f3" not in repr(account)
    assert "sec-7a1" not in repr(account)
    assert "ver-2b8" not in repr(account)
    with pytest.raises(ConfigError, match="numeric id"):
        WhatsAppAccount(
            name="m", phone_number_id="+34 937", access_token="t", app_secret="s", verify_token="v"
        )
    with pytest.raises(ConfigError, match="app_secret"):
        WhatsAppAccount(
            name="m", phone_number_id="1", access_token="t", app_secret="", verify_token="v"
        )
    with pytest.raises(ConfigError, match="messages_per_second"):
        WhatsAppAccount(
            name="m",
            phone_number_id="1",
            access_token="t",
            app_secret="s",
            verify_token="v",
            messages_per_second=5000,
        )
