"""Admin: operators. A duplicate login is refused without freezing the store; disable and delete."""

from __future__ import annotations

import asyncio

import pytest
from console_helpers import World, forbid_nested_transactions, login_as

_NEW = {"name": "Jordi", "account": "city-a", "role": "operator", "capacity": "4"}


@pytest.mark.parametrize(
    ("lang", "words"), [("ca", "Ja hi ha"), ("es", "Ya hay"), ("en", "exists")]
)
async def test_a_duplicate_login_is_refused_and_the_store_keeps_working(
    world: World, lang: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    nested = forbid_nested_transactions(world.store, monkeypatch)
    async with world.client() as client:
        csrf = await login_as(client, "admin_a")
        client.cookies.set("cc_lang", lang)
        # Without the fix the page never comes back (a transaction inside another): fail, not hang.
        refused = await asyncio.wait_for(
            client.post("/admin/operators", data={**_NEW, "login": "op_a", "csrf_token": csrf}),
            timeout=10,
        )
        assert refused.status_code == 409
        assert words in refused.text
        assert "op_a" in refused.text
        # Every write still goes through afterwards.
        async with asyncio.timeout(10):
            async with world.store.transaction() as tx:
                await tx.operators.add_operator(
                    account="city-a", name="Anna", login="anna", password_hash="x"
                )
            created = await client.post(
                "/admin/operators", data={**_NEW, "login": "jordi", "csrf_token": csrf}
            )
    assert created.status_code == 200
    assert nested == []
    async with world.store.read_transaction() as tx:
        ops = await tx.operators.operators("city-a")
    assert sorted(o.login for o in ops if o.login in {"anna", "jordi", "op_a"}) == [
        "anna",
        "jordi",
        "op_a",
    ]
