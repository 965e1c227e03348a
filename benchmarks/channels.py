"""Two channel benchmarks, each against a baseline measured in the same run.

Run: ``.venv/bin/python benchmarks/channels.py [webhook|send]`` (both by default).

``webhook``: verify and parse a WhatsApp webhook, against a plain ``json.loads`` of the same
bytes; also the HMAC check alone, to show where the time goes.

``send``: CPU per ``WhatsAppChannel.send`` of a text to a local fake Graph API (a separate
process, so only the sender's CPU is counted), 16 sends in flight as the outbox fires them, for:
a plain ``httpx.AsyncClient`` (the peer), the previous ``provider_client`` (httpx's whole client,
httpcore's h11 connections under ``LeanPool``: its ``_http.py`` loaded from git at
:data:`PREVIOUS`) and today's ``provider_client``. The channel code is today's for all three.

Each side runs several rounds, interleaved; the best round of each is kept and the ratios
printed (absolute figures move ±30 % on shared machines, ratios far less).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx

from civicchat.channels import _http
from civicchat.channels.base import WebhookRequest
from civicchat.channels.whatsapp import WhatsAppAccount, WhatsAppChannel, sign
from civicchat.messages import OutboundMessage, Text

ACCOUNT = WhatsAppAccount(
    name="mataro",
    phone_number_id="100000000000001",
    access_token="token",
    app_secret="app-secret",
    verify_token="verify",
)


def payload(count: int) -> bytes:
    messages = [
        {
            "from": f"346001{i:05d}",
            "id": f"wamid.HBgLMzQ2MDAxMTEyMjIVAgASGBQzQTAw{i:010d}",
            "timestamp": "1774620000",
            "type": "text",
            "text": {"body": f"Bon dia, voldria saber l'horari de la deixalleria ({i})"},
        }
        for i in range(count)
    ]
    contacts = [{"profile": {"name": f"Veí {i}"}, "wa_id": f"346001{i:05d}"} for i in range(count)]
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "300000000000001",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "34937000010",
                                "phone_number_id": ACCOUNT.phone_number_id,
                            },
                            "contacts": contacts,
                            "messages": messages,
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(body, ensure_ascii=False).encode()


def best_per_call(func: Callable[[], object], budget: float = 1.5, rounds: int = 5) -> float:
    """Best seconds per call over ``rounds`` rounds that together take about ``budget`` s."""
    calls = 1
    while True:  # calibrate: one round of about budget / rounds seconds
        start = time.perf_counter()
        for _ in range(calls):
            func()
        elapsed = time.perf_counter() - start
        if elapsed >= budget / rounds / 4:
            break
        calls *= 2
    calls = max(1, int(calls * (budget / rounds) / max(elapsed, 1e-9)))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            func()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def webhook() -> None:
    channel = WhatsAppChannel([ACCOUNT], client=httpx.AsyncClient())
    secret = ACCOUNT.app_secret.encode()
    print(f"{'messages':>8} {'json.loads':>12} {'hmac only':>12} {'civicchat':>12} {'ratio':>7}")
    for count in (1, 100):
        body = payload(count)
        request = WebhookRequest(
            method="POST",
            headers={"X-Hub-Signature-256": sign(body, ACCOUNT.app_secret)},
            body=body,
        )
        assert len(channel.handle_webhook(request).events) == count

        def baseline(body: bytes = body) -> object:
            return json.loads(body)

        def mac(body: bytes = body) -> object:
            return hmac.new(secret, body, hashlib.sha256).hexdigest()

        def ours(request: WebhookRequest = request) -> object:
            return channel.handle_webhook(request)

        plain = best_per_call(baseline)
        signing = best_per_call(mac)
        parsed = best_per_call(ours)
        print(
            f"{count:>8} {plain * 1e6:>10.1f}µs {signing * 1e6:>10.1f}µs "
            f"{parsed * 1e6:>10.1f}µs {parsed / plain:>6.1f}x"
        )
    print("ratio = civicchat verify+parse time / json.loads time of the same bytes")


# ----------------------------------------------------------------------------- send

FAKE_GRAPH = r"""
import asyncio, sys
BODY = (b'{"messaging_product":"whatsapp","contacts":[{"input":"34600111222",'
        b'"wa_id":"34600111222"}],"messages":[{"id":"wamid.HBgLMzQ2MDAxMTEyMjIVAgARGBI5"}]}')
ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=UTF-8\r\n"
          b"date: Sat, 28 Nov 2026 12:00:00 GMT\r\nx-fb-trace-id: AbCdEfGh123\r\n"
          b"content-length: %d\r\n\r\n" % len(BODY) + BODY)

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            writer.write(ANSWER)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.to_thread(sys.stdin.read)

