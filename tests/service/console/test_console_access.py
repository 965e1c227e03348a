"""Every permission boundary: one test per role and route that must refuse."""

from __future__ import annotations

import pytest
from console_helpers import World, login_as

from civicchat.messages import Media, MediaKind


async def _outbox_count(world: World, conversation_id: int) -> int:
    async with world.store.transaction() as tx:
        messages = await tx.conversation_messages(conversation_id)
    return sum(1 for m in messages if m.direction == "out")


# ----------------------------------------------------------------- account isolation: 404


async def test_other_account_conversation_is_404(world: World) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as client:
        await login_as(client, "op_b")
        page = await client.get(f"/console/conversations/{conv.id}")
        assert page.status_code == 404
        assert "hi ha un forat" not in page.text
        partial = await client.get(f"/console/conversations/{conv.id}/messages")
        assert partial.status_code == 404


async def test_other_account_conversation_is_404_for_its_admin_too(world: World) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as client:
        await login_as(client, "admin_b")
        assert (await client.get(f"/console/conversations/{conv.id}")).status_code == 404


async def test_missing_and_foreign_conversations_look_the_same(world: World) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as client:
        await login_as(client, "op_b")
        foreign = await client.get(f"/console/conversations/{conv.id}")
        missing = await client.get("/console/conversations/999999")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.text.replace(f"/{conv.id}", "/N") == missing.text.replace("/999999", "/N")


async def test_other_account_media_is_404(world: World) -> None:
    conv = await world.conversation(
        "wa-a", content=Media(media_kind=MediaKind.IMAGE, media_id="m-1", mime_type="image/jpeg")
    )
    async with world.store.transaction() as tx:
        ref = await tx.media.add_media(
            "whatsapp", "wa-a", "m-1", mime_type="image/jpeg", event_id=None
        )
        await tx.media.media_stored(
            ref.id, blob_key="k1", size=3, sha256="x", mime_type="image/jpeg"
        )
    await world.blobs.put("k1", b"JPG")
    async with world.client() as client:
        await login_as(client, "op_b")
        response = await client.get(f"/console/conversations/{conv.id}/media/m-1")
    assert response.status_code == 404
    assert b"JPG" not in response.content


async def test_other_account_contact_is_404(world: World) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as client:
        await login_as(client, "op_b")
        response = await client.get(f"/console/contacts/{conv.contact_id}")
        assert response.status_code == 404
        assert "Maria" not in response.text
        await login_as(client, "op_a")
        assert (await client.get(f"/console/contacts/{conv.contact_id}")).status_code == 200


async def test_other_account_cannot_reply_take_transfer_or_close(world: World) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as client:
        csrf = await login_as(client, "op_b")
        for action, data in (
            ("reply", {"body": "hola"}),
            ("take", {}),
            ("transfer", {"to": "queue"}),
            ("close", {}),
        ):
            response = await client.post(
                f"/console/conversations/{conv.id}/{action}", data={"csrf_token": csrf, **data}
            )
            assert response.status_code == 404, action
    assert await _outbox_count(world, conv.id) == 0
    async with world.store.transaction() as tx:
        assert (await tx.conversations.get(conv.id)).state == "queued"  # type: ignore[union-attr]


async def test_other_account_queue_does_not_list_the_conversation(world: World) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as client:
        await login_as(client, "op_b")
        page = await client.get("/console")
        partial = await client.get("/console/api/lists")
    assert f"/console/conversations/{conv.id}" not in page.text
    assert f"/console/conversations/{conv.id}" not in partial.text


# ----------------------------------------------------------------- roles inside one account


async def test_operator_cannot_open_a_colleagues_conversation(world: World) -> None:
    conv = await world.conversation("wa-a", state="assigned", assigned=world.ops["op2_a"])
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        assert (await client.get(f"/console/conversations/{conv.id}")).status_code == 403
        # Acting on it is refused as a colleague's (409: the page may be older than the take).
        reply = await client.post(
            f"/console/conversations/{conv.id}/reply", data={"csrf_token": csrf, "body": "x"}
        )
        assert reply.status_code == 409
        assert "Un altre operador ja té aquesta conversa." in reply.text
        take = await client.post(
            f"/console/conversations/{conv.id}/take", data={"csrf_token": csrf}
        )
        assert take.status_code == 409
    assert await _outbox_count(world, conv.id) == 0


async def test_supervisor_sees_every_conversation_of_the_account(world: World) -> None:
    conv = await world.conversation("wa-a", state="assigned", assigned=world.ops["op2_a"])
    async with world.client() as client:
        await login_as(client, "sup_a")
        assert (await client.get(f"/console/conversations/{conv.id}")).status_code == 200
        assert f"/console/conversations/{conv.id}" in (await client.get("/console")).text


