"""Admin: operators. A duplicate login is refused without freezing the store; disable and delete."""

from __future__ import annotations

import asyncio
import re

import pytest
from argon2 import PasswordHasher
from console_helpers import PASSWORD, World, forbid_nested_transactions, login, login_as

from civicchat.service.console import auth
from civicchat.storage.assignment_sql import OperatorStatus, assignment_queries
from civicchat.storage.base import Operator, OperatorRole, Presence

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


async def _status(world: World, key: str) -> OperatorStatus:
    async with world.store.read_transaction() as tx:
        found = await assignment_queries(tx).operator_status([world.ops[key].id])
    return found.get(world.ops[key].id, OperatorStatus())


async def test_a_disabled_operator_cannot_log_in_loses_sessions_and_conversations(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    nested = forbid_nested_transactions(world.store, monkeypatch)
    op = world.ops["op_a"]
    conv = await world.conversation("wa-a", state="assigned", assigned=op)
    async with world.client() as worker, world.client() as admin:
        await login_as(worker, "op_a")
        assert (await worker.get("/console")).status_code == 200
        csrf = await login_as(admin, "admin_a")
        page = await admin.post(f"/admin/operators/{op.id}/disable", data={"csrf_token": csrf})
        assert page.status_code == 200
        assert "Op A desactivat" in page.text
        row = page.text[page.text.index(f'data-operator="{op.id}"') :]
        assert "desactivat" in row[: row.index("</tr>")]
        # The open session ends at its next request; a new login is refused like a wrong one.
        assert (await worker.get("/console")).headers["location"].startswith("/login")
        refused = await login(worker, "op_a")
        assert refused.status_code == 401
        assert "Usuari o contrasenya incorrectes" in refused.text
        # Enabled again: they log in.
        await admin.post(f"/admin/operators/{op.id}/enable", data={"csrf_token": csrf})
        assert (await login(worker, "op_a")).status_code == 303
    assert nested == []
    async with world.store.read_transaction() as tx:
        back = await tx.conversations.get(conv.id)
        entries = [(e.action, dict(e.details)) for e in await tx.audit.audit_entries("city-a")]
        operator = await tx.operators.get_operator(op.id)
    assert back is not None
    assert (back.state, back.assigned_operator) == ("queued", None)
    assert operator is not None
    assert operator.presence is Presence.AVAILABLE  # logged in again after being enabled
    assert ("operator_disabled", {"operator": op.id, "requeued": 1}) in entries
    assert ("operator_enabled", {"operator": op.id}) in entries
    assert not (await _status(world, "op_a")).disabled


def _error_of(page: str) -> str:
    """The login page's text without its per-page CSRF token."""
    return re.sub(r'value="[^"]{20,}"|content="[^"]{20,}"', "", page)


async def test_a_disabled_operator_is_answered_like_a_wrong_password_and_stays_counted(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real_verify = auth.verify_password

    def counting_verify(password_hash: str, password: str) -> bool:
        checked.append(password)
        return real_verify(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", counting_verify)
    async with world.client() as admin:
        csrf = await login_as(admin, "admin_a")
        await admin.post(
            f"/admin/operators/{world.ops['op_a'].id}/disable", data={"csrf_token": csrf}
        )
    checked.clear()
    async with world.client() as client:
        wrong = await login(client, "op_a", "wrong password")
        right = await login(client, "op_a")  # the right password of a disabled operator
        # Same status, same page: the answer tells nothing about the password.
        assert (right.status_code, wrong.status_code) == (401, 401)
        assert _error_of(right.text) == _error_of(wrong.text)
        assert checked == ["wrong password", PASSWORD]  # both verified: the same time spent
        # The right password did not clear the count: the third attempt is the last one.
        assert (await login(client, "op_a")).status_code == 401
        assert (await login(client, "op_a")).status_code == 429


@pytest.mark.parametrize(("lang", "words"), [("es", "desactivado"), ("en", "disabled")])
async def test_disabling_speaks_the_admins_language(world: World, lang: str, words: str) -> None:
    async with world.client() as admin:
        csrf = await login_as(admin, "admin_a")
        admin.cookies.set("cc_lang", lang)
        page = await admin.post(
            f"/admin/operators/{world.ops['op2_a'].id}/disable", data={"csrf_token": csrf}
        )
    assert words in page.text
    assert (await _status(world, "op2_a")).disabled


async def test_only_an_operator_without_history_can_be_deleted(world: World) -> None:
    async with world.client() as client:
        await login_as(client, "op_a")  # a login is history: op_a stays
        csrf = await login_as(client, "admin_a")
        kept = await client.post(
            f"/admin/operators/{world.ops['op_a'].id}/delete", data={"csrf_token": csrf}
        )
        gone = await client.post(
            f"/admin/operators/{world.ops['op2_a'].id}/delete", data={"csrf_token": csrf}
        )
        myself = await client.post(
            f"/admin/operators/{world.ops['admin_a'].id}/delete", data={"csrf_token": csrf}
        )
        other_city = await client.post(
            f"/admin/operators/{world.ops['op_b'].id}/disable", data={"csrf_token": csrf}
        )
        csrf_op = await login_as(client, "sup_a")
        not_admin = await client.post(
            f"/admin/operators/{world.ops['op_a'].id}/disable", data={"csrf_token": csrf_op}
        )
    assert kept.status_code == 409
    assert "té historial" in kept.text
    assert gone.status_code == 200
    assert "Op2 A esborrat" in gone.text
    assert myself.status_code == 409
    assert other_city.status_code == 404
    assert not_admin.status_code == 403
    async with world.store.read_transaction() as tx:
        assert await tx.operators.get_operator(world.ops["op2_a"].id) is None
        assert await tx.operators.get_operator(world.ops["op_a"].id) is not None
        actions = [e.action for e in await tx.audit.audit_entries("city-a")]
    assert "operator_deleted" in actions
    assert not (await _status(world, "op_b")).disabled


async def test_no_console_or_admin_handler_opens_a_transaction_inside_another(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    nested = forbid_nested_transactions(world.store, monkeypatch)
    conv = await world.conversation("wa-a")
    other = await world.conversation("wa-a")
    await world.set_presence("op2_a", Presence.AVAILABLE)
    base = f"/console/conversations/{conv.id}"
    async with world.client() as client:
        csrf = await login_as(client, "sup_a")
        for path in (
            "/console",
            base,
            f"{base}/messages",
            "/console/api/lists",
            "/console/reports",
        ):
            assert (await client.get(path)).status_code == 200, path
        steps = [
            (f"{base}/take", {}),
            (f"{base}/reply", {"kind": "text", "body": "Bon dia"}),
            (f"{base}/reply", {"kind": "location", "latitude": "x", "longitude": "2"}),
            (f"{base}/transfer", {"to": str(world.ops["op2_a"].id)}),
            (f"{base}/transfer", {"to": "queue"}),
            (f"{base}/close", {}),
            (f"/console/conversations/{other.id}/reply", {"kind": "text", "body": "Hola"}),
            ("/console/presence", {"presence": "available"}),
            ("/console/password", {"current": "x", "new": "y", "repeat": "y"}),
        ]
        for path, data in steps:
            response = await client.post(path, data={"csrf_token": csrf, **data})
            assert response.status_code in (200, 303, 400), (path, response.status_code)
        csrf = await login_as(client, "admin_a")
        target = world.ops["op2_a"].id
        for path in (
            "/admin/accounts",
            "/admin/operators",
            "/admin/audit",
            "/admin/accounts/wa-a/keywords",
            "/admin/accounts/wa-a/hours",
        ):
            assert (await client.get(path)).status_code == 200, path
        for path, data in [
            (f"/admin/operators/{target}", {"role": "operator", "capacity": "3"}),
            (f"/admin/operators/{target}/password", {}),
            (f"/admin/operators/{target}/disable", {}),
            (f"/admin/operators/{target}/enable", {}),
            (f"/admin/operators/{target}/delete", {}),
            ("/admin/operators", {**_NEW, "login": "op_a"}),
            ("/admin/accounts/wa-a/hours", {"text": "not: [valid", "action": "validate"}),
        ]:
            response = await client.post(path, data={"csrf_token": csrf, **data})
            assert response.status_code in (200, 303, 400, 409), (path, response.status_code)
        assert (await client.post("/logout", data={"csrf_token": csrf})).status_code == 303
    assert nested == []


async def _admin(world: World, login_name: str, scope: str) -> Operator:
    """An admin of ``scope`` (an account name: account-level) who can log in."""
    pw = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    async with world.store.transaction() as tx:
        op = await tx.operators.add_operator(
            account=scope,
            name=login_name,
            login=login_name,
            password_hash=pw,
            role=OperatorRole.ADMIN,
        )
    world.ops[login_name] = op
    return op


@pytest.mark.parametrize(
    ("action", "data"),
    [
        ("disable", {}),
        ("delete", {}),
        ("password", {}),
        ("enable", {}),
        ("", {"role": "operator", "capacity": "3"}),
    ],
)
async def test_an_account_admin_cannot_manage_a_group_wide_admin(
    world: World, action: str, data: dict[str, str]
) -> None:
    await _admin(world, "admin_wa", "wa-a")
    group_admin = world.ops["admin_a"]  # scope city-a: wa-a and web-a
    url = f"/admin/operators/{group_admin.id}" + (f"/{action}" if action else "")
    async with world.client() as client:
        csrf = await login_as(client, "admin_wa")
        refused = await client.post(url, data={"csrf_token": csrf, **data})
    assert refused.status_code == 403
    async with world.store.read_transaction() as tx:
        after = await tx.operators.get_operator(group_admin.id)
        actions = [e.action for e in await tx.audit.audit_entries("city-a")]
    assert after == group_admin  # same role, password hash, everything
    assert not (await _status(world, "admin_a")).disabled
    assert not [a for a in actions if a.startswith(("operator_", "password_reset"))]


async def test_an_account_admin_cannot_make_a_group_wide_admin(world: World) -> None:
    await _admin(world, "admin_wa", "wa-a")
    async with world.client() as client:
        csrf = await login_as(client, "admin_wa")
        created = await client.post(
            "/admin/operators",
            data={**_NEW, "login": "boss", "role": "admin", "csrf_token": csrf},
        )
        promoted = await client.post(
            f"/admin/operators/{world.ops['op_a'].id}",
            data={"role": "admin", "capacity": "4", "csrf_token": csrf},
        )
        # Within its own scope it still works (an admin of wa-a); a group-wide operator, whatever
        # the role, is not its to manage: a new password would let it act as them group-wide.
        peer = await client.post(
            "/admin/operators",
            data={**_NEW, "account": "wa-a", "login": "peer", "role": "admin", "csrf_token": csrf},
        )
        reset = await client.post(
            f"/admin/operators/{world.ops['op_a'].id}/password", data={"csrf_token": csrf}
        )
    assert (created.status_code, promoted.status_code) == (403, 403)
    assert "No teniu permís" in created.text
    assert (peer.status_code, reset.status_code) == (200, 403)
    async with world.store.read_transaction() as tx:
        assert await tx.operators.by_login("boss") is None
        op_a = await tx.operators.get_operator(world.ops["op_a"].id)
    assert op_a is not None
    assert op_a.role is OperatorRole.OPERATOR
    assert op_a.password_hash == world.ops["op_a"].password_hash  # not reset


async def test_another_accounts_admin_is_not_found_and_a_group_admin_manages_everyone(
    world: World,
) -> None:
    web_admin = await _admin(world, "admin_web", "web-a")
    wa_admin = await _admin(world, "admin_wa", "wa-a")
    wa_peer = await _admin(world, "admin_wa2", "wa-a")
    async with world.client() as client:
        csrf = await login_as(client, "admin_wa")
        other_account = await client.post(
            f"/admin/operators/{web_admin.id}/disable", data={"csrf_token": csrf}
        )
        peer = await client.post(
            f"/admin/operators/{wa_peer.id}/disable", data={"csrf_token": csrf}
        )
        csrf = await login_as(client, "admin_a")  # group-level: city-a
        by_group = [
            await client.post(f"/admin/operators/{op.id}/disable", data={"csrf_token": csrf})
            for op in (web_admin, wa_admin)
        ]
    assert other_account.status_code == 404  # like every object of another account
    assert peer.status_code == 200  # an admin of the same scope
    assert [r.status_code for r in by_group] == [200, 200]
    for key in ("admin_web", "admin_wa", "admin_wa2"):
        assert (await _status(world, key)).disabled


async def test_delete_is_offered_only_for_an_operator_who_can_be_deleted(world: World) -> None:
    def actions(page: str, key: str) -> set[str]:
        op_id = world.ops[key].id
        row = page[page.index(f'<tr data-operator="{op_id}"') :]
        row = row[: row.index("</tr>")]
        return set(re.findall(rf'action="/admin/operators/{op_id}/(\w+)"', row))

    async with world.client() as client:
        await login_as(client, "op_a")  # a login is history: op_a can only be disabled
        csrf = await login_as(client, "admin_a")
        page = (await client.get("/admin/operators")).text
        assert actions(page, "op_a") == {"password", "disable"}
        assert actions(page, "op2_a") == {"password", "disable", "delete"}
        assert actions(page, "admin_a") == {"password"}  # not themselves
        # What is offered works, and what is not offered would have been refused.
        gone = await client.post(
            f"/admin/operators/{world.ops['op2_a'].id}/delete", data={"csrf_token": csrf}
        )
        kept = await client.post(
            f"/admin/operators/{world.ops['op_a'].id}/delete", data={"csrf_token": csrf}
        )
    assert gone.status_code == 200
    assert f'data-operator="{world.ops["op2_a"].id}"' not in gone.text
    assert kept.status_code == 409
    assert actions(kept.text, "op_a") == {"password", "disable"}
