"""Helpers shared by the HTTP adapters: webhook JSON, timestamps, streaming, MIME sniffing,
and :func:`provider_client`, the ``httpx.AsyncClient`` the service sends with."""

from __future__ import annotations

import asyncio
import contextlib
import json
import json as _json
import re
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpcore
import httpx
from httpx._client import UseClientDefault
from httpx._types import (
    AuthTypes,
    CookieTypes,
    HeaderTypes,
    QueryParamTypes,
    RequestContent,
    RequestData,
    RequestExtensions,
    RequestFiles,
    TimeoutTypes,
)

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
    """An ``httpx.AsyncClient`` for the providers' APIs whose sends stay cheap under load.

    httpcore 1.0's connection pool re-examines every connection and every queued request on each
    request and each response close, and hands one idle connection to every request queued in
    the same pass (the losers fail with ``ConnectionNotAvailable`` and rescan: encode/httpcore
    #1035); its h11 connections on anyio cost more than the rest of a send. This client is a
    :class:`LeanClient` (httpx's client minus the layers the providers do not use) over httpx's
    own transport whose pool is a :class:`LeanPool` (constant work a request, lean HTTP/1.1
    connections), so requests, responses, timeouts and errors stay httpx's: about a third of the
    CPU of a plain ``httpx.AsyncClient`` a send (``benchmarks/channels.py send``).
    """
    client = LeanClient(timeout=timeout)
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


USE_CLIENT_DEFAULT = httpx.USE_CLIENT_DEFAULT


class LeanClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose ``send`` skips the layers the providers' APIs do not use.

    When the client has no auth, no event hooks and does not follow redirects (and the call asks
    for none), a request goes straight to its transport: no auth flow, no redirect loop, and no
    cookie extraction (the providers authenticate with a header; cookies they set are ignored)
    and no httpx INFO log line. Anything else (and a closed client) takes httpx's own path.
    Timeouts, the response's ``request``, ``elapsed``, decoding and errors are httpx's.

    ``request`` (so ``post``) builds a JSON body to an absolute URL itself: the same headers
    and bytes as httpx's ``build_request``, for a fifth of its CPU.
    """

    async def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: RequestContent | None = None,
        data: RequestData | None = None,
        files: RequestFiles | None = None,
        json: Any | None = None,
        params: QueryParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        auth: AuthTypes | UseClientDefault | None = USE_CLIENT_DEFAULT,
        follow_redirects: bool | UseClientDefault = USE_CLIENT_DEFAULT,
        timeout: TimeoutTypes | UseClientDefault = USE_CLIENT_DEFAULT,  # noqa: ASYNC109
        extensions: RequestExtensions | None = None,
    ) -> httpx.Response:
        """httpx's ``request``; a JSON body to an absolute URL (the providers' calls) is built
        without httpx's general merging and encoding, into the same request."""
        if isinstance(url, str):
            url = httpx.URL(url)
        if (
            json is None
            or content is not None
            or data is not None
            or files is not None
            or params is not None
            or cookies is not None
            or extensions is not None
            or not url.is_absolute_url
            or self.params
            or self.cookies
        ):
            return await super().request(
                method,
                url,
                content=content,
                data=data,
                files=files,
                json=json,
                params=params,
                headers=headers,
                cookies=cookies,
                auth=auth,
                follow_redirects=follow_redirects,
                timeout=timeout,
                extensions=extensions,
            )
        body = _json.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        encoded = body.encode()
        merged = httpx.Headers(self.headers)
        if headers:
            merged.update(headers)
        # As httpx's Request._prepare: what the caller set wins.
        merged.setdefault("Host", url.netloc.decode("ascii"))
        merged.setdefault("Content-Length", str(len(encoded)))
        merged.setdefault("Content-Type", "application/json")
        limits = self.timeout if isinstance(timeout, UseClientDefault) else httpx.Timeout(timeout)
        request = httpx.Request(
            method,
            url,
            headers=merged,
            stream=httpx.ByteStream(encoded),
            extensions={"timeout": limits.as_dict()},
        )
        request.read()  # request.content, as httpx's own requests have it
        return await self.send(request, auth=auth, follow_redirects=follow_redirects)

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: AuthTypes | UseClientDefault | None = USE_CLIENT_DEFAULT,
        follow_redirects: bool | UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        hooks = getattr(self, "_event_hooks", None)
        if (
            not _LEAN_SEND
            or hooks is None
            or (auth is not USE_CLIENT_DEFAULT and auth is not None)
            or follow_redirects is True
            or (follow_redirects is USE_CLIENT_DEFAULT and self.follow_redirects)
            or self._auth is not None
            or hooks["request"]
            or hooks["response"]
            or self.is_closed
        ):
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        self._state = httpx._client.ClientState.OPENED
        self._set_timeout(request)
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise RuntimeError("Attempted to send an sync request with an AsyncClient instance.")
        transport = self._transport_for_url(request.url)
        start = time.perf_counter()
        with _request_context(request=request):
            response = await transport.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.request = request
        response.stream = _BoundAsyncStream(response.stream, response=response, start=start)
        response.default_encoding = self._default_encoding
        if not stream:
            try:
                if "content-encoding" in response.headers:
                    await response.aread()  # httpx's decoders
                else:
                    # What aread does for an unencoded body, minus its chunker and decoders.
                    parts = [part async for part in response.stream]
                    response._content = b"".join(parts)
                    response.is_stream_consumed = True
                    await response.aclose()
            except BaseException:
                await response.aclose()
                raise
        return response


