"""A reloaded web chat page gets both sides of the conversation back, in order, once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from service_fakes import Service, wait_for
from sqlalchemy import func, select
from starlette.applications import Starlette

from civicchat.channels.webchat import WebChatHub
from civicchat.messages import DeliveryStatus
from civicchat.service.webchat import _stream, webchat_routes
from civicchat.service.webchat.history import HistoryEntry, history_json
from civicchat.storage.schema import ContactRow, OutboxRow

VISITOR = "visitor_history_0123456789"
HISTORY = f"/chat/mataro-web/history?visitor={VISITOR}"


async def say(service: Service, mid: str, text: str, visitor: str = VISITOR) -> None:
    response = await service.client.post(
        "/webhooks/webchat/mataro-web", json={"visitor": visitor, "id": mid, "text": text}
    )
    assert response.status_code == 200, response.text


async def history(service: Service, path: str = HISTORY) -> dict[str, Any]:
    response = await service.client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    data: dict[str, Any] = response.json()
    return data


async def answered(service: Service) -> dict[str, Any]:
    """The history once the last message is a reply and every reply is sent (workers run)."""

    async def done() -> dict[str, Any] | None:
        data = await history(service)
        last = data["messages"][-1] if data["messages"] else None
        if last is None or last["direction"] != "out" or not await _sent(service):
            return None
        return data

    # At most 60 reads in 15 s: the history's per-address limit (READS_PER_MINUTE) holds.
    found: dict[str, Any] = await wait_for(done, within=15.0, interval=0.25)
    return found


async def _both_sides_in_order(service: Service) -> None:
    await say(service, "m1", "horari bus")
    await answered(service)
    await say(service, "m2", "gràcies, i la deixalleria?")
    data = await answered(service)
    messages = data["messages"]
    directions = [m["direction"] for m in messages]
    assert directions[0] == "in"
    assert messages[0]["content"] == {"kind": "text", "body": "horari bus", "preview_url": False}
    assert messages[0]["id"] == f"{VISITOR}:m1"
    second = next(i for i, m in enumerate(messages) if m["id"] == f"{VISITOR}:m2")
    # The bus answer (a document above buttons) comes between the two questions.
    between = messages[1:second]
    assert between
    assert all(m["direction"] == "out" for m in between)
    assert any(
        m["content"]["kind"] == "buttons" and "Mataró Bus" in m["content"]["body"] for m in between
    )
    assert messages[second]["content"]["body"] == "gràcies, i la deixalleria?"
    assert messages[-1]["direction"] == "out"
    # Every reply shown carries the id of the live event that brought it.
    for m in messages:
        if m["direction"] == "out":
            assert m["id"], m
    times = [datetime.fromisoformat(m["at"]) for m in messages]
    assert times == sorted(times)
    assert set(data) == {"messages"}  # no time to listen from: the page skips by id


async def test_history_has_both_sides_in_order(service: Service) -> None:
    await _both_sides_in_order(service)


async def test_history_has_both_sides_in_order_on_postgres(pg_service: Service) -> None:
    await _both_sides_in_order(pg_service)


async def test_a_citizens_message_not_yet_handled_is_in_the_history(service: Service) -> None:
    await service.state.runtime.stop()  # no worker: the message waits in the inbox
    await say(service, "w1", "hi ha algú?")
    data = await history(service)
    assert [(m["direction"], m["content"]["body"]) for m in data["messages"]] == [
        ("in", "hi ha algú?")
    ]


async def test_history_is_the_visitors_own_and_reading_it_writes_nothing(service: Service) -> None:
    await say(service, "o1", "horari bus", visitor="another_visitor_0123456789")
    await wait_for(lambda: _sent(service), within=15.0)  # the other visitor's reply is out
    stranger = "never_wrote_here_0123456789"
    data = await history(service, f"/chat/mataro-web/history?visitor={stranger}")
    assert data == {"messages": []}
    mine = await history(service)
    assert mine == {"messages": []}
    async with service.state.store.engine.connect() as conn:
        contacts = await conn.scalar(select(func.count()).select_from(ContactRow))
    assert contacts == 1  # only the visitor who wrote; reading made no contact


async def _sent(service: Service) -> bool:
    async with service.state.store.engine.connect() as conn:
        statuses = list(await conn.scalars(select(OutboxRow.status)))
    return bool(statuses) and all(s == DeliveryStatus.SENT for s in statuses)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/chat/mataro-web/history?visitor=short", 400),
        ("/chat/mataro-web/history", 400),
        (f"/chat/old-link/history?visitor={VISITOR}", 404),
        (f"/chat/mataro-web/events?visitor={VISITOR}&since=yesterday", 400),
        (f"/chat/mataro-web/events?visitor={VISITOR}&since=2026-11-30T10:00:00", 400),
    ],
)
async def test_bad_history_and_since_requests_are_refused(
    service: Service, path: str, status: int
) -> None:
    response = await service.client.get(path)
    assert response.status_code == status
    assert "Traceback" not in response.text


async def test_without_a_database_the_page_is_told_there_is_no_history() -> None:
    app = Starlette(routes=webchat_routes(WebChatHub(), {"city-web": ""}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://chat.test") as client:
        response = await client.get(f"/chat/city-web/history?visitor={VISITOR}")
    assert response.status_code == 404


async def test_a_failing_history_is_a_503_not_a_crash() -> None:
    class Broken:
        async def messages(self, account: str, visitor: str, *, limit: int) -> list[HistoryEntry]:
            raise OSError("database down")

    app = Starlette(routes=webchat_routes(WebChatHub(), {"city-web": ""}, history=Broken()))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://chat.test") as client:
        response = await client.get(f"/chat/city-web/history?visitor={VISITOR}")
    assert response.status_code == 503


def test_the_history_gives_each_message_its_id_and_no_time_to_listen_from() -> None:
    t0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    entries = [
        HistoryEntry("in", t0, "v:1", {"kind": "text", "body": "a"}),
        HistoryEntry("out", t0 + timedelta(seconds=1), "e1", {"kind": "text", "body": "b"}),
        HistoryEntry("in", t0 + timedelta(seconds=5), "v:2", {"kind": "text", "body": "c"}),
    ]
    data = history_json(entries)
    assert set(data) == {"messages"}
    assert [m["id"] for m in data["messages"]] == ["v:1", "e1", "v:2"]


class _Request:
    async def is_disconnected(self) -> bool:
        return False


async def test_the_live_stream_filters_nothing_by_time_even_with_since() -> None:
    # A reply published before another one was marked sent (a parallel send path): its event
    # time is before the history's newest "sent" time, yet the page never showed it.
    hub = WebChatHub()
    t0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    for n, offset in enumerate((0, 1, 2)):
        stamp = (t0 + timedelta(seconds=offset)).isoformat()
        hub.publish("city-web", VISITOR, {"id": f"e{n}", "timestamp": stamp, "content": {}})
    stream = _stream(hub, "city-web", VISITOR, None, _Request())  # type: ignore[arg-type]
    try:
        assert await anext(stream) == b"retry: 2000\n\n"
        got = [json.loads((await anext(stream)).decode().split("data: ", 1)[1]) for _ in "012"]
    finally:
        await stream.aclose()
    assert [e["id"] for e in got] == ["e0", "e1", "e2"]
