"""provider_client / LeanPool: the pool the service sends to the providers with."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from civicchat.channels._http import LeanClient, LeanPool, provider_client

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class Server:
    """A tiny HTTP/1.1 keep-alive server: ``/slow`` waits for ``release``, ``/close`` answers
    with ``Connection: close``, anything else answers at once."""

    url: str = ""
    connections: int = 0
    open_connections: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    closed_by_client: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    self.closed_by_client += 1
                    return
                path = line.split()[1].decode()
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                if path == "/slow":
                    await self.release.wait()
                self.in_flight -= 1
                close = path == "/close"
                body = b'{"ok": true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + (b"connection: close\r\n" if close else b"")
                    + b"content-length: %d\r\n\r\n" % len(body)
                    + body
                )
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.open_connections -= 1
            writer.close()


@asynccontextmanager
async def serving() -> AsyncIterator[Server]:
    server = Server()
    async with listening(server.handle, server.release) as server.url:
        yield server


@asynccontextmanager
async def listening(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    done: asyncio.Event,
) -> AsyncIterator[str]:
    """A local TCP server running ``handle``; its URL. ``done`` is set before it closes."""
    tcp = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{tcp.sockets[0].getsockname()[1]}"
    finally:
        done.set()
        tcp.close()
        await tcp.wait_closed()


async def test_sequential_requests_reuse_one_connection() -> None:
    async with serving() as server, provider_client() as client:
        for _ in range(5):
            response = await client.post(f"{server.url}/send", json={"to": "x"})
            assert response.json() == {"ok": True}
        assert server.connections == 1
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert isinstance(pool, LeanPool)
        assert pool.idle_connections == 1


async def test_no_more_requests_in_flight_than_connections() -> None:
    async with serving() as server, provider_client(max_connections=2) as client:
        tasks = [asyncio.create_task(client.get(f"{server.url}/slow")) for _ in range(5)]
        await asyncio.sleep(0.1)
        assert server.in_flight == 2
        server.release.set()
        responses = await asyncio.gather(*tasks)
        assert [r.status_code for r in responses] == [200] * 5
        assert server.most_in_flight == 2
        assert server.connections == 2


async def test_waiting_for_a_connection_longer_than_the_pool_timeout_fails() -> None:
    timeout = httpx.Timeout(5.0, pool=0.05)
    async with serving() as server, provider_client(max_connections=1, timeout=timeout) as client:
        held = asyncio.create_task(client.get(f"{server.url}/slow"))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await client.get(f"{server.url}/send")
        server.release.set()
        assert (await held).status_code == 200
        # The slot the failed request never got is not lost either.
        assert (await client.get(f"{server.url}/send")).status_code == 200


async def test_a_connection_the_server_closes_is_not_reused() -> None:
    async with serving() as server, provider_client() as client:
        assert (await client.get(f"{server.url}/close")).status_code == 200
        await asyncio.sleep(0.05)
        assert (await client.get(f"{server.url}/send")).status_code == 200
        assert (await client.get(f"{server.url}/send")).status_code == 200
        assert server.connections == 2


async def test_a_cancelled_request_gives_its_slot_back() -> None:
    async with serving() as server, provider_client(max_connections=1) as client:
        task = asyncio.create_task(client.get(f"{server.url}/slow"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        response = await asyncio.wait_for(client.get(f"{server.url}/send"), 2)
        assert response.status_code == 200


async def test_connect_errors_are_httpx_errors_and_free_the_slot() -> None:
    async with serving() as server:
        url = server.url
    async with provider_client(max_connections=1) as client:
        for _ in range(2):  # a leaked slot would turn the second into a pool timeout
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{url}/send")


async def test_a_streamed_response_holds_its_connection_until_closed() -> None:
    async with serving() as server, provider_client(max_connections=1) as client:
        request = client.build_request("GET", f"{server.url}/send")
        response = await client.send(request, stream=True)
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert pool.idle_connections == 0
        assert await response.aread() == b'{"ok": true}'
        await response.aclose()
        assert pool.idle_connections == 1
        assert (await client.get(f"{server.url}/send")).status_code == 200
        assert server.connections == 1


async def test_closing_the_client_closes_idle_connections() -> None:
    async with serving() as server:
        async with provider_client() as client:
            await client.get(f"{server.url}/send")
            assert server.open_connections == 1
        for _ in range(50):
            if server.open_connections == 0:
                break
            await asyncio.sleep(0.01)
        assert server.open_connections == 0
        assert server.closed_by_client == 1


def test_a_pool_needs_a_connection() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        LeanPool(max_connections=0)


async def test_a_proxy_from_the_environment_is_still_used(monkeypatch: pytest.MonkeyPatch) -> None:
    async with serving() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with provider_client() as client:
            response = await client.get("http://graph.example.invalid/v21.0/1/messages")
        assert response.json() == {"ok": True}
        assert proxy.connections == 1


# ----------------------------------------------------------------------------- LeanConnection
# A server that answers each request with bytes the test chose, to check how the client reads
# what real servers send: chunked bodies, bodies ended by closing, HTTP/1.0, 1xx, no body.


@dataclass
class RawServer:
    """Answers the n-th request with ``answers[n]`` (then closes when ``closes[n]``); records
    every request (its head and its body, a chunked body decoded)."""

    answers: list[bytes]
    closes: list[bool] = field(default_factory=list)
    url: str = ""
    connections: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    hold: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lower = head.lower()
                body = b""
                if b"transfer-encoding: chunked" in lower:
                    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                        body += (await reader.readexactly(size + 2))[:-2]
                    await reader.readuntil(b"\r\n")
                elif b"content-length:" in lower:
                    length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
                    body = await reader.readexactly(length)
                self.requests.append((head, body))
                index = len(self.requests) - 1
                answer = self.answers[min(index, len(self.answers) - 1)]
                if answer == b"hold":
                    await self.hold.wait()
                    return
                writer.write(answer)
                await writer.drain()
                if index < len(self.closes) and self.closes[index]:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


@asynccontextmanager
async def raw_serving(*answers: bytes, closes: tuple[bool, ...] = ()) -> AsyncIterator[RawServer]:
    server = RawServer(list(answers), list(closes))
    async with listening(server.handle, server.hold) as server.url:
        yield server


OK_JSON = (
    b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'
)


def pool_of(client: httpx.AsyncClient) -> LeanPool:
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, LeanPool)
    return pool


async def test_the_request_goes_out_as_http_1_1_with_its_body() -> None:
    async with raw_serving(OK_JSON) as server, provider_client() as client:
        response = await client.post(
            f"{server.url}/v21.0/1/messages?a=1", json={"text": "Bon dia, Mataró"}
        )
        assert response.json() == {"ok": True}
        assert response.http_version == "HTTP/1.1"
        assert response.reason_phrase == "OK"
        head, body = server.requests[0]
        assert head.startswith(b"POST /v21.0/1/messages?a=1 HTTP/1.1\r\n")
        assert b"\r\nHost: 127.0.0.1:" in head
        assert b"\r\nContent-Length: %d\r\n" % len(body) in head
        assert json.loads(body) == {"text": "Bon dia, Mataró"}


async def test_a_chunked_response_is_decoded_and_its_connection_reused() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: yes\r\n\r\n"
    )
    async with raw_serving(chunked, OK_JSON) as server, provider_client() as client:
        assert (await client.get(f"{server.url}/a")).text == "hello, world"
        assert (await client.get(f"{server.url}/b")).json() == {"ok": True}
        assert server.connections == 1


async def test_a_large_chunk_is_read_in_pieces_and_whole() -> None:
    body = bytes(range(256)) * 1000  # 256,000 bytes in one chunk
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(body)
        + body
        + b"\r\n0\r\n\r\n"
    )
    async with raw_serving(chunked, OK_JSON) as server, provider_client() as client:
        assert (await client.get(f"{server.url}/a")).content == body
        assert (await client.get(f"{server.url}/b")).json() == {"ok": True}
        assert server.connections == 1


async def test_a_body_without_length_ends_when_the_server_closes() -> None:
    until_close = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it"
    async with (
        raw_serving(until_close, OK_JSON, closes=(True,)) as server,
        provider_client() as client,
    ):
        assert (await client.get(f"{server.url}/a")).text == "all of it"
        assert (await client.get(f"{server.url}/b")).json() == {"ok": True}
        assert server.connections == 2
        assert pool_of(client).idle_connections == 1


async def test_http_1_0_and_connection_close_answers_are_not_reused() -> None:
    old = b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"
    closing = b"HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 2\r\n\r\nok"
    async with raw_serving(old, closing, OK_JSON) as server, provider_client() as client:
        first = await client.get(f"{server.url}/a")
        assert (first.http_version, first.text) == ("HTTP/1.0", "ok")
        assert (await client.get(f"{server.url}/b")).text == "ok"
        assert (await client.get(f"{server.url}/c")).json() == {"ok": True}
        assert server.connections == 3


async def test_answers_without_a_body_keep_the_connection() -> None:
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n"
    async with raw_serving(no_content, head, OK_JSON) as server, provider_client() as client:
        assert (await client.delete(f"{server.url}/a")).status_code == 204
        response = await client.head(f"{server.url}/b")
        assert (response.status_code, response.content) == (200, b"")
        assert (await client.get(f"{server.url}/c")).json() == {"ok": True}
        assert server.connections == 1


async def test_informational_answers_are_skipped() -> None:
    early = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + OK_JSON
    async with raw_serving(early) as server, provider_client() as client:
        response = await client.post(f"{server.url}/a", content=b"x")
        assert (response.status_code, response.json()) == (200, {"ok": True})
        assert "link" not in response.headers


async def test_a_streamed_request_body_goes_chunked() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"first "
        yield b""
        yield b"second"

    async with raw_serving(OK_JSON, OK_JSON) as server, provider_client() as client:
        assert (await client.post(f"{server.url}/upload", content=parts())).status_code == 200
        assert (await client.get(f"{server.url}/after")).status_code == 200
        head, body = server.requests[0]
        assert b"Transfer-Encoding: chunked" in head
        assert body == b"first second"
        assert server.connections == 1


async def test_a_large_body_streams_and_an_unfinished_one_is_not_reused() -> None:
    big = bytes(range(256)) * 1024  # 256 KiB, over the size read at once
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(big), big)
    async with raw_serving(answer, answer, OK_JSON) as server, provider_client() as client:
        assert (await client.get(f"{server.url}/a")).content == big
        assert pool_of(client).idle_connections == 1
        async with client.stream("GET", f"{server.url}/b") as response:
            async for chunk in response.aiter_raw():
                assert chunk == big[: len(chunk)]
                break  # stop reading mid-body
        assert pool_of(client).idle_connections == 0
        assert (await client.get(f"{server.url}/c")).json() == {"ok": True}
        assert server.connections == 2


async def test_a_gzip_body_is_decoded() -> None:
    packed = gzip.compress(b'{"ok":true}')
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%b" % (
        len(packed),
        packed,
    )
    async with raw_serving(answer) as server, provider_client() as client:
        assert (await client.get(f"{server.url}/a")).json() == {"ok": True}


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/2 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0x2\r\nok\r\n0\r\n\r\n",
        # A chunk announced far larger than what comes: read in pieces, never allocated whole.
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffff\r\nshort",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-long: " + b"a" * 70_000 + b"\r\n\r\n",
        b"",
    ],
)
async def test_a_malformed_answer_is_a_protocol_error_and_frees_the_slot(answer: bytes) -> None:
    async with (
        raw_serving(answer, OK_JSON, closes=(True,)) as server,
        provider_client(max_connections=1) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{server.url}/bad")
        assert (await client.get(f"{server.url}/good")).json() == {"ok": True}


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Note": "a\r\nX-Injected: 1"},
        {"X-Note": "a\nb"},
        {"X-Note": "a\x00b"},
        {"X-Note: b\r\nX-Injected": "1"},
        {"X Note": "a"},
    ],
)
async def test_a_header_that_could_start_another_is_refused(headers: dict[str, str]) -> None:
    async with raw_serving(OK_JSON) as server, provider_client(max_connections=1) as client:
        with pytest.raises(httpx.LocalProtocolError):
            await client.get(f"{server.url}/a", headers=headers)
        assert server.requests == []
        assert (await client.get(f"{server.url}/b")).status_code == 200


async def test_a_slow_answer_is_a_read_timeout_and_its_connection_dropped() -> None:
    timeout = httpx.Timeout(5.0, read=0.05)
    async with (
        raw_serving(b"hold", OK_JSON) as server,
        provider_client(max_connections=1, timeout=timeout) as client,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{server.url}/slow")
        assert (await client.get(f"{server.url}/b")).json() == {"ok": True}
        assert server.connections == 2


async def test_an_idle_connection_past_its_expiry_is_replaced() -> None:
    async with raw_serving(OK_JSON) as server, provider_client(keepalive_expiry=0.05) as client:
        await client.get(f"{server.url}/a")
        await asyncio.sleep(0.1)
        await client.get(f"{server.url}/b")
        assert server.connections == 2


async def test_https_with_sni_and_certificate_checks() -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(FIXTURES / "localhost-cert.pem", FIXTURES / "localhost-key.pem")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK_JSON)
        await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = tcp.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=FIXTURES / "localhost-cert.pem")
    try:
        async with LeanPool(ssl_context=trusting) as pool:
            transport = httpx.AsyncHTTPTransport()
            transport._pool = pool  # type: ignore[assignment]
            async with httpx.AsyncClient(transport=transport) as client:
                response = await client.get(f"https://localhost:{port}/a")
                assert response.json() == {"ok": True}
        async with provider_client() as client:  # the system's CAs do not know this one
            with pytest.raises(httpx.ConnectError):
                await client.get(f"https://localhost:{port}/a")
    finally:
        tcp.close()
        await tcp.wait_closed()


# ----------------------------------------------------------------------------- LeanClient


async def test_lean_send_keeps_what_httpx_gives_a_response() -> None:
    cookie = b'HTTP/1.1 200 OK\r\nset-cookie: a=1\r\ncontent-length: 11\r\n\r\n{"ok":true}'
    async with raw_serving(cookie, OK_JSON) as server, provider_client() as client:
        assert isinstance(client, LeanClient)
        response = await client.post(f"{server.url}/a", json={})
        assert response.request.url == f"{server.url}/a"
        assert response.elapsed.total_seconds() > 0
        assert response.is_closed
        assert response.json() == {"ok": True}
        assert not client.cookies  # the providers' cookies are not kept
        await client.get(f"{server.url}/b")
        assert b"cookie" not in server.requests[1][0].lower()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get(f"{server.url}/c")


async def test_event_hooks_auth_and_redirects_take_httpx_s_own_path() -> None:
    redirect = b"HTTP/1.1 302 Found\r\nlocation: /there\r\ncontent-length: 0\r\n\r\n"
    seen: list[str] = []

    async def hook(response: httpx.Response) -> None:
        seen.append(str(response.url))

    async with raw_serving(redirect, OK_JSON, OK_JSON) as server, provider_client() as client:
        response = await client.get(f"{server.url}/here", follow_redirects=True)
        assert response.json() == {"ok": True}
        assert server.requests[1][0].startswith(b"GET /there ")
        client.event_hooks = {"response": [hook]}
        await client.get(f"{server.url}/hooked", auth=("user", "secret"))
        assert seen == [f"{server.url}/hooked"]
        assert b"Authorization: Basic " in server.requests[2][0]


def head_fields(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    line, *fields = head.rstrip(b"\r\n").split(b"\r\n")
    return line, {k.lower(): v.strip() for k, v in (f.split(b":", 1) for f in fields)}


async def test_a_json_post_goes_out_as_httpx_would_send_it() -> None:
    payload = {"to": "34600111222", "text": {"body": "Gràcies! ✓", "preview_url": False}}
    auth = {"Authorization": "Bearer EAAG-token", "Content-Type": "application/json; charset=utf-8"}
    async with raw_serving(OK_JSON) as server:
        async with httpx.AsyncClient() as plain:
            await plain.post(f"{server.url}/v21.0/1/messages", json=payload, headers=auth)
        async with provider_client() as client:
            # The lean path: httpx's general build_request is not used.
            client.build_request = None  # type: ignore[assignment,method-assign]
            url = httpx.URL(f"{server.url}/v21.0/1/messages")
            response = await client.post(url, json=payload, headers=auth)
            await client.post(str(url), json=payload, headers=auth)
    assert response.request.content == server.requests[1][1]
    assert response.request.extensions["timeout"] == client.timeout.as_dict()
    expected_line, expected = head_fields(server.requests[0][0])
    for head, body in server.requests[1:]:
        assert head_fields(head) == (expected_line, expected)
        assert body == server.requests[0][1]
        assert json.loads(body) == payload


async def test_other_requests_are_built_by_httpx() -> None:
    async with raw_serving(OK_JSON) as server, provider_client() as client:
        await client.post(f"{server.url}/a", json={"a": 1}, params={"q": "x y"})
        await client.post(f"{server.url}/b", data={"a": "1"}, timeout=3.0)
        client.params = httpx.QueryParams({"v": "1"})
        await client.post(f"{server.url}/c", json={"a": 1})
        client.params = httpx.QueryParams()
        client.base_url = httpx.URL(f"{server.url}/base/")
        await client.post("d", json={"a": 1}, headers={"X-Extra": "1"})
        heads = [head for head, _ in server.requests]
        assert heads[0].startswith(b"POST /a?q=x+y HTTP/1.1")
        assert b"Content-Type: application/x-www-form-urlencoded" in heads[1]
        assert heads[2].startswith(b"POST /c?v=1 HTTP/1.1")
        assert heads[3].startswith(b"POST /base/d HTTP/1.1")
        assert b"X-Extra: 1" in heads[3]


async def test_queued_requests_get_the_slot_in_turn_and_a_cancelled_one_loses_none() -> None:
    async with serving() as server, provider_client(max_connections=1) as client:
        held = asyncio.create_task(client.get(f"{server.url}/slow"))
        await asyncio.sleep(0.05)
        queued = [asyncio.create_task(client.get(f"{server.url}/send?n={i}")) for i in range(4)]
        await asyncio.sleep(0.05)
        queued[1].cancel()
        server.release.set()
        assert (await held).status_code == 200
        assert [r.status_code for r in await asyncio.gather(queued[0], *queued[2:])] == [200] * 3
        assert queued[1].cancelled()
        assert server.most_in_flight == 1
        # One slot, still there: two more in parallel each wait their turn and succeed.
        both = await asyncio.gather(client.get(f"{server.url}/a"), client.get(f"{server.url}/b"))
        assert [r.status_code for r in both] == [200, 200]
        assert server.connections == 1
