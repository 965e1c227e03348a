"""A fake Graph API and Bot API (one Starlette app that records requests), payload builders and
a test configuration. Used in-process (httpx.ASGITransport) by tests/service and over a real
socket (uvicorn in a thread) by tests/e2e."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from civicchat.channels.whatsapp import sign
from civicchat.service.app import ServiceState, create_app
from civicchat.service.config import load_config

REPO = Path(__file__).resolve().parents[2]
MATARO = REPO / "examples" / "mataro"

WA_NUMBER_ID = "100000000000001"
WA_SECRET = "test-app-secret"
WA_TOKEN = "test-access-token"
WA_VERIFY = "test-verify-token"
TG_TOKEN = "123456:test-bot-token"
TG_SECRET = "test_secret_token"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(200))


@dataclass
class Recorded:
    method: str
    path: str
    json: Any


@dataclass
class FakeProviders:
    """Records every request; answers like the Graph API and the Bot API."""

    requests: list[Recorded] = field(default_factory=list)
    counter: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self, kind: str = "whatsapp") -> list[Any]:
        """Bodies of the message sends so far (``whatsapp`` or ``telegram``)."""
        with self.lock:
            items = list(self.requests)
        if kind == "whatsapp":
            return [r.json for r in items if r.path.endswith("/messages") and r.method == "POST"]
        return [r.json for r in items if "/sendMessage" in r.path]

    def texts(self, kind: str = "whatsapp") -> list[str]:
        out = []
        for body in self.sent(kind):
            if kind == "whatsapp":
                if body.get("type") == "text":
                    out.append(body["text"]["body"])
                elif body.get("type") == "template":
                    out.append(f"<template {body['template']['name']}>")
                elif body.get("type") == "interactive":
                    out.append(body["interactive"]["body"]["text"])
            else:
                out.append(body.get("text", ""))
        return out

    def app(self) -> Starlette:
        async def wa_messages(request: Request) -> Response:
            body = await request.json()
            with self.lock:
                self.requests.append(Recorded("POST", request.url.path, body))
                self.counter += 1
                n = self.counter
            return JSONResponse(
                {"messaging_product": "whatsapp", "messages": [{"id": f"wamid.out.{n}"}]}
            )

        async def wa_media_info(request: Request) -> Response:
            media_id = request.path_params["media_id"]
            with self.lock:
                self.requests.append(Recorded("GET", request.url.path, None))
            base = str(request.base_url).rstrip("/")
            return JSONResponse(
                {
                    "url": f"{base}/download/{media_id}",
                    "mime_type": "image/jpeg",
                    "file_size": len(JPEG),
                    "id": media_id,
                    "messaging_product": "whatsapp",
                }
            )

        async def wa_download(request: Request) -> Response:
            with self.lock:
                self.requests.append(Recorded("GET", request.url.path, None))
            return Response(JPEG, media_type="image/jpeg")

        async def telegram(request: Request) -> Response:
            body = await request.json() if request.method == "POST" else None
            with self.lock:
                self.requests.append(Recorded(request.method, request.url.path, body))
                self.counter += 1
                n = self.counter
            chat = (body or {}).get("chat_id", 1)
            return JSONResponse(
                {"ok": True, "result": {"message_id": n, "chat": {"id": chat}, "date": 1}}
            )

        return Starlette(
            routes=[
                Route("/{version}/{number}/messages", wa_messages, methods=["POST"]),
                Route("/download/{media_id}", wa_download, methods=["GET"]),
                Route("/bot{token}/{method}", telegram, methods=["GET", "POST"]),
                Route("/{version}/{media_id:int}", wa_media_info, methods=["GET"]),
            ]
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(app: Any, port: int) -> Iterator[str]:
    """Run ``app`` on uvicorn in a thread; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("fake provider server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


def write_config(
    directory: Path,
    *,
    provider_base: str,
    clock: str | None = "start: 2026-11-30T10:00:00+01:00",
    database: str | None = None,
    extra: str = "",
) -> Path:
    """A service configuration with the three Mataró accounts and the given fake provider."""
    db = database or f"sqlite+aiosqlite:///{directory / 'test.db'}"
    clock_yaml = f"clock: {{{clock}}}" if clock else ""
    text = f"""
database_url: "{db}"
secret_key: "{"k" * 40}"
demo_operators: false
{clock_yaml}
workers: {{idle_seconds: 0.02}}
media: {{directory: "{directory / "media"}"}}
{extra}
accounts:
  - name: mataro-wa
    channel: whatsapp
    group: mataro
    catalog: {MATARO / "catalog.yaml"}
    office_hours: {MATARO / "hours.yaml"}
    templates: {MATARO / "templates.yaml"}
    whatsapp:
      phone_number_id: "{WA_NUMBER_ID}"
      access_token: "${{TEST_WA_TOKEN:-{WA_TOKEN}}}"
      app_secret: "{WA_SECRET}"
      verify_token: "{WA_VERIFY}"
      api_base_url: "{provider_base}"
  - name: mataro-tg
    channel: telegram
    group: mataro
    catalog: {MATARO / "catalog.yaml"}
    office_hours: {MATARO / "hours.yaml"}
    templates: {MATARO / "templates.yaml"}
    telegram:
      bot_token: "{TG_TOKEN}"
      secret_token: "{TG_SECRET}"
      api_base_url: "{provider_base}"
  - name: mataro-web
    channel: webchat
    group: mataro
    catalog: {MATARO / "catalog.yaml"}
    office_hours: {MATARO / "hours.yaml"}
    templates: {MATARO / "templates.yaml"}
"""
    path = directory / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def wa_envelope(value: dict[str, Any]) -> bytes:
    payload = {
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
                                "phone_number_id": WA_NUMBER_ID,
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload).encode()


def wa_message(
    message_id: str, kind: str, body: dict[str, Any], *, sender: str = "34600111222", ts: int
) -> bytes:
    return wa_envelope(
        {
            "contacts": [{"profile": {"name": "Núria"}, "wa_id": sender}],
            "messages": [
                {"from": sender, "id": message_id, "timestamp": str(ts), "type": kind, kind: body}
            ],
        }
    )


def wa_text(message_id: str, text: str, *, ts: int, sender: str = "34600111222") -> bytes:
    return wa_message(message_id, "text", {"body": text}, ts=ts, sender=sender)


def wa_status(provider_id: str, status: str, *, ts: int, recipient: str = "34600111222") -> bytes:
    return wa_envelope(
        {
            "statuses": [
                {
                    "id": provider_id,
                    "status": status,
                    "timestamp": str(ts),
                    "recipient_id": recipient,
                }
            ]
        }
    )


def signed_headers(body: bytes, secret: str = WA_SECRET) -> dict[str, str]:
    return {"content-type": "application/json", "x-hub-signature-256": sign(body, secret)}


async def wait_for(predicate: Any, within: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async or plain ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[Any]:
    """Run the app's lifespan around the block."""
    async with app.router.lifespan_context(app):
        yield app


@dataclass
class Service:
    app: Any
    state: ServiceState
    client: httpx.AsyncClient
    fake: FakeProviders
    config_path: Path


async def start_service(
    tmp_path: Path, *, clock: str | None = "start: 2026-11-30T10:00:00+01:00", **kwargs: Any
) -> Any:
    fake = FakeProviders()
    provider = httpx.AsyncClient(transport=httpx.ASGITransport(fake.app()), base_url="http://fake")
    path = write_config(tmp_path, provider_base="http://fake", clock=clock, **kwargs)
    app = create_app(load_config(path, env={}), client=provider, announce=lambda _l: None)
    return app, fake, provider, path
