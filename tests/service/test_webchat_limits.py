"""The web chat's public reads (history, live stream) have a per-address limit of their own."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from service_fakes import Service
from starlette.applications import Starlette

from civicchat.channels.webchat import WebChatHub
from civicchat.service.webchat import READS_PER_MINUTE, webchat_routes
from civicchat.service.webchat.history import HistoryEntry
from civicchat.service.webhooks import WindowLimiter

VISITOR = "visitor_limits_0123456789"


class _NoHistory:
    async def messages(self, account: str, visitor: str, *, limit: int) -> list[HistoryEntry]:
        return []


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _client(app: Starlette, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://chat.test")


async def test_history_reads_over_the_limit_get_a_clear_429_per_address() -> None:
    clock = _Clock()
    limiter = WindowLimiter(3, 60.0, monotonic=clock)
    routes = webchat_routes(
        WebChatHub(), {"city-web": ""}, history=_NoHistory(), history_limiter=limiter
    )
    app = Starlette(routes=routes)
    path = f"/chat/city-web/history?visitor={VISITOR}"
    async with _client(app, "203.0.113.7") as one, _client(app, "198.51.100.9") as other:
        for _ in range(3):
            assert (await one.get(path)).status_code == 200
        refused = await one.get(path)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "60"
        assert "too many requests for the web chat history" in refused.text
        assert "at most 3 in 60 s" in refused.text
        # Another address is not held back by the first one.
        assert (await other.get(path)).status_code == 200
        # A minute later the first address may read again.
        clock.now += 60.5
        assert (await one.get(path)).status_code == 200


async def test_the_live_stream_has_its_own_limit_checked_before_anything_else() -> None:
    clock = _Clock()
    history = WindowLimiter(100, 60.0, monotonic=clock)
    events = WindowLimiter(2, 60.0, monotonic=clock)
    routes = webchat_routes(
        WebChatHub(),
        {"city-web": ""},
        history=_NoHistory(),
        history_limiter=history,
        events_limiter=events,
    )
    app = Starlette(routes=routes)
    async with _client(app, "203.0.113.7") as client:
        # Streams refused for a bad `since` still count: the limit comes first.
        bad = f"/chat/city-web/events?visitor={VISITOR}&since=yesterday"
        assert (await client.get(bad)).status_code == 400
        assert (await client.get(bad)).status_code == 400
        refused = await client.get(f"/chat/city-web/events?visitor={VISITOR}")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "60"
        assert "too many requests for the web chat live stream" in refused.text
        # The history is counted apart: still readable.
        assert (await client.get(f"/chat/city-web/history?visitor={VISITOR}")).status_code == 200
        # An unknown chat is a 404 and costs nothing.
        assert (await client.get(f"/chat/old-link/events?visitor={VISITOR}")).status_code == 404


async def test_the_default_limit_is_new_for_each_set_of_routes_and_each_read() -> None:
    app_a = Starlette(routes=webchat_routes(WebChatHub(), {"a": ""}, history=_NoHistory()))
    app_b = Starlette(routes=webchat_routes(WebChatHub(), {"a": ""}, history=_NoHistory()))
    path = f"/chat/a/history?visitor={VISITOR}"
    async with _client(app_a, "203.0.113.7") as a, _client(app_b, "203.0.113.7") as b:
        for _ in range(READS_PER_MINUTE):
            assert (await a.get(path)).status_code == 200
        assert (await a.get(path)).status_code == 429
        assert (await b.get(path)).status_code == 200  # another app, another limiter


async def test_a_citizen_who_wrote_up_to_the_message_limit_can_still_read_the_chat(
    service: Service,
) -> None:
    limit = service.state.config.server.webchat_messages_per_minute
    for n in range(limit):
        sent = await service.client.post(
            "/webhooks/webchat/mataro-web", json={"visitor": VISITOR, "id": f"m{n}", "text": "hola"}
        )
        assert sent.status_code == 200, sent.text
    over = await service.client.post(
        "/webhooks/webchat/mataro-web", json={"visitor": VISITOR, "id": "over", "text": "hola"}
    )
    assert over.status_code == 429  # the messages' limiter
    # The reads have their own: the page can still show the conversation.
    history = await service.client.get(f"/chat/mataro-web/history?visitor={VISITOR}")
    assert history.status_code == 200
    assert history.json()["messages"]


async def test_the_service_limits_history_reads_per_address(service: Service) -> None:
    path = f"/chat/mataro-web/history?visitor={VISITOR}"
    for _ in range(READS_PER_MINUTE):
        assert (await service.client.get(path)).status_code == 200
    refused = await service.client.get(path)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"
    assert "Traceback" not in refused.text


def test_the_limits_example_in_docs_channels_prints_what_it_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "channels.md"
    section = doc.read_text(encoding="utf-8").split("### Limits of the public reads", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.S)
    assert example is not None
    assert "history_limiter=WindowLimiter(2)" in example.group(1)
    exec(compile(example.group(1), str(doc), "exec"), {"__name__": "docs_webchat_limits"})
    assert capsys.readouterr().out.splitlines() == ["200 None", "200 None", "429 60"]
    assert "It prints `200 None`, `200 None`, then `429 60`." in section
