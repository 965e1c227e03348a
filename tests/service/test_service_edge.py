from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from service_fakes import running, signed_headers, start_service, wa_text

from civicchat.service.webhooks import WindowLimiter

TS = int(datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp())


def test_window_limiter_counts_per_key_and_forgets_old_hits():
    now = [0.0]
    limiter = WindowLimiter(2, 60, max_keys=2, monotonic=lambda: now[0])
    assert limiter.allow("a")
    assert limiter.allow("a")
    assert not limiter.allow("a")
    assert limiter.allow("b")
    now[0] = 61.0
    assert limiter.allow("a")


async def test_web_chat_refuses_a_flood_from_one_address(tmp_path: Path):
    app, _fake, provider, _ = await start_service(
        tmp_path, extra="server: {webchat_messages_per_minute: 3}"
    )
    transport = httpx.ASGITransport(app)
    async with running(app), httpx.AsyncClient(transport=transport, base_url="http://s") as c:
        codes = []
        for n in range(5):
            r = await c.post(
                "/webhooks/webchat/mataro-web",
                json={"visitor": "visitor_0123456789abcdef", "id": f"m{n}", "text": "hola"},
            )
            codes.append(r.status_code)
        assert codes == [200, 200, 200, 429, 429]
        counts = await app.state.civicchat.store.state_counts()
        assert sum(counts.values()) == 3
    await provider.aclose()


async def test_concurrent_webhooks_share_commits_and_all_are_stored(tmp_path: Path):
    app, _fake, provider, _ = await start_service(tmp_path)
    state = app.state.civicchat
    commits = 0
    accept = state.store.accept

    async def counting_accept(events):
        nonlocal commits
        commits += 1
        await asyncio.sleep(0.01)  # a slow disk: later webhooks pile up behind this commit
        return await accept(events)

    state.store.accept = counting_accept
    transport = httpx.ASGITransport(app)
    async with running(app), httpx.AsyncClient(transport=transport, base_url="http://s") as c:
        bodies = [
            wa_text(f"wamid.g{n}", "horari bus", ts=TS, sender=f"3461{n:07d}") for n in range(40)
        ]
        responses = await asyncio.gather(
            *(
                c.post("/webhooks/whatsapp/mataro-wa", content=b, headers=signed_headers(b))
                for b in bodies
            )
        )
        assert [r.status_code for r in responses] == [200] * 40
        assert commits < 40
        counts = await state.store.state_counts()
        assert sum(counts.values()) == 40
    await provider.aclose()


async def test_a_failed_commit_answers_503_so_the_provider_retries(tmp_path: Path):
    from civicchat.exceptions import StorageError

    app, _fake, provider, _ = await start_service(tmp_path)
    state = app.state.civicchat

    async def broken(_events):
        raise StorageError("disk full")

    transport = httpx.ASGITransport(app)
    async with running(app), httpx.AsyncClient(transport=transport, base_url="http://s") as c:
        state.store.accept = broken
        body = wa_text("wamid.broken", "hola", ts=TS)
        r = await c.post("/webhooks/whatsapp/mataro-wa", content=body, headers=signed_headers(body))
        assert r.status_code == 503
    await provider.aclose()


async def test_a_failed_group_commit_logs_one_error_not_one_per_webhook(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    from civicchat.exceptions import StorageError

    app, _fake, provider, _ = await start_service(tmp_path)
    state = app.state.civicchat
    commits = 0

    async def broken(_events):
        nonlocal commits
        commits += 1
        await asyncio.sleep(0.05)  # the others queue up behind it and share the next commit
        raise StorageError("disk full")

    transport = httpx.ASGITransport(app)
    async with running(app), httpx.AsyncClient(transport=transport, base_url="http://s") as c:
        state.store.accept = broken
        bodies = [
            wa_text(f"wamid.broken{i}", "hola", ts=TS, sender=f"3460000{i:04d}") for i in range(8)
        ]
        caplog.set_level("ERROR", logger="civicchat")
        answers = await asyncio.gather(
            *(
                c.post("/webhooks/whatsapp/mataro-wa", content=b, headers=signed_headers(b))
                for b in bodies
            )
        )
        assert [r.status_code for r in answers] == [503] * 8
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert 1 <= commits < 8
    assert len(errors) == commits
    await provider.aclose()
