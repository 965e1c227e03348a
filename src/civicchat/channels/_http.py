"""Helpers shared by the HTTP adapters: webhook JSON, timestamps, streaming, MIME sniffing,
and :func:`provider_client`, the ``httpx.AsyncClient`` the service sends with."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpcore
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


# ----------------------------------------------------------------------------- client

PROVIDER_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
"""Timeouts of :func:`provider_client`: 5 s to connect, 15 s for each read/write/pool wait."""


def provider_client(
    *,
    max_connections: int = 64,
    keepalive_expiry: float = 30.0,
    timeout: httpx.Timeout = PROVIDER_TIMEOUT,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for the providers' APIs whose pool stays cheap under load.

    httpcore 1.0's connection pool re-examines every connection and every queued request on each
    request and each response close, and hands one idle connection to every request queued in
    the same pass (the losers fail with ``ConnectionNotAvailable`` and rescan: encode/httpcore
    #1035). When the outbox fires a batch of sends at once this cost ~2 ms of CPU a request
    instead of ~0.7 ms. This client uses :class:`LeanPool` (constant work a request) behind
    httpx's own transport, so requests, responses, timeouts and errors stay httpx's.
    """
    client = httpx.AsyncClient(timeout=timeout)
    # Only the default transport's pool is swapped: proxies from the environment (HTTPS_PROXY)
    # keep their own transports, as with a plain client.
    transport = client._transport
    if isinstance(transport, httpx.AsyncHTTPTransport) and isinstance(
        getattr(transport, "_pool", None), httpcore.AsyncConnectionPool
    ):
        transport._pool = LeanPool(  # type: ignore[assignment]
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
        )
    return client


_Key = tuple[bytes, bytes, int]


def _key(origin: httpcore.Origin) -> _Key:
    return origin.scheme, origin.host, origin.port


class LeanPool:
    """A small HTTP/1.1 connection pool for httpcore: at most ``max_connections`` requests in
    flight, one idle stack per origin, each connection used by one request at a time.

    Implements the part of httpcore's ``AsyncRequestInterface`` that httpx's transport calls
    (``handle_async_request``, ``aclose``, async context manager). A request waits for a free
    slot up to its ``pool`` timeout (``httpcore.PoolTimeout``); an idle connection the server
    closed, or one past ``keepalive_expiry``, is dropped when taken; a reused connection that
    turns out unusable is replaced by a new one once.
    """

    def __init__(
        self,
        *,
        ssl_context: Any = None,
        max_connections: int = 64,
        keepalive_expiry: float | None = 30.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[_Key, deque[httpcore.AsyncHTTPConnection]] = {}
        self._closed = False

    @property
    def idle_connections(self) -> int:
        """How many open connections wait for a request."""
        return sum(len(stack) for stack in self._idle.values())

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        """Send ``request`` on an idle or new connection; the slot is freed when the response
        is closed."""
        if self._closed:
            raise RuntimeError("the pool is closed")
        timeouts = request.extensions.get("timeout", {})
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpcore.PoolTimeout("no free connection in the pool") from None
        try:
            response = await self._send(request)
        except BaseException:
            self._slots.release()
            raise
        return response

    async def _send(self, request: httpcore.Request) -> httpcore.Response:
        origin = request.url.origin
        connection = self._take_idle(_key(origin))
        if connection is not None:
            try:
                return await self._on(connection, request)
            except httpcore.ConnectionNotAvailable:
                pass  # closed between the check and the send: try a fresh connection
        connection = httpcore.AsyncHTTPConnection(
            origin, ssl_context=self._ssl_context, keepalive_expiry=self._keepalive_expiry
        )
        return await self._on(connection, request)

    def _take_idle(self, key: _Key) -> httpcore.AsyncHTTPConnection | None:
        stack = self._idle.get(key)
        while stack:
            connection = stack.pop()  # the most recently used: the likeliest to be alive
            if connection.is_idle() and not connection.has_expired():
                return connection
            _close_soon(connection)
        return None

    async def _on(
        self, connection: httpcore.AsyncHTTPConnection, request: httpcore.Request
    ) -> httpcore.Response:
        try:
            response = await connection.handle_async_request(request)
        except BaseException:
            await connection.aclose()
            raise
        assert isinstance(response.stream, AsyncIterable)
        return httpcore.Response(
            status=response.status,
            headers=response.headers,
            content=_ReleasingStream(response.stream, connection, request.url.origin, self),
            extensions=response.extensions,
        )

    def _release(self, connection: httpcore.AsyncHTTPConnection, origin: httpcore.Origin) -> None:
        self._slots.release()
        if self._closed or not connection.is_idle():
            _close_soon(connection)
            return
        self._idle.setdefault(_key(origin), deque()).append(connection)

    async def aclose(self) -> None:
        """Close every idle connection; responses still open close theirs when closed."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for stack in idle.values():
            for connection in stack:
                await connection.aclose()

    async def __aenter__(self) -> LeanPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


class _ReleasingStream:
    """A response body that gives its connection back to the pool once closed."""

    def __init__(
        self,
        stream: AsyncIterable[bytes],
        connection: httpcore.AsyncHTTPConnection,
        origin: httpcore.Origin,
        pool: LeanPool,
    ) -> None:
        self._stream = stream
        self._connection = connection
        self._origin = origin
        self._pool: LeanPool | None = pool

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        try:
            closer = getattr(self._stream, "aclose", None)
            if closer is not None:
                await closer()
        finally:
            if pool is not None:
                pool._release(self._connection, self._origin)


_closing: set[asyncio.Task[None]] = set()


def _close_soon(connection: httpcore.AsyncHTTPConnection) -> None:
    """Close a dropped connection without making the caller wait for it."""
    try:
        task = asyncio.get_running_loop().create_task(connection.aclose())
    except RuntimeError:
        return
    _closing.add(task)
    task.add_done_callback(_closing.discard)
