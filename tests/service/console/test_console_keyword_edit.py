"""Editing one keyword in the admin: the file keeps everything else byte for byte."""

from __future__ import annotations

import difflib
import html

import pytest
from console_helpers import World, form_token, login_as

from civicchat.keywords import parse_catalog
from civicchat.service.console.admin import unknown_variables

URL = "/admin/accounts/wa-a/keywords/agenda"


async def _form(client: object) -> dict[str, str]:
    """The keyword's form as a browser posts it: every text box with CRLF line ends."""
    page = await client.get(URL)  # type: ignore[attr-defined]
    text = page.text
    out = {"csrf_token": form_token(text)}
    for name in ("version", "aliases_ca", "aliases_es", "reply_ca", "reply_es"):
        if name == "version":
            start = text.index('name="version" value="') + len('name="version" value="')
            out[name] = text[start : text.index('"', start)]
            continue
        start = text.index(f'name="{name}"')
        start = text.index(">", start) + 1
        value = html.unescape(text[start : text.index("</textarea>", start)])
        out[name] = value.replace("\n", "\r\n")
    return out


async def test_saving_one_alias_changes_only_that_line_of_the_file(world: World) -> None:
    before = world.catalog_path.read_text(encoding="utf-8")
    async with world.client() as client:
        await login_as(client, "admin_a")
        data = await _form(client)
        assert "\r\n" in data["reply_ca"]  # as browsers send it
        data["aliases_ca"] += "\r\nque fem aquest cap de setmana"
        saved = await client.post(URL, data={**data, "action": "save"})
    assert saved.status_code == 303
    after = world.catalog_path.read_text(encoding="utf-8")
    changed = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert len(changed) == 2, changed  # one line out, one line in
    assert changed[0].startswith("-      ca: [agenda, agenda cultural")
    assert changed[1].startswith("+      ca: [agenda, agenda cultural")
    assert changed[1].endswith(", que fem aquest cap de setmana]")
    assert "\r" not in after
    assert "🎭" in after
    assert "\\U0001F3AD" not in after
    kw = parse_catalog(after).keyword("agenda")
    assert kw is not None
    assert "\r" not in kw.reply["ca"]
    assert kw.reply["ca"].startswith("🎭 Què fem aquesta setmana")


async def test_a_changed_reply_is_written_as_a_block_with_its_emoji(world: World) -> None:
    async with world.client() as client:
        await login_as(client, "admin_a")
        data = await _form(client)
        data["reply_ca"] = "🎭 Agenda:   \r\nhttps://www.mataro.cat/ca/agenda\r\n"
        saved = await client.post(URL, data={**data, "action": "save"})
    assert saved.status_code == 303
    after = world.catalog_path.read_text(encoding="utf-8")
    assert "      ca: |-\n        🎭 Agenda:\n        https://www.mataro.cat/ca/agenda\n" in after
    kw = parse_catalog(after).keyword("agenda")
    assert kw is not None
    assert kw.reply["ca"] == "🎭 Agenda:\nhttps://www.mataro.cat/ca/agenda"


async def test_preview_warns_about_a_variable_that_does_not_exist(world: World) -> None:
    before = world.catalog_path.read_text(encoding="utf-8")
    async with world.client() as client:
        await login_as(client, "admin_a")
        data = await _form(client)
        data["reply_ca"] = "Benvinguts a {{ city }}, {{ name }}!"
        page = await client.post(URL, data={**data, "action": "preview"})
        client.cookies.set("cc_lang", "es")
        page_es = await client.post(URL, data={**data, "action": "preview"})
    assert page.status_code == 200
    assert "Aquestes variables no existeixen i sortiran buides: city." in page.text
    assert 'data-unknown="es"' not in page.text
    assert "Estas variables no existen y saldrán vacías: city." in page_es.text
    assert world.catalog_path.read_text(encoding="utf-8") == before