async def test_operator_cannot_see_reports(world: World) -> None:
    async with world.client() as client:
        await login_as(client, "op_a")
        assert (await client.get("/console/reports")).status_code == 403
        await login_as(client, "sup_a")
        assert (await client.get("/console/reports")).status_code == 200


ADMIN_GETS = [
    "/admin",
    "/admin/accounts",
    "/admin/operators",
    "/admin/audit",
    "/admin/accounts/wa-a/keywords",
    "/admin/accounts/wa-a/keywords/tramits",
    "/admin/accounts/wa-a/catalog",
    "/admin/accounts/wa-a/hours",
]


@pytest.mark.parametrize("user", ["op_a", "sup_a"])
@pytest.mark.parametrize("url", ADMIN_GETS)
async def test_non_admins_are_refused_admin_pages(world: World, user: str, url: str) -> None:
    async with world.client() as client:
        await login_as(client, user)
        response = await client.get(url)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/admin/accounts/wa-a/keywords/tramits", {"action": "save"}),
        ("/admin/accounts/wa-a/catalog", {"action": "save", "text": "languages: [ca]"}),
        ("/admin/accounts/wa-a/hours", {"action": "save", "text": "timezone: UTC"}),
        ("/admin/operators", {"name": "X", "login": "x", "account": "city-a", "role": "admin"}),
    ],
)
async def test_operator_cannot_post_admin_changes(
    world: World, url: str, data: dict[str, str]
) -> None:
    before = world.catalog_path.read_text()
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        response = await client.post(url, data={"csrf_token": csrf, **data})
    assert response.status_code == 403
    assert world.catalog_path.read_text() == before
    async with world.store.transaction() as tx:
        assert await tx.operators.by_login("x") is None


async def test_operator_cannot_raise_own_role(world: World) -> None:
    me = world.ops["op_a"]
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        response = await client.post(
            f"/admin/operators/{me.id}",
            data={"csrf_token": csrf, "role": "admin", "capacity": "5"},
        )
    assert response.status_code == 403
    async with world.store.transaction() as tx:
        assert (await tx.operators.get_operator(me.id)).role.value == "operator"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "url",
    [
        "/admin/accounts/wa-a/keywords",
        "/admin/accounts/wa-a/catalog",
        "/admin/accounts/wa-a/hours",
        "/admin/accounts/nonexistent/keywords",
    ],
)
async def test_admin_of_another_account_gets_404(world: World, url: str) -> None:
    async with world.client() as client:
        await login_as(client, "admin_b")
        assert (await client.get(url)).status_code == 404


async def test_admin_of_another_account_cannot_touch_its_operators(world: World) -> None:
    target = world.ops["op_a"]
    async with world.client() as client:
        csrf = await login_as(client, "admin_b")
        edit = await client.post(
            f"/admin/operators/{target.id}",
            data={"csrf_token": csrf, "role": "admin", "capacity": "5"},
        )
        reset = await client.post(
            f"/admin/operators/{target.id}/password", data={"csrf_token": csrf}
        )
        create = await client.post(
            "/admin/operators",
            data={
                "csrf_token": csrf,
                "name": "Intruder",
                "login": "intruder",
                "account": "city-a",
                "role": "admin",
                "capacity": "5",
            },
        )
        listing = await client.get("/admin/operators")
    assert edit.status_code == reset.status_code == 404
    assert create.status_code == 400
    assert "op_a" not in listing.text
    async with world.store.transaction() as tx:
        assert (await tx.operators.get_operator(target.id)) == target
        assert await tx.operators.by_login("intruder") is None


# ----------------------------------------------------------------- CSRF


@pytest.mark.parametrize("action", ["reply", "take", "transfer", "close"])
async def test_post_without_csrf_token_is_403(world: World, action: str) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as client:
        await login_as(client, "op_a")
        response = await client.post(
            f"/console/conversations/{conv.id}/{action}", data={"body": "hola", "to": "queue"}
        )
        wrong = await client.post(
            f"/console/conversations/{conv.id}/{action}",
            data={"body": "hola", "to": "queue"},
            headers={"X-CSRF-Token": "forged"},
        )
    assert response.status_code == wrong.status_code == 403
    assert await _outbox_count(world, conv.id) == 0


async def test_csrf_token_of_another_session_is_refused(world: World) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as attacker, world.client() as victim:
        stolen = await login_as(attacker, "op2_a")
        await login_as(victim, "op_a")
        response = await victim.post(
            f"/console/conversations/{conv.id}/reply", data={"csrf_token": stolen, "body": "x"}
        )
    assert response.status_code == 403


async def test_admin_post_without_csrf_is_403(world: World) -> None:
    before = world.catalog_path.read_text()
    async with world.client() as client:
        await login_as(client, "admin_a")
        response = await client.post(
            "/admin/accounts/wa-a/catalog", data={"action": "save", "text": "languages: [ca]"}
        )
    assert response.status_code == 403
    assert world.catalog_path.read_text() == before
