"""provider_client / LeanPool: the pool the service sends to the providers with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from civicchat.channels._http import LeanPool, provider_client


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
    tcp = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.release.set()
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