asyncio.run(main())
"""

PREVIOUS = "6133732"
"""The commit whose ``_http.py`` is "the previous provider_client" (before the lean sends)."""


def previous_provider_client() -> httpx.AsyncClient:
    """``provider_client`` as it was at :data:`PREVIOUS`, loaded from git."""
    source = subprocess.run(
        ["git", "show", f"{PREVIOUS}:src/civicchat/channels/_http.py"],
        capture_output=True,
        check=True,
        cwd=Path(__file__).parent,
    ).stdout
    module = types.ModuleType("civicchat.channels._http_previous")
    exec(compile(source, "_http_previous.py", "exec"), module.__dict__)
    client: httpx.AsyncClient = module.provider_client()
    return client


IN_FLIGHT = (1, 16)
"""Sends at once: one alone, and 16 as when the outbox fires a claimed batch."""
SENDS = 2000


async def cpu_per_send(channel: WhatsAppChannel, message: OutboundMessage, in_flight: int) -> float:
    """CPU seconds of this process per send, ``SENDS`` sends with ``in_flight`` at once."""
    recent = datetime.now(UTC)
    queue = iter(range(SENDS))

    async def sender() -> None:
        for _ in queue:
            await channel.send(message, last_inbound_at=recent)

    start = time.process_time()
    await asyncio.gather(*(sender() for _ in range(in_flight)))
    return (time.process_time() - start) / SENDS


async def send_rounds(port: int, rounds: int = 5) -> dict[tuple[int, str], float]:
    account = WhatsAppAccount(
        name="mataro",
        phone_number_id="100000000000001",
        access_token="EAAG" + "x" * 200,
        app_secret="app-secret",
        verify_token="verify",
        api_base_url=f"http://127.0.0.1:{port}",
        messages_per_second=1000,
    )
    message = OutboundMessage(
        channel="whatsapp",
        account="mataro",
        recipient_id="34600111222",
        content=Text(body="La incidència 2026-0042 s'ha registrat. Gràcies per avisar!"),
    )
    makers: dict[str, Callable[[], httpx.AsyncClient]] = {
        "plain httpx.AsyncClient": lambda: httpx.AsyncClient(timeout=_http.PROVIDER_TIMEOUT),
        "previous provider_client": previous_provider_client,
        "provider_client": _http.provider_client,
    }
    clients = {name: make() for name, make in makers.items()}
    channels = {name: WhatsAppChannel([account], client=c) for name, c in clients.items()}
    best = {(n, name): float("inf") for n in IN_FLIGHT for name in clients}
    try:
        for channel in channels.values():  # warm up: connections open, code paths hot
            await cpu_per_send(channel, message, max(IN_FLIGHT))
        for _ in range(rounds):
            for n, name in best:
                seconds = await cpu_per_send(channels[name], message, n)
                best[n, name] = min(best[n, name], seconds)
    finally:
        for c in clients.values():
            await c.aclose()
    return best


def send() -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", FAKE_GRAPH], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        best = asyncio.run(send_rounds(port))
    finally:
        server.kill()
        server.wait()
    print(f"WhatsAppChannel.send of a text, CPU of the sender, best of 5 x {SENDS} sends")
    print(f"{'in flight':>9} {'client':<26} {'CPU/send':>10} {'vs plain':>9} {'vs previous':>12}")
    for (n, name), seconds in best.items():
        peer = best[n, "plain httpx.AsyncClient"]
        previous = best[n, "previous provider_client"]
        print(
            f"{n:>9} {name:<26} {seconds * 1e3:>8.3f}ms {seconds / peer:>8.2f}x "
            f"{seconds / previous:>11.2f}x"
        )
    print("ratio = CPU per send / the same of the plain client (or of the previous one)")


def main(which: Sequence[str]) -> None:
    if not which or "webhook" in which:
        webhook()
    if not which or "send" in which:
        send()


if __name__ == "__main__":
    main(sys.argv[1:])