try:  # httpx's own pieces of AsyncClient.send; without them LeanClient sends as httpx does
    from httpx._client import BoundAsyncStream as _BoundAsyncStream
    from httpx._exceptions import request_context as _request_context

    _LEAN_SEND = all(
        hasattr(httpx.AsyncClient, name) for name in ("_transport_for_url", "_set_timeout")
    )
except ImportError:  # pragma: no cover - another httpx
    _LEAN_SEND = False


_Key = tuple[bytes, bytes, int]


class LeanPool:
    """A small HTTP/1.1 connection pool for httpcore: at most ``max_connections`` requests in
    flight, one idle stack per origin, each connection used by one request at a time.

    Implements the part of httpcore's ``AsyncRequestInterface`` that httpx's transport calls
    (``handle_async_request``, ``aclose``, async context manager). A request waits for a free
    slot up to its ``pool`` timeout (``httpcore.PoolTimeout``); an idle connection the server
    closed, or one past ``keepalive_expiry``, is dropped when taken.

    The connections are :class:`LeanConnection` (HTTP/1.1 on asyncio streams), not httpcore's
    (h11 on anyio): a send costs about half the CPU. Errors are httpcore's exceptions, which
    httpx's transport maps to its own as usual.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 64,
        keepalive_expiry: float | None = 30.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        # Free request slots, and the requests waiting for one in arrival order (a counter and
        # a deque, not asyncio.Semaphore: its locked() and acquire() scan every waiter).
        self._free = max_connections
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._idle: dict[_Key, list[LeanConnection]] = {}
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
        timeouts = request.extensions.get("timeout") or {}
        if self._free > 0 and not self._waiters:
            self._free -= 1  # a free slot: taken at once, no timer needed
        else:
            await self._wait_for_slot(timeouts.get("pool"))
        try:
            origin = request.url.origin
            key = (origin.scheme, origin.host, origin.port)
            connection = self._take_idle(key)
            if connection is None:
                connection = await LeanConnection.open(
                    key,
                    ssl_context=self._ssl_context,
                    timeouts=timeouts,
                    sni_hostname=request.extensions.get("sni_hostname"),
                )
            try:
                status, headers, extensions, body = await connection.request(request, timeouts)
            except BaseException:
                connection.close()
                raise
        except BaseException:
            self._release_slot()
            raise
        return httpcore.Response(
            status=status,
            headers=headers,
            content=_ReleasingStream(body, connection, key, self),
            extensions=extensions,
        )

    async def _wait_for_slot(self, pool_timeout: float | None) -> None:
        """Queue for a slot; :meth:`_release_slot` hands it over (first come, first served)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(pool_timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # handed over just as the wait ended: pass it on
            else:
                waiter.cancel()  # skipped by _release_slot, and dropped here
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise httpcore.PoolTimeout("no free connection in the pool") from None
            raise

    def _release_slot(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def _take_idle(self, key: _Key) -> LeanConnection | None:
        stack = self._idle.get(key)
        while stack:
            connection = stack.pop()  # the most recently used: the likeliest to be alive
            if connection.reusable():
                return connection
            connection.close()
        return None

    def _release(self, connection: LeanConnection, key: _Key) -> None:
        self._release_slot()
        if self._closed or not connection.idle:
            connection.close()
            return
        expiry = self._keepalive_expiry
        connection.expires_at = None if expiry is None else time.monotonic() + expiry
        stack = self._idle.get(key)
        if stack is None:
            stack = self._idle[key] = []
        stack.append(connection)

    async def aclose(self) -> None:
        """Close every idle connection; responses still open close theirs when closed."""
        self._closed = True
        idle, self._idle = self._idle, {}
        closing = [connection for stack in idle.values() for connection in stack]
        for connection in closing:
            connection.close()
        # A TLS peer that never answers the close must not hold the service's shutdown.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await asyncio.gather(*(c.wait_closed() for c in closing))

    async def __aenter__(self) -> LeanPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


_HEAD_LIMIT = 64 * 1024
"""The most bytes a response's status line and headers may take."""

_NO_BODY_STATUS = frozenset({204, 304})


class LeanConnection:
    """One HTTP/1.1 client connection on asyncio streams, one request at a time.

    Writes each request (line, headers and a body of known length) in one ``write``; reads the
    response's head with one ``readuntil`` and its body by ``Content-Length``, chunked transfer
    coding or until the server closes (RFC 9112 section 6.3). Informational (1xx) answers are
    skipped. The connection can be reused when the whole body was read and neither side said
    ``Connection: close`` (HTTP/1.0 answers are never reused).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.idle = True
        """False while a request is under way, and for good once the connection is unusable."""
        self.expires_at: float | None = None

    @classmethod
    async def open(
        cls,
        key: _Key,
        *,
        ssl_context: ssl.SSLContext | None,
        timeouts: Mapping[str, float | None],
        sni_hostname: str | None = None,
    ) -> LeanConnection:
        """Connect to ``(scheme, host, port)``: TLS for https, within the ``connect`` timeout."""
        scheme, host, port = key
        secure = scheme == b"https"
        if secure and ssl_context is None:
            ssl_context = ssl.create_default_context()
        name = host.decode("ascii")
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                reader, writer = await asyncio.open_connection(
                    name,
                    port,
                    ssl=ssl_context if secure else None,
                    server_hostname=(sni_hostname or name) if secure else None,
                    limit=_HEAD_LIMIT,
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connecting to {name}:{port} timed out") from None
        except (OSError, ssl.SSLError, UnicodeError) as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return cls(reader, writer)

    def reusable(self) -> bool:
        """Idle, not expired, and not closed by the server while it waited."""
        if not self.idle or self._reader.at_eof() or self._writer.is_closing():
            return False
        if self._reader._buffer:  # type: ignore[attr-defined]  # bytes nobody asked for
            return False
        return self.expires_at is None or time.monotonic() < self.expires_at

    def close(self) -> None:
        """Close the socket (without waiting); the connection is never used again."""
        self.idle = False
        if not self._writer.is_closing():
            self._writer.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    async def request(
        self, request: httpcore.Request, timeouts: Mapping[str, float | None]
    ) -> tuple[int, list[tuple[bytes, bytes]], dict[str, Any], AsyncIterable[bytes]]:
        """Send ``request`` and read the response's head: status, headers, extensions, body."""
        self.idle = False
        method = request.method
        head, chunked = _request_head(method, request.url.target, request.headers)
        stream = request.stream
        if isinstance(stream, httpx.ByteStream) and not chunked:
            data = head + b"".join(stream)  # the usual case: one write, one syscall
            await self._write(data, timeouts)
        else:
            await self._write(head, timeouts)
            assert isinstance(stream, AsyncIterable)
            async for part in stream:
                if part:
                    await self._write(
                        b"%x\r\n%b\r\n" % (len(part), part) if chunked else part, timeouts
                    )
            if chunked:
                await self._write(b"0\r\n\r\n", timeouts)
        read_timeout = timeouts.get("read")
        status, headers, reason = await self._read_head(read_timeout)
        while 100 <= status < 200 and status != 101:  # 100 Continue, 103 Early Hints: skipped
            status, headers, reason = await self._read_head(read_timeout)
        if status == 101:
            raise httpcore.RemoteProtocolError("the server switched protocols (101)")
        keep = not _has_token(headers, b"connection", b"close") and not _has_token(
            request.headers, b"connection", b"close"
        )
        if self._http10:
            keep = False
        body: AsyncIterable[bytes]
        if method == b"HEAD" or status in _NO_BODY_STATUS:
            body = _Body(self, b"", keep)
        else:
            length, chunked_response = _framing(headers)
            if chunked_response:
                body = _ChunkedBody(self, read_timeout, keep)
            elif length is None:
                body = _UntilCloseBody(self, read_timeout)
            elif length <= _CHUNK:
                # A small answer (the providers' JSON): read now, so the body is one yield.
                data = await self._read_exactly(length, read_timeout)
                body = _Body(self, data, keep)
            else:
                body = _LengthBody(self, length, read_timeout, keep)
        extensions = {
            "http_version": b"HTTP/1.0" if self._http10 else b"HTTP/1.1",
            "reason_phrase": reason,
        }
        return status, headers, extensions, body

    _http10 = False

    async def _write(self, data: bytes, timeouts: Mapping[str, float | None]) -> None:
        writer = self._writer
        try:
            writer.write(data)
            transport = writer.transport
            if transport.get_write_buffer_size() > 0:  # the socket did not take it all at once
                async with asyncio.timeout(timeouts.get("write")):
                    await writer.drain()
        except TimeoutError:
            raise httpcore.WriteTimeout("writing the request timed out") from None
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def _read_head(
        self, read_timeout: float | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        try:
            async with asyncio.timeout(read_timeout):
                raw = await self._reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            raise httpcore.ReadTimeout("waiting for the response timed out") from None
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise httpcore.RemoteProtocolError(
                    "Server disconnected without sending a response."
                ) from None
            raise httpcore.RemoteProtocolError("the server closed mid-response") from None
        except asyncio.LimitOverrunError:
            raise httpcore.RemoteProtocolError("the response's headers are too long") from None
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc
        lines = raw[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code, _, reason = rest.partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
            raise httpcore.RemoteProtocolError("malformed status line")
        self._http10 = version == b"HTTP/1.0"
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or line[0] in b" \t":
                raise httpcore.RemoteProtocolError("malformed response header")
            headers.append((name, value.strip(b" \t")))
        return int(code), headers, reason

    async def _read_exactly(self, count: int, read_timeout: float | None) -> bytes:
        reader = self._reader
        if len(reader._buffer) >= count:  # type: ignore[attr-defined]
            return await reader.readexactly(count)  # already here (the usual small body): no timer
        try:
            async with asyncio.timeout(read_timeout):
                return await self._reader.readexactly(count)
        except TimeoutError:
            raise httpcore.ReadTimeout("reading the response timed out") from None
        except asyncio.IncompleteReadError:
            raise httpcore.RemoteProtocolError("the server closed mid-response") from None
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def _read_line(self, read_timeout: float | None) -> bytes:
        try:
            async with asyncio.timeout(read_timeout):
                return await self._reader.readuntil(b"\r\n")
        except TimeoutError:
            raise httpcore.ReadTimeout("reading the response timed out") from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise httpcore.RemoteProtocolError("malformed chunked response") from None
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def _read_some(self, read_timeout: float | None, most: int = _CHUNK) -> bytes:
        try:
            async with asyncio.timeout(read_timeout):
                return await self._reader.read(most)
        except TimeoutError:
            raise httpcore.ReadTimeout("reading the response timed out") from None
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    def _done(self, keep: bool) -> None:
        """The whole response was read: idle again, or closed when it cannot be reused."""
        if keep:
            self.idle = True
        else:
            self.close()


def _request_head(
    method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> tuple[bytes, bool]:
    """The request line and headers as bytes, and whether the body goes chunked.

    Refuses (``LocalProtocolError``) what would let a value start a new header or request.
    """
    names = []
    values = [method, target]
    chunked = False
    for name, value in headers:
        if not name:
            raise httpcore.LocalProtocolError("a header without a name")
        if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        names.append(name)
        values.append(value)
    # One search each over what the caller gave: names are RFC 9110 tokens, and no value may
    # hold CR, LF or NUL (it would start another header, or another request).
    if _NOT_TOKEN.search(b"".join(names)) or _UNSAFE.search(b" ".join(values)):
        raise httpcore.LocalProtocolError("a forbidden character in the request's head")
    if b" " in method or b" " in target:
        raise httpcore.LocalProtocolError("a space in the request's method or target")
    parts = [method, b" ", target or b"/", b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), chunked


_UNSAFE = re.compile(rb"[\x00\r\n]")
_NOT_TOKEN = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")


def _has_token(headers: Sequence[tuple[bytes, bytes]], name: bytes, token: bytes) -> bool:
    for key, value in headers:
        if key.lower() == name and token in (t.strip().lower() for t in value.split(b",")):
            return True
    return False


def _framing(headers: Sequence[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """(Content-Length or None, chunked) of a response (RFC 9112 section 6.3)."""
    lengths: set[bytes] = set()
    codings: list[bytes] = []
    for name, value in headers:
        key = name.lower()
        if key == b"content-length":
            lengths.update(v.strip() for v in value.split(b","))
        elif key == b"transfer-encoding":
            codings += (c.strip().lower() for c in value.split(b","))
    if codings:
        # Chunked last: chunked framing. Any other coding last: the body runs until close.
        return None, codings[-1] == b"chunked"
    if not lengths:
        return None, False
    if len(lengths) != 1:
        raise httpcore.RemoteProtocolError("conflicting Content-Length headers")
    (length,) = lengths
    if not length.isdigit() or len(length) > 18:
        raise httpcore.RemoteProtocolError("invalid Content-Length header")
    return int(length), False


class _Body:
    """A body already read (or none)."""

    def __init__(self, connection: LeanConnection, data: bytes, keep: bool) -> None:
        self._data = data
        connection._done(keep)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._data:
            yield self._data


class _LengthBody:
    """A body of a known length, read as it is asked for."""

    def __init__(
        self, connection: LeanConnection, length: int, read_timeout: float | None, keep: bool
    ) -> None:
        self._connection = connection
        self._left = length
        self._timeout = read_timeout
        self._keep = keep

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while self._left > 0:
            data = await connection._read_some(self._timeout, min(self._left, _CHUNK))
            if not data:
                raise httpcore.RemoteProtocolError("the server closed mid-response")
            self._left -= len(data)
            if not self._left:
                connection._done(self._keep)
            yield data


_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_CHUNK_PIECE = 64 * 1024


class _ChunkedBody:
    """A body in chunked transfer coding; trailers are read and dropped."""

    def __init__(self, connection: LeanConnection, read_timeout: float | None, keep: bool) -> None:
        self._connection = connection
        self._timeout = read_timeout
        self._keep = keep

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection, timeout = self._connection, self._timeout
        while True:
            line = await connection._read_line(timeout)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpcore.RemoteProtocolError("malformed chunk size") from None
            if size < 0 or not all(c in _HEX_DIGITS for c in size_text):
                raise httpcore.RemoteProtocolError("malformed chunk size")
            if size == 0:
                while await connection._read_line(timeout) != b"\r\n":
                    pass  # trailer fields
                connection._done(self._keep)
                return
            # A large chunk is read in pieces: its announced size is the server's word, not a
            # buffer to allocate at once.
            while size > _CHUNK_PIECE:
                yield await connection._read_exactly(_CHUNK_PIECE, timeout)
                size -= _CHUNK_PIECE
            data = await connection._read_exactly(size + 2, timeout)
            if data[-2:] != b"\r\n":
                raise httpcore.RemoteProtocolError("malformed chunk")
            yield data[:-2]


class _UntilCloseBody:
    """A body without framing: it ends when the server closes the connection."""

    def __init__(self, connection: LeanConnection, read_timeout: float | None) -> None:
        self._connection = connection
        self._timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while data := await connection._read_some(self._timeout):
            yield data
        connection.close()


class _ReleasingStream:
    """A response body that gives its connection back to the pool once closed (a connection
    whose body was not read to the end is closed, not reused)."""

    def __init__(
        self,
        body: AsyncIterable[bytes],
        connection: LeanConnection,
        key: _Key,
        pool: LeanPool,
    ) -> None:
        self._body = body
        self._connection = connection
        self._key = key
        self._pool: LeanPool | None = pool

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._body.__aiter__()

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool._release(self._connection, self._key)
