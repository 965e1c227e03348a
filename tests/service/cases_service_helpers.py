"""Helpers for the service's cases tests: a service with the Mataró cases, and its outbox."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from service_fakes import (
    MATARO,
    FakeProviders,
    running,
    signed_headers,
    start_service,
    wa_message,
    wait_for,
)
from sqlalchemy import select

from civicchat.cases.open311 import Open311Client
from civicchat.service.app import ServiceState
from civicchat.service.cases_worker import Open311Worker
from civicchat.storage.base import EventState
from civicchat.storage.schema import OutboxRow

TS = int(datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp())  # 10:00 in Mataró, a Monday
CASES_EXTRA = f'cases: {{config: "{MATARO / "cases.yaml"}"}}'
VISITOR = "visitor_0123456789abcdef"


FIXED_CLOCK = "fixed: 2026-11-30T10:00:00+01:00"


def georeport_fake() -> Any:
    """``tests/cases/georeport_fake.py`` (the fake GeoReport v2 server), loaded by path."""
    if "georeport_fake" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "cases" / "georeport_fake.py"
        spec = importlib.util.spec_from_file_location("georeport_fake", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["georeport_fake"] = module
        spec.loader.exec_module(module)
    return sys.modules["georeport_fake"]


@dataclass
class CaseService:
    app: Any
    state: ServiceState
    client: httpx.AsyncClient
    fake: FakeProviders
    seen: int = 0  # outbox rows already read by replies()

    async def settle(self) -> None:
        """Wait until every accepted event is handled."""

        async def done() -> bool:
            counts = await self.state.store.state_counts()
            return counts[EventState.PENDING] + counts[EventState.PROCESSING] == 0

        await wait_for(done)

    async def web(self, n: int, **body: Any) -> list[str]:
        """The visitor sends one web chat message; the bot's new replies as text."""
        response = await self.client.post(
            "/webhooks/webchat/mataro-web", json={"visitor": VISITOR, "id": f"m{n}", **body}
        )
        assert response.status_code == 200, response.text
        await self.settle()
        return await self.replies()

    async def whatsapp(self, n: int, kind: str, body: dict[str, Any]) -> list[str]:
        raw = wa_message(f"wamid.case{n}", kind, body, ts=TS + n)
        response = await self.client.post(
            "/webhooks/whatsapp/mataro-wa", content=raw, headers=signed_headers(raw)
        )
        assert response.status_code == 200, response.text
        await self.settle()
        return await self.replies()

    async def outbox(self) -> list[dict[str, Any]]:
        async with self.state.store.engine.connect() as conn:
            rows = (await conn.execute(select(OutboxRow).order_by(OutboxRow.id))).all()
        return [{"key": r.key, "recipient": r.recipient_id, **json.loads(r.payload)} for r in rows]

    async def replies(self) -> list[str]:
        """Texts of the outbox rows written since the last call (menus: text + options)."""
        rows = await self.outbox()
        new, self.seen = rows[self.seen :], len(rows)
        return [describe(row["content"]) for row in new]


def describe(content: dict[str, Any]) -> str:
    parts = [str(content.get("body") or content.get("text") or content.get("name") or "")]
    for button in content.get("buttons") or ():
        parts.append(f"[{button.get('title')}]")
    for section in content.get("sections") or ():
        for row in section.get("rows") or ():
            parts.append(f"[{row.get('title')}]")
    return " ".join(p for p in parts if p)


def open311_worker(svc: CaseService, http: httpx.AsyncClient) -> Open311Worker:
    """A worker for the service's cases that talks to the fake GeoReport server over ``http``."""
    fake = georeport_fake()
    return Open311Worker(
        svc.state.runtime.cases, Open311Client(http, fake.BASE, api_key=fake.API_KEY)
    )


@asynccontextmanager
async def case_service(
    tmp_path: Path,
    *,
    extra: str = CASES_EXTRA,
    clock: str | None = None,
    database: str | None = None,
) -> AsyncIterator[CaseService]:
    kwargs: dict[str, Any] = {"database": database}
    if clock is not None:
        kwargs["clock"] = clock
    app, fake, provider, _path = await start_service(tmp_path, extra=extra, **kwargs)
    try:
        async with running(app):
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                yield CaseService(app, app.state.civicchat, client, fake)
    finally:
        await provider.aclose()
