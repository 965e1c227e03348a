"""Presence: signs of life from the console keep it; transfers only to someone who can answer."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from console_helpers import World, forbid_nested_transactions, login_as

from civicchat.service.console.views import ConsoleViews
from civicchat.service.console.web import SEEN_EVERY, Console
from civicchat.storage.assignment_sql import assignment_queries
from civicchat.storage.base import Presence


async def _seen(world: World, key: str) -> datetime | None:
    async with world.store.read_transaction() as tx:
        found = await assignment_queries(tx).operator_status([world.ops[key].id])
    status = found.get(world.ops[key].id)
    return None if status is None else status.seen_at


async def test_login_and_pages_record_a_sign_of_life_at_most_once_a_minute(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    nested = forbid_nested_transactions(world.store, monkeypatch)
    start = world.clock.now()
    async with world.client() as client:
        await login_as(client, "op_a")
        assert await _seen(world, "op_a") == start
        world.clock.advance(SEEN_EVERY - timedelta(seconds=1))
        await client.get("/console")
        assert await _seen(world, "op_a") == start  # not written on every request
        world.clock.advance(timedelta(seconds=1))
        await client.get("/console")
        assert await _seen(world, "op_a") == start + SEEN_EVERY
    assert nested == []


async def test_an_open_live_stream_keeps_the_operators_presence(world: World) -> None:
    views = ConsoleViews(Console(world.ctx))
    op = world.ops["op_a"]
    stream = views.stream(frozenset({"wa-a"}), heartbeat=0.01, max_seconds=5, operator_id=op.id)
    assert (await anext(stream)).startswith("retry:")
    assert await _seen(world, "op_a") is None  # the page's own request recorded it
    world.clock.advance(SEEN_EVERY)
    assert await anext(stream) == ": ping\n\n"
    assert await _seen(world, "op_a") == world.clock.now()
    await stream.aclose()  # type: ignore[attr-defined]


async def test_transfer_to_an_offline_colleague_is_refused_and_not_offered(
    world: World,
) -> None:
    conv = await world.conversation("wa-a")
    base = f"/console/conversations/{conv.id}"
    colleague = world.ops["op2_a"]  # never logged in: offline
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        await client.post(f"{base}/take", data={"csrf_token": csrf})
        page = (await client.get(base)).text
        refused = await client.post(
            f"{base}/transfer", data={"csrf_token": csrf, "to": str(colleague.id)}
        )
        client.cookies.set("cc_lang", "es")
        refused_es = await client.post(
            f"{base}/transfer", data={"csrf_token": csrf, "to": str(colleague.id)}
        )
        await world.set_presence("op2_a", Presence.AWAY)  # on a break: they will see it
        offered = (await client.get(base)).text
    assert f'<option value="{colleague.id}">' not in page
    assert refused.status_code == 409
    assert "desconnectat" in refused.text
    assert "desconectado" in refused_es.text
    assert f'<option value="{colleague.id}">' in offered
    async with world.store.read_transaction() as tx:
        still = await tx.conversations.get(conv.id)
    assert still is not None
    assert still.assigned_operator == world.ops["op_a"].id
