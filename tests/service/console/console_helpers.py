"""Helpers of the console tests: a console over a real SQLite store in a temporary file, mounted in a bare Starlette app.

Two cities: accounts ``wa-a`` (WhatsApp) and ``web-a`` (web chat) share the operators of group
``city-a``; account ``tg-b`` (Telegram) belongs to another city. Each test gets fresh files.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from civicchat.clock import ManualClock
from civicchat.messages import InboundContent, InboundMessage, Sender, Text
from civicchat.service.console import (
    ConsoleContext,
)
from civicchat.service.live import InProcessLiveBus
from civicchat.storage.base import Conversation, Operator, Presence
from civicchat.storage.sql import SqlStore

ROOT = Path(__file__).resolve().parents[3]
MATARO = ROOT / "examples" / "mataro"
PASSWORD = "correct horse battery"
SECRET = "test-secret-key-that-is-long-enough-0123456789"
# Tuesday 10:00 in Madrid: the office is open.
START = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


class MemoryBlobs:
    """A BlobStore in a dict."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        self.data[key] = data

    async def get(self, key: str) -> bytes:
        return self.data[key]

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)

    async def exists(self, key: str) -> bool:
        return key in self.data


@dataclass
class World:
    store: SqlStore
    clock: ManualClock
    live: InProcessLiveBus
    blobs: MemoryBlobs
    ctx: ConsoleContext
    app: Starlette
    catalog_path: Path
    hours_path: Path
    ops: dict[str, Operator]
    _n: int = 0

    async def set_presence(self, key: str, presence: Presence) -> Operator:
        """Set operator ``key``'s presence in the store (as their console would)."""
        async with self.store.transaction() as tx:
            op = await tx.operators.get_operator(self.ops[key].id)
            assert op is not None
            op = dataclasses.replace(op, presence=presence)
            await tx.operators.save_operator(op)
        self.ops[key] = op
        return op

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=("203.0.113.7", 5000)),
            base_url="https://console.test",
        )

    async def conversation(
        self,
        account: str = "wa-a",
        *,
        state: str = "queued",
        assigned: Operator | None = None,
        content: InboundContent | None = None,
        name: str = "Maria",
        sender: str | None = None,
    ) -> Conversation:
        """A conversation whose citizen wrote one message (stored as the inbox does it)."""
        self._n += 1
        channel = self.ctx.accounts[account].channel
        sender_id = sender or f"3460000{self._n:04d}"
        msg = InboundMessage(
            channel=channel,
            account=account,
            provider_message_id=f"wamid.{self._n}",
            sender=Sender(id=sender_id, name=name),
            timestamp=self.clock.now(),
            content=content or Text(body="hi ha un forat al carrer"),
        )
        await self.store.accept([msg])
        event = await self.store.claim_event("test", lease_seconds=30)
        assert event is not None
        async with self.store.transaction() as tx:
            contact = await tx.contacts.identify(channel, account, sender_id, name=name)
            conv = await tx.conversations.create(
                channel=channel,
                account=account,
                contact_id=contact.id,
                recipient_id=sender_id,
                state="bot",
            )
            conv = Conversation(
                **{
                    **{f: getattr(conv, f) for f in conv.__dataclass_fields__},
                    "state": state,
                    "queued_at": self.clock.now() if state in ("queued", "assigned") else None,
                    "last_inbound_at": self.clock.now(),
                    "assigned_operator": assigned.id if assigned else None,
                    "language": "ca",
                }
            )
            await tx.conversations.save(conv)
            if assigned is not None:
                await tx.assignments.assign(conv.id, assigned.id, self.clock.now())
            await tx.complete_event(event.id, "test", conversation_id=conv.id)
        return conv


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


def form_token(html: str) -> str:
    found = _CSRF.search(html) or _META.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def login(client: httpx.AsyncClient, user: str, password: str = PASSWORD) -> httpx.Response:
    client.cookies.clear()  # start from no session (a logged-in /login redirects)
    page = await client.get("/login")
    return await client.post(
        "/login",
        data={"login": user, "password": password, "csrf_token": form_token(page.text)},
    )


async def login_as(client: httpx.AsyncClient, user: str) -> str:
    """Log ``client`` in as ``user``; returns the session's CSRF token."""
    response = await login(client, user)
    assert response.status_code == 303, response.text
    page = await client.get("/console")
    assert page.status_code == 200
    return form_token(page.text)


def forbid_nested_transactions(store: SqlStore, monkeypatch: Any) -> list[str]:
    """Make any transaction opened inside another one (in the same task) raise.

    The console must never do that: on SQLite a write transaction waits for the store's write
    lock, which the outer one holds, for ever. Returns the list of offenders found (also raised).
    """
    depth: contextvars.ContextVar[int] = contextvars.ContextVar("tx_depth", default=0)
    found: list[str] = []

    def wrap(name: str) -> None:
        original = getattr(store, name)

        @contextlib.asynccontextmanager
        async def guarded() -> AsyncIterator[Any]:
            if depth.get():
                found.append(name)
                raise RuntimeError(f"{name}() opened inside another transaction")
            token = depth.set(depth.get() + 1)
            try:
                async with original() as tx:
                    yield tx
            finally:
                depth.reset(token)

        monkeypatch.setattr(store, name, guarded)

    wrap("transaction")
    wrap("read_transaction")
    return found
