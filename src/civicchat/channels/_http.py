"""Helpers shared by the HTTP adapters: webhook JSON, timestamps, streaming, MIME sniffing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx

from civicchat.exceptions import PayloadError, SendError, TransientError

_CHUNK = 64 * 1024

# Magic numbers of the formats citizens actually send; used when the provider says only
# "application/octet-stream" (Telegram always does).
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (4, b"ftyp", "video/mp4"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
)


def sniff_mime(head: bytes) -> str | None:
    """The MIME type told by the first bytes of a file, or None when unknown."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for offset, magic, mime in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return mime
    return None


def load_json_object(body: bytes, *, channel: str) -> dict[str, Any]:
    """Parse a webhook body that must be a JSON object, or raise :class:`PayloadError`."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"the body is not valid JSON: {exc}", channel=channel) from None
    if not isinstance(data, dict):
        raise PayloadError("the body is not a JSON object", channel=channel)
    return data


def unix_time(value: object, *, channel: str) -> datetime:
    """A provider's Unix timestamp (int or digit string) as an aware UTC datetime."""
    try:
        seconds = int(value)  # type: ignore[call-overload]
        return datetime.fromtimestamp(seconds, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise PayloadError(f"invalid timestamp {value!r}", channel=channel) from None


def retry_after_header(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (the delta-seconds form), if present and sane."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 86_400 else None


async def stream_response(
    client: httpx.AsyncClient, request: httpx.Request
) -> tuple[httpx.Response, AsyncIterator[bytes]]:
    """Send ``request`` streaming; the returned iterator closes the response when done."""
    response = await client.send(request, stream=True)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes(_CHUNK):
                yield chunk
        finally:
            await response.aclose()

    return response, chunks()


async def with_first_chunk(
    chunks: AsyncIterator[bytes],
) -> tuple[bytes, AsyncIterator[bytes]]:
    """Read the first chunk (to sniff it) and give back an iterator that yields it again."""
    first = b""
    async for chunk in chunks:
        if chunk:
            first = chunk
            break

    async def again() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for chunk in chunks:
                yield chunk
        finally:
            closer = getattr(chunks, "aclose", None)
            if closer is not None:
                await closer()

    return first, again()


def transport_error(exc: httpx.HTTPError, *, channel: str, account: str) -> SendError:
    """A network failure or timeout: always worth retrying."""
    return TransientError(
        f"{channel} request failed: {type(exc).__name__}", channel=channel, account=account
    )
