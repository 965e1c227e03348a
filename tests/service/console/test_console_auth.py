"""Login, sessions, CSRF, rate limiting, password changes, UI language."""

from __future__ import annotations

from datetime import timedelta

import pytest
from console_helpers import PASSWORD, World, form_token, login, login_as

from civicchat.service.console import hash_password, verify_password
from civicchat.service.console.web import safe_next


def test_password_hashes_are_argon2_and_verify() -> None:
    hashed = hash_password("s3cret password")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "s3cret password")
    assert not verify_password(hashed, "s3cret passworD")
    assert not verify_password("not a hash", "s3cret password")


async def test_anonymous_page_redirects_to_login(world: World) -> None:
    async with world.client() as client:
        response = await client.get("/console")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/console"


async def test_anonymous_api_gets_401(world: World) -> None:
    conv = await world.conversation()
    async with world.client() as client:
        for url in (
            "/console/api/lists",
            "/console/api/events",
            f"/console/conversations/{conv.id}/messages",
        ):
            assert (await client.get(url)).status_code == 401, url
        reply = await client.post(f"/console/conversations/{conv.id}/reply", data={"body": "x"})
        assert reply.status_code == 401


async def test_anonymous_admin_page_redirects_to_login(world: World) -> None:
    async with world.client() as client:
        response = await client.get("/admin/operators")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


async def test_login_sets_a_secure_http_only_lax_cookie(world: World) -> None:
    async with world.client() as client:
        response = await login(client, "op_a")
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "cc_session=" in cookie
    assert "secure" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert PASSWORD.lower() not in cookie


async def test_wrong_password_is_refused_without_a_session(world: World) -> None:
    async with world.client() as client:
        response = await login(client, "op_a", "wrong password")
        assert response.status_code == 401
        assert "Usuari o contrasenya incorrectes" in response.text
        assert (await client.get("/console")).status_code == 303


async def test_login_without_csrf_token_is_refused(world: World) -> None:
    async with world.client() as client:
        response = await client.post("/login", data={"login": "op_a", "password": PASSWORD})
    assert response.status_code == 403


async def test_login_rate_limited_per_login_with_catalan_and_spanish_message(world: World) -> None:
    async with world.client() as client:
        for _ in range(world.ctx.login_attempts):
            assert (await login(client, "op_a", "guess")).status_code == 401
        blocked = await login(client, "op_a")  # even the right password waits
        assert blocked.status_code == 429
        assert "Massa intents fallits" in blocked.text
        assert "Demasiados intentos fallidos" in blocked.text
        assert int(blocked.headers["retry-after"]) > 0
    async with world.client() as other:
        # Another operator from the same address is not locked out yet.
        assert (await login(other, "op2_a")).status_code == 303
    async with world.client() as client:
        world.clock.advance(world.ctx.login_window + timedelta(seconds=1))
        assert (await login(client, "op_a")).status_code == 303


async def test_login_rate_limited_per_client_address(world: World) -> None:
    async with world.client() as client:
        for n in range(world.ctx.login_attempts_per_address):
            user = ("op_a", "op2_a")[n % 2]
            assert (await login(client, user, "guess")).status_code == 401
        # sup_a never failed, but this address did too often.
        assert (await login(client, "sup_a")).status_code == 429
        assert (await login(client, "nobody", "guess")).status_code == 429


async def test_tampered_session_cookie_is_not_a_session(world: World) -> None:
    async with world.client() as client:
        await login_as(client, "op_a")
        value = client.cookies["cc_session"]
        client.cookies.set("cc_session", value[:-2] + "xx", domain="console.test")
        assert (await client.get("/console")).status_code == 303


async def test_logout_needs_csrf_and_ends_the_session(world: World) -> None:
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        assert (await client.post("/logout")).status_code == 403
        response = await client.post("/logout", data={"csrf_token": csrf})
        assert response.status_code == 303
        assert (await client.get("/console")).status_code == 303


async def test_changing_password_ends_other_sessions(world: World) -> None:
    async with world.client() as first, world.client() as second:
        csrf = await login_as(first, "op_a")
        await login_as(second, "op_a")
        wrong = await first.post(
            "/console/password",
            data={"csrf_token": csrf, "current": "nope", "new": "x" * 12, "repeat": "x" * 12},
        )
        assert wrong.status_code == 400
        short = await first.post(
            "/console/password",
            data={"csrf_token": csrf, "current": PASSWORD, "new": "short", "repeat": "short"},
        )
        assert short.status_code == 400
        new = "a much better passphrase"
        ok = await first.post(
            "/console/password",
            data={"csrf_token": csrf, "current": PASSWORD, "new": new, "repeat": new},
        )
        assert ok.status_code == 200
        assert (await first.get("/console")).status_code == 200  # this session was renewed
        assert (await second.get("/console")).status_code == 303  # the other one ended
    async with world.client() as third:
        assert (await login(third, "op_a")).status_code == 401
        assert (await login(third, "op_a", new)).status_code == 303
    async with world.store.transaction() as tx:
        actions = [e.action for e in await tx.audit.audit_entries("city-a")]
    assert "password_changed" in actions


async def test_ui_language_cookie_and_safe_redirect(world: World) -> None:
    async with world.client() as client:
        await login_as(client, "op_a")
        response = await client.get("/lang/es", params={"next": "//evil.example/x"})
        assert response.headers["location"] == "/console"
        page = await client.get("/console")
        assert "Mis conversaciones" in page.text
        await client.get("/lang/en")
        assert "My conversations" in (await client.get("/console")).text
        await client.get("/lang/ca")
        assert "Les meves converses" in (await client.get("/console")).text


async def test_pages_carry_security_headers(world: World) -> None:
    async with world.client() as client:
        page = await client.get("/login")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert form_token(page.text)


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "/\\evil.example", "/\t/evil.example", "/\n/evil", "https://evil.example"],
)
async def test_login_never_redirects_to_another_site(world: World, target: str) -> None:
    async with world.client() as client:
        page = await client.get("/login", params={"next": target})
        response = await client.post(
            "/login",
            data={
                "login": "op_a",
                "password": PASSWORD,
                "csrf_token": form_token(page.text),
                "next": target,
            },
        )
    assert response.status_code == 303
    assert response.headers["location"] == "/console"
    assert safe_next(target) == "/console"
    assert safe_next("/console/conversations/7") == "/console/conversations/7"


async def test_logging_in_and_out_announces_the_presence_to_every_process(world: World) -> None:
    # The dispatcher (any process) assigns the queue as soon as an operator comes online.
    import asyncio

    operator = world.ops["op_a"]
    async with world.live.subscribe("wa-a") as events, world.client() as client:
        csrf = await login_as(client, "op_a")
        came = await asyncio.wait_for(anext(events), 2)
        assert (came.kind, dict(came.data)) == ("presence", {"operator": operator.id})
        response = await client.post("/logout", data={"csrf_token": csrf})
        assert response.status_code == 303
        went = await asyncio.wait_for(anext(events), 2)
        assert (went.kind, dict(went.data)) == ("presence", {"operator": operator.id})
    async with world.store.transaction() as tx:
        stored = await tx.operators.get_operator(operator.id)
    assert stored is not None
    assert stored.presence.value == "offline"