def test_unknown_variables_are_those_no_reply_context_has() -> None:
    assert unknown_variables("Hola {{ name }}, {{ now | date }} {{ office_hours }}") == []
    assert unknown_variables("{{ city }} {% for x in items %}{{ x }}{% endfor %}") == [
        "city",
        "items",
    ]
    assert unknown_variables("plain text") == []
    assert unknown_variables("{{ broken") == []  # the catalog's validation says why


async def test_an_alias_of_another_keyword_is_refused_naming_it(world: World) -> None:
    async with world.client() as client:
        await login_as(client, "admin_a")
        data = await _form(client)
        data["aliases_ca"] += "\r\ntaxi"
        for lang in ("ca", "es", "en"):
            client.cookies.set("cc_lang", lang)
            page = await client.post(URL, data={**data, "action": "save"})
            assert page.status_code == 400
            text = html.unescape(page.text)
            assert {
                "ca": "L'àlies «taxi» ja és de la paraula clau «taxi»",
                "es": "El alias «taxi» ya es de la palabra clave «taxi»",
                "en": "The alias 'taxi' already belongs to the keyword 'taxi'",
            }[lang] in text
            assert "is also an alias" not in text


async def test_the_conflict_names_the_other_keyword_whichever_comes_first_in_the_file(
    world: World,
) -> None:
    url = "/admin/accounts/wa-a/keywords/bus"  # 'bus' comes before 'taxi' in the catalog
    async with world.client() as client:
        await login_as(client, "admin_a")
        page = await client.get(url)
        start = page.text.index('name="aliases_ca"')
        start = page.text.index(">", start) + 1
        aliases = html.unescape(page.text[start : page.text.index("</textarea>", start)])
        version = page.text.split('name="version" value="', 1)[1].split('"', 1)[0]
        refused = await client.post(
            url,
            data={
                "csrf_token": form_token(page.text),
                "version": version,
                "aliases_ca": aliases + "\ntaxi",
                "aliases_es": "autobús",
                "reply_ca": "Bus",
                "reply_es": "Bus",
                "action": "save",
            },
        )
    assert refused.status_code == 400
    assert "L'àlies «taxi» ja és de la paraula clau «taxi»" in html.unescape(refused.text)
    assert "«bus»" not in html.unescape(refused.text)


@pytest.mark.parametrize(
    ("lang", "words"), [("ca", "Desat."), ("es", "Guardado."), ("en", "Saved.")]
)
async def test_saving_a_keyword_says_so_on_the_page_it_lands_on(
    world: World, lang: str, words: str
) -> None:
    async with world.client() as client:
        await login_as(client, "admin_a")
        client.cookies.set("cc_lang", lang)
        before = (await client.get(URL)).text
        data = await _form(client)
        saved = await client.post(URL, data={**data, "action": "save"})
        assert saved.status_code == 303
        landed = await client.get(saved.headers["location"])
    assert saved.headers["location"].endswith("?saved=1")
    assert f'<p class="ok" role="status">{words}</p>' in landed.text
    assert words not in before  # only after saving


async def test_aliases_separated_by_commas_are_saved_one_by_one(world: World) -> None:
    async with world.client() as client:
        await login_as(client, "admin_a")
        data = await _form(client)
        data["aliases_ca"] += "\r\nque fem avui, agenda setmanal ,\r\n , cartellera"
        saved = await client.post(URL, data={**data, "action": "save"})
        assert saved.status_code == 303
        edit = (await client.get(URL)).text
        listed = (await client.get("/admin/accounts/wa-a/keywords")).text
    kw = parse_catalog(world.catalog_path.read_text(encoding="utf-8")).keyword("agenda")
    assert kw is not None
    assert kw.aliases["ca"][-3:] == ("que fem avui", "agenda setmanal", "cartellera")
    assert not any("," in alias for alias in kw.aliases["ca"])
    # The form shows them one per line, the list separated by commas, as the hint says.
    assert "que fem avui\nagenda setmanal\ncartellera</textarea>" in edit
    assert "Àlies (un per línia o separats per comes)" in edit
    assert "que fem avui, agenda setmanal, cartellera</td>" in listed
