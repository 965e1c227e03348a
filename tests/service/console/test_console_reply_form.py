"""The reply form: a decimal comma is a number, and a reply to correct keeps what was typed."""

from __future__ import annotations

import html

import pytest
from console_helpers import World, login_as

from civicchat.messages import Location, Media, MediaKind, content_from_json
from civicchat.service.console.compose import InvalidReply, reply_content


async def _sent(world: World, cid: int) -> list[object]:
    async with world.store.read_transaction() as tx:
        records = await tx.conversation_messages(cid, limit=50)
    return [content_from_json(r.content_json) for r in records if r.direction == "out"]


async def test_a_location_with_decimal_commas_is_sent(world: World) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        response = await client.post(
            f"/console/conversations/{conv.id}/reply",
            data={
                "csrf_token": csrf,
                "kind": "location",
                "latitude": "41,5391",
                "longitude": " 2,4445 ",
                "name": "OAC",
            },
        )
    assert response.status_code == 303
    assert await _sent(world, conv.id) == [Location(latitude=41.5391, longitude=2.4445, name="OAC")]


@pytest.mark.parametrize(
    ("lat", "lon", "wrong"),
    [("91", "2", "latitude"), ("41,5", "1,2,3", "longitude"), ("nan", "2", "latitude")],
)
def test_coordinates_out_of_range_or_unreadable_name_their_field(
    lat: str, lon: str, wrong: str
) -> None:
    with pytest.raises(InvalidReply) as refused:
        reply_content({"latitude": lat, "longitude": lon}, "location")
    assert refused.value.field == wrong


async def test_an_error_keeps_the_operators_input_next_to_the_field(world: World) -> None:
    conv = await world.conversation("wa-a")
    base = f"/console/conversations/{conv.id}"
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        page = await client.post(
            f"{base}/reply",
            data={
                "csrf_token": csrf,
                "kind": "location",
                "latitude": "141,5",
                "longitude": "2,4445",
                "name": "Oficina d'Atenció Ciutadana",
                "address": "La Riera, 48",
                "request_id": "abcdef12-3456",
            },
        )
        empty = await client.post(
            f"{base}/reply", data={"csrf_token": csrf, "kind": "text", "body": "  "}
        )
        client.cookies.set("cc_lang", "es")
        link = await client.post(
            f"{base}/reply",
            data={"csrf_token": csrf, "kind": "link", "url": "www.mataro.cat", "body": "Mireu"},
        )
    assert page.status_code == 400
    text = html.unescape(page.text)
    assert 'value="141,5"' in text
    assert "Oficina d'Atenció Ciutadana" in text
    assert 'value="La Riera, 48"' in text
    assert 'value="abcdef12-3456"' in text  # the same request: a resend is not sent twice
    assert 'value="location" checked' in text
    error = text[text.index('data-error="latitude"') :]
    assert error.split(">", 1)[1].startswith("Latitud entre -90 i 90")
    assert empty.status_code == 400
    assert 'data-error="body">Escriviu el text de la resposta.' in html.unescape(empty.text)
    assert link.status_code == 400
    link_text = html.unescape(link.text)
    assert 'value="www.mataro.cat"' in link_text
    assert ">Mireu</textarea>" in link_text
    assert "Hace falta una dirección que empiece por https://" in link_text
    assert await _sent(world, conv.id) == []


async def test_a_document_is_sent_with_the_reply_box_as_its_caption(world: World) -> None:
    conv = await world.conversation("web-a")
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        page = await client.get(f"/console/conversations/{conv.id}")
        response = await client.post(
            f"/console/conversations/{conv.id}/reply",
            data={
                "csrf_token": csrf,
                "kind": "document",
                "url": "https://www.mataro.cat/doc.pdf",
                "body": "El formulari",
            },
        )
    assert 'name="caption"' not in page.text  # one text box: the one that is sent
    assert response.status_code == 303
    assert await _sent(world, conv.id) == [
        Media(
            media_kind=MediaKind.DOCUMENT,
            link="https://www.mataro.cat/doc.pdf",
            caption="El formulari",
        )
    ]


@pytest.mark.parametrize(
    ("lang", "kind", "extra", "body_length", "words"),
    [
        ("ca", "text", {}, 4097, "Massa llarg: com a màxim 4096 caràcters"),
        ("es", "text", {}, 25_000, "Demasiado largo: como máximo 4096 caracteres"),
        (
            "en",
            "document",
            {"url": "https://www.mataro.cat/doc.pdf"},
            1001,
            "Too long: at most 1000 characters",
        ),
    ],
)
async def test_a_reply_too_long_comes_back_with_the_draft_and_the_error_by_the_box(
    world: World, lang: str, kind: str, extra: dict[str, str], body_length: int, words: str
) -> None:
    conv = await world.conversation("wa-a")
    body = ("Bon dia, " * 3000)[: body_length - 1] + "Z"
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        client.cookies.set("cc_lang", lang)
        page = await client.post(
            f"/console/conversations/{conv.id}/reply",
            data={"csrf_token": csrf, "kind": kind, "body": body, **extra},
        )
    assert page.status_code == 400
    text = html.unescape(page.text)
    assert f">{body}</textarea>" in text  # every character typed is back in the box
    assert text[text.index('data-error="body"') :].split(">", 1)[1].startswith(words)
    assert await _sent(world, conv.id) == []


@pytest.mark.parametrize(
    ("form", "wrong"),
    [
        ({"kind": "link", "url": "https://x.cat/" + "a" * 2000}, "url"),
        ({"kind": "location", "latitude": "41", "longitude": "2", "name": "n" * 201}, "name"),
        ({"kind": "location", "latitude": "41", "longitude": "2", "address": "a" * 301}, "address"),
        ({"kind": "document", "url": "https://x.cat/a.pdf", "caption": "c" * 1001}, "body"),
        ({"kind": "document", "url": "https://x.cat/a.pdf", "filename": "f" * 201}, "filename"),
    ],
)
def test_every_field_over_its_limit_names_itself(form: dict[str, str], wrong: str) -> None:
    with pytest.raises(InvalidReply) as refused:
        reply_content(form, form["kind"])
    assert (refused.value.field, refused.value.key) == (wrong, "too_long")
    assert refused.value.params["n"] in (200, 300, 1000, 2000)


async def test_a_fetched_reply_too_long_is_refused_with_the_limit_in_words(world: World) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        refused = await client.post(
            f"/console/conversations/{conv.id}/reply",
            data={"kind": "text", "body": "x" * 5000},
            headers={"X-CSRF-Token": csrf, "X-Requested-With": "fetch"},
        )
    assert refused.status_code == 400
    assert "com a màxim 4096 caràcters" in html.unescape(refused.text)
