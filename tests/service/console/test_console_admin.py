"""Admin pages: keyword edits take effect without a restart, validation, hours, operators."""

from __future__ import annotations

import asyncio
import dataclasses
import re

import httpx
import pytest
from console_helpers import World, form_token, login, login_as
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from civicchat.exceptions import CatalogError, ConfigError
from civicchat.keywords import normalize, parse_catalog
from civicchat.service.console import DisabledAccount, build_console_routes
from civicchat.service.console.files import replace_keyword

VERSION = re.compile(r'name="version" value="([^"]+)"')


async def _audit(world: World, account: str = "wa-a") -> list[tuple[str, dict[str, object]]]:
    async with world.store.transaction() as tx:
        return [(e.action, dict(e.details)) for e in await tx.audit.audit_entries(account)]


async def test_keyword_list_and_edit_page(world: World) -> None:
    async with world.client() as client:
        await login_as(client, "admin_a")
        listing = await client.get("/admin/accounts/wa-a/keywords")
        assert listing.status_code == 200
        assert "/admin/accounts/wa-a/keywords/cita_previa" in listing.text
        page = await client.get("/admin/accounts/wa-a/keywords/cita_previa")
        assert page.status_code == 200
        assert "demanar cita" in page.text
        assert (await client.get("/admin/accounts/wa-a/keywords/nope")).status_code == 404


async def _keyword_form(client: object, url: str) -> dict[str, str]:
    page = await client.get(url)  # type: ignore[attr-defined]
    return {
        "csrf_token": form_token(page.text),
        "version": VERSION.search(page.text).group(1),  # type: ignore[union-attr]
        "aliases_ca": "cita prèvia\ncita\ndemanar cita\nreservar hora",
        "aliases_es": "cita previa\npedir cita",
        "reply_ca": "📅 Cita prèvia: https://www.mataro.cat/ca/cita-previa ({{ office_hours }})",
        "reply_es": "📅 Cita previa: https://www.mataro.cat/es/cita-previa",
    }


async def test_saving_a_keyword_takes_effect_without_restart_and_is_audited(world: World) -> None:
    engine = world.ctx.accounts["wa-a"].engine
    assert engine is not None
    old = engine.match("reservar hora")
    assert old is None or old.keyword_id != "cita_previa"
    url = "/admin/accounts/wa-a/keywords/cita_previa"
    before = world.catalog_path.read_text()
    async with world.live.subscribe("wa-a") as events, world.client() as client:
        await login_as(client, "admin_a")
        assert (await asyncio.wait_for(anext(events), 2)).kind == "presence"  # came online
        data = await _keyword_form(client, url)
        response = await client.post(url, data={**data, "action": "save"})
        assert response.status_code == 303
        event = await asyncio.wait_for(anext(events), 2)
    assert event.kind == "catalog_changed"
    found = engine.match("reservar hora")
    assert found is not None
    assert found.keyword_id == "cita_previa"
    on_disk = world.catalog_path.read_text()
    assert "reservar hora" in on_disk
    # Only that keyword changed: the file's comments and the other keywords are intact.
    assert on_disk.splitlines()[:30] == before.splitlines()[:30]
    after_padro = parse_catalog(on_disk).keyword("padro")
    before_padro = parse_catalog(before).keyword("padro")
    assert after_padro is not None
    assert before_padro is not None
    assert (after_padro.aliases, after_padro.reply) == (before_padro.aliases, before_padro.reply)
    action, details = (await _audit(world))[0]
    assert action == "catalog_saved"
    assert details["keyword"] == "cita_previa"
    # The web chat shares the catalog: it changed there too.
    assert world.ctx.accounts["web-a"].engine is engine


async def test_preview_renders_both_languages_without_saving(world: World) -> None:
    url = "/admin/accounts/wa-a/keywords/cita_previa"
    before = world.catalog_path.read_text()
    async with world.client() as client:
        await login_as(client, "admin_a")
        data = await _keyword_form(client, url)
        page = await client.post(url, data={**data, "action": "preview"})
    assert page.status_code == 200
    assert "de dilluns a divendres" in page.text  # {{ office_hours }} rendered in Catalan
    assert "Cita previa: https://www.mataro.cat/es/cita-previa" in page.text
    assert world.catalog_path.read_text() == before


async def test_invalid_keyword_edit_names_the_other_keyword_and_changes_nothing(
    world: World,
) -> None:
    url = "/admin/accounts/wa-a/keywords/cita_previa"
    before = world.catalog_path.read_text()
    async with world.client() as client:
        await login_as(client, "admin_a")
        data = await _keyword_form(client, url)
        data["aliases_ca"] += "\ntràmits"  # an alias of another keyword
        page = await client.post(url, data={**data, "action": "save"})
    assert page.status_code == 400
    assert not re.search(r"línia \d+", page.text)  # lines of a file the admin does not see
    assert "L'àlies «tràmits» ja és de la paraula clau «" in page.text.replace("&#39;", "'")
    assert world.catalog_path.read_text() == before
    assert "catalog_saved" not in [a for a, _ in await _audit(world)]


async def test_stale_edit_is_refused(world: World) -> None:
    url = "/admin/accounts/wa-a/keywords/cita_previa"
    async with world.client() as client:
        await login_as(client, "admin_a")
        data = await _keyword_form(client, url)
        world.catalog_path.write_text(world.catalog_path.read_text() + "\n# edited elsewhere\n")
        page = await client.post(url, data={**data, "action": "save"})
    assert page.status_code == 409
    assert "edited elsewhere" in world.catalog_path.read_text()


async def test_catalog_validation_reports_line_numbers(world: World) -> None:
    async with world.client() as client:
        await login_as(client, "admin_a")
        page = await client.get("/admin/accounts/wa-a/catalog")
        assert "PARAULES CLAU" in page.text  # the textarea holds the file
        broken = world.catalog_path.read_text().replace("topic: procedures", "topic: nowhere", 1)
        result = await client.post(
            "/admin/accounts/wa-a/catalog",
            data={"csrf_token": form_token(page.text), "text": broken, "action": "validate"},
        )
    assert result.status_code == 400
    line = next(n for n, row in enumerate(broken.splitlines(), 1) if "topic: nowhere" in row)
    assert f'data-line="{line}"' in result.text
    assert "nowhere" in result.text


async def test_whole_catalog_save(world: World) -> None:
    async with world.client() as client:
        await login_as(client, "admin_a")
        page = await client.get("/admin/accounts/wa-a/catalog")
        new = world.catalog_path.read_text() + "# saved from the web\n"
        result = await client.post(
            "/admin/accounts/wa-a/catalog",
            data={
                "csrf_token": form_token(page.text),
                "version": VERSION.search(page.text).group(1),  # type: ignore[union-attr]
                "text": new,
                "action": "save",
            },
        )
    assert result.status_code == 200
    assert world.catalog_path.read_text().endswith("# saved from the web\n")
    assert (await _audit(world))[0][0] == "catalog_saved"


async def test_office_hours_validate_and_save(world: World) -> None:
    async with world.client() as client:
        await login_as(client, "admin_a")
        page = await client.get("/admin/accounts/wa-a/hours")
        assert page.status_code == 200
        assert "de dilluns a divendres" in page.text
        assert "2026-12-25" in page.text
        csrf = form_token(page.text)
        version = VERSION.search(page.text).group(1)  # type: ignore[union-attr]
        bad = await client.post(
            "/admin/accounts/wa-a/hours",
            data={
                "csrf_token": csrf,
                "version": version,
                "action": "save",
                "text": 'timezone: Europe/Madrid\nweekly:\n  monday: ["19:00-08:00"]\n',
            },
        )
        assert bad.status_code == 400
        original = world.hours_path.read_text()
        good_text = original.replace('friday: ["08:00-19:00"]', 'friday: ["08:00-15:00"]')
        assert good_text != original
        good = await client.post(
            "/admin/accounts/wa-a/hours",
            data={"csrf_token": csrf, "version": version, "action": "save", "text": good_text},
        )
    assert good.status_code == 200
    assert 'friday: ["08:00-15:00"]' in world.hours_path.read_text()
    assert (await _audit(world))[0][0] == "office_hours_saved"


async def test_create_operator_update_and_reset_password(world: World) -> None:
    temp = re.compile(r'id="temporary-password">([^<]+)<')
    async with world.client() as client:
        csrf = await login_as(client, "admin_a")
        created = await client.post(
            "/admin/operators",
            data={
                "csrf_token": csrf,
                "name": "Jordi",
                "login": "jordi",
                "account": "city-a",
                "role": "operator",
                "capacity": "4",
                "teams": "via-publica, mobilitat",
                "languages": "ca,es",
            },
        )
        assert created.status_code == 200
        temporary = temp.search(created.text).group(1)  # type: ignore[union-attr]
        async with world.store.transaction() as tx:
            jordi = await tx.operators.by_login("jordi")
        assert jordi is not None
        assert jordi.teams == ("via-publica", "mobilitat")
        assert temporary not in jordi.password_hash
        updated = await client.post(
            f"/admin/operators/{jordi.id}",
            data={"csrf_token": csrf, "role": "supervisor", "capacity": "8", "teams": "mobilitat"},
        )
        assert updated.status_code == 200
        invalid = await client.post(
            f"/admin/operators/{jordi.id}",
            data={"csrf_token": csrf, "role": "root", "capacity": "8"},
        )
        assert invalid.status_code == 400
        reset = await client.post(
            f"/admin/operators/{jordi.id}/password", data={"csrf_token": csrf}
        )
        second = temp.search(reset.text).group(1)  # type: ignore[union-attr]
    assert second != temporary
    async with world.client() as other:
        assert (await login(other, "jordi", temporary)).status_code == 401
        assert (await login(other, "jordi", second)).status_code == 303
    async with world.store.transaction() as tx:
        jordi = await tx.operators.by_login("jordi")
    assert jordi is not None
    assert jordi.role.value == "supervisor"
    assert jordi.capacity == 8
    entries = await _audit(world, "city-a")
    assert {"operator_created", "operator_updated", "password_reset"} <= {a for a, _ in entries}
    for _, details in entries:
        assert temporary not in str(details)
        assert second not in str(details)


async def test_accounts_page_lists_numbers_and_templates(world: World) -> None:
    async with world.client() as client:
        await login_as(client, "admin_a")
        page = await client.get("/admin/accounts")
    assert "+34 600 000 010" in page.text
    assert "mataro010_reprendre" in page.text
    assert "Telegram B" not in page.text  # another city's account


async def test_accounts_page_lists_disabled_accounts_with_the_missing_variable_names(
    world: World,
) -> None:
    off = DisabledAccount(
        "tg-a",
        "telegram",
        "Telegram 010",
        ("MATARO_TG_BOT_TOKEN", "MATARO_TG_SECRET_TOKEN"),
        group="city-a",
    )
    elsewhere = DisabledAccount("wa-b", "whatsapp", "WhatsApp B", ("B_WA_TOKEN",), group="city-b")
    ctx = dataclasses.replace(world.ctx, disabled=(off, elsewhere))
    app = Starlette(routes=build_console_routes(ctx))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    pages: dict[str, str] = {}
    async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as client:
        await login_as(client, "admin_a")
        for lang in ("ca", "es", "en"):
            await client.get(f"/lang/{lang}?next=/admin/accounts")
            pages[lang] = (await client.get("/admin/accounts")).text
        await login_as(client, "admin_b")
        other_city = (await client.get("/admin/accounts")).text
    row = pages["ca"][pages["ca"].index('data-account="tg-a"') :]
    row = row[: row.index("</tr>")]
    assert "Telegram 010" in row
    assert "desactivat" in row
    assert "secrets no configurats: MATARO_TG_BOT_TOKEN, MATARO_TG_SECRET_TOKEN" in row
    assert "secretos no configurados: MATARO_TG_BOT_TOKEN, MATARO_TG_SECRET_TOKEN" in pages["es"]
    assert "desactivado" in pages["es"]
    assert "secrets not configured: MATARO_TG_BOT_TOKEN, MATARO_TG_SECRET_TOKEN" in pages["en"]
    assert "WhatsApp 010" in pages["ca"]  # the running accounts are still there, enabled
    assert "actiu" in pages["ca"]
    assert "B_WA_TOKEN" not in pages["ca"]  # another city's
    assert "B_WA_TOKEN" in other_city
    assert "MATARO_TG_BOT_TOKEN" not in other_city


@pytest.mark.parametrize("value", ["123456:ABC-secret", "MY TOKEN", "", "x" * 200])
def test_a_disabled_account_takes_variable_names_never_values(value: str) -> None:
    with pytest.raises(ConfigError, match="not an environment variable name"):
        DisabledAccount("tg-a", "telegram", "Telegram", (value,))


def test_an_account_cannot_be_running_and_disabled(world: World) -> None:
    off = DisabledAccount("wa-a", "whatsapp", "WhatsApp 010", ("MATARO_WA_ACCESS_TOKEN",))
    with pytest.raises(ConfigError, match="both running and disabled"):
        dataclasses.replace(world.ctx, disabled=(off,))


def test_replace_keyword_keeps_everything_else() -> None:
    text = (
        "# comment kept\nlanguages: [ca, es]\ntopics:\n  t: {ca: T, es: T}\nkeywords:\n"
        "  - id: a\n    topic: t\n    aliases: {ca: [alfa], es: [alfa es]}\n"
        "    reply: {ca: A, es: A}\n    # note about b\n  - id: b\n    topic: t\n"
        "    aliases:\n      ca: [beta]\n      es: [beta es]\n    reply:\n      ca: B\n      es: B\n"
    )
    new, catalog = replace_keyword(
        text,
        parse_catalog(text),
        "a",
        aliases={"ca": ["gamma"], "es": ["gamma es"]},
        reply={"ca": "línia 1\nlínia 2", "es": "G"},
    )
    edited = catalog.keyword("a")
    assert edited is not None
    assert edited.aliases["ca"] == ("gamma",)
    assert edited.reply["ca"] == "línia 1\nlínia 2"
    assert new.startswith("# comment kept\n")
    assert "    # note about b\n  - id: b\n" in new
    assert new.endswith(text[text.index("  - id: b") :])


_SMALL = (
    "languages: [ca, es]\ntopics:\n  t: {ca: T, es: T}\nkeywords:\n"
    "  # first\n  - id: a\n    topic: t\n    aliases: {ca: [alfa], es: [alfa es]}\n"
    "    reply: {ca: A, es: A}\n\n  - id: b\n    topic: t\n"
    "    aliases:\n      ca: [beta]\n      es: [beta es]\n    reply:\n      ca: |-\n        B\n"
    "        bis\n      es: B\n"
)
_WORDS = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzàéèíïòóúüç ·'-:#{}\"\\"), max_size=20
)


# Characters YAML treats as line breaks are drawn often, not left to the luck of st.text().
_BREAK_CHARS = "\n\r\x85\u2028\u2029"
_REPLY = st.text(
    alphabet=st.one_of(st.sampled_from(_BREAK_CHARS + " 0a\t'\"#:"), st.characters()), max_size=60
)


@settings(max_examples=60, deadline=None)
@given(
    keyword=st.sampled_from(["a", "b"]),
    aliases=st.lists(_WORDS, max_size=4),
    reply=_REPLY,
)
@example(keyword="a", aliases=["x"], reply="0\x850")
@example(keyword="b", aliases=["x"], reply="0\u2028\n0\u2029 0\r")
def test_replace_keyword_never_corrupts_the_other_keyword(
    keyword: str, aliases: list[str], reply: str
) -> None:
    original = parse_catalog(_SMALL)
    other = "b" if keyword == "a" else "a"
    try:
        new, catalog = replace_keyword(
            _SMALL,
            original,
            keyword,
            aliases={"ca": aliases, "es": ["zzz"]},
            reply={"ca": reply, "es": "R"},
        )
    except CatalogError:
        return  # refused as a whole: the file is left as it was by the caller
    edited, kept, before = catalog.keyword(keyword), catalog.keyword(other), original.keyword(other)
    assert edited is not None
    assert kept is not None
    assert before is not None
    assert edited.reply["ca"].strip() == reply.strip()
    wanted = {a.strip() for a in aliases if a.strip()}
    assert set(edited.aliases["ca"]) <= wanted
    assert {normalize(a) for a in edited.aliases["ca"]} == {normalize(a) for a in wanted}
    assert (kept.aliases, kept.reply) == (before.aliases, before.reply)
    assert parse_catalog(new, source="<catalog>") == catalog


@pytest.mark.parametrize("keyword", ["a", "b"])
@pytest.mark.parametrize("char", list(_BREAK_CHARS))
def test_replace_keyword_keeps_line_break_characters_in_a_reply(keyword: str, char: str) -> None:
    reply = f"0{char}0 {char}x"
    new, catalog = replace_keyword(
        _SMALL,
        parse_catalog(_SMALL),
        keyword,
        aliases={"ca": [f"alfa{char}beta"], "es": ["zzz"]},
        reply={"ca": reply, "es": "R"},
    )
    edited = catalog.keyword(keyword)
    assert edited is not None
    assert edited.reply["ca"] == reply
    assert parse_catalog(new, source="<catalog>") == catalog
    if char != "\n":
        assert char not in new  # written as an escape, so the file's lines stay the YAML lines
