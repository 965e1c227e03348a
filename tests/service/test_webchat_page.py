"""The web chat page a citizen opens: its language and what a wrong link says."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from civicchat.channels.webchat import MAX_TEXT_IN, WebChatHub
from civicchat.exceptions import ConfigError
from civicchat.service.config import ServiceConfig, load_config, parse_config
from civicchat.service.webchat import webchat_routes, webchat_titles


def _client() -> httpx.AsyncClient:
    app = Starlette(routes=webchat_routes(WebChatHub(), {"city-web": ""}))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chat.test")


async def test_a_wrong_chat_link_is_explained_in_both_languages() -> None:
    async with _client() as client:
        response = await client.get("/chat/old-link", headers={"accept-language": "es-ES"})
    assert response.status_code == 404
    assert "Aquest xat no existeix" in response.text
    assert "Este chat no existe" in response.text
    assert "no such chat" not in response.text


async def test_the_page_is_in_the_citizens_language_with_no_missing_icon() -> None:
    async with _client() as client:
        es = await client.get("/chat/city-web", headers={"accept-language": "es-ES,es;q=0.9"})
        ca = await client.get("/chat/city-web?lang=ca", headers={"accept-language": "es"})
    assert es.status_code == 200
    assert '<html lang="es">' in es.text
    assert '"lang": "es"' in es.text
    assert "Chat del 010 \\u00b7 Ayuntamiento" in es.text
    assert '<html lang="ca">' in ca.text
    # The tab icon is inline: the page asks the server for nothing that 404s.
    assert '<link rel="icon" href="data:,">' in es.text


MATARO = Path(__file__).resolve().parents[2] / "examples" / "mataro"


def _account(name: str, channel: str, extra: str) -> str:
    return (
        f"  - name: {name}\n    channel: {channel}\n"
        f"    catalog: {MATARO / 'catalog.yaml'}\n    office_hours: {MATARO / 'hours.yaml'}\n"
        + extra
    )


def _parse(tmp_path: Path, *accounts: str) -> ServiceConfig:
    return parse_config("accounts:\n" + "".join(accounts), base_dir=tmp_path, env={})


def _page_config(html: str) -> dict[str, Any]:
    found = re.search(r"var CONFIG = (\{.*?\});", html)
    assert found, "no CONFIG in the page"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


async def test_the_title_follows_the_language_when_configured_per_language(
    tmp_path: Path,
) -> None:
    config = _parse(
        tmp_path,
        _account(
            "city-web",
            "webchat",
            "    display_name: {ca: Xat de l'Ajuntament, es: Chat del Ayuntamiento}\n",
        ),
        _account("plain-web", "webchat", '    display_name: "One title"\n'),
        _account("bare-web", "webchat", ""),
    )
    (city, plain, bare) = config.accounts
    # The console and logs keep one string: the first language's.
    assert city.display_name == "Xat de l'Ajuntament"
    assert city.webchat is not None
    assert dict(city.webchat.title) == {"ca": "Xat de l'Ajuntament", "es": "Chat del Ayuntamiento"}
    assert plain.display_name == "One title"
    assert bare.webchat is None
    titles = webchat_titles(config)
    assert titles == {
        "city-web": {"ca": "Xat de l'Ajuntament", "es": "Chat del Ayuntamiento"},
        "plain-web": "One title",
        "bare-web": "",
    }
    app = Starlette(routes=webchat_routes(WebChatHub(), titles))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://chat.test") as client:
        es = _page_config((await client.get("/chat/city-web?lang=es")).text)
        ca = _page_config((await client.get("/chat/city-web?lang=ca")).text)
        one = _page_config((await client.get("/chat/plain-web?lang=es")).text)
        default = _page_config((await client.get("/chat/bare-web?lang=es")).text)
    assert es["title"] == "Chat del Ayuntamiento"
    assert ca["title"] == "Xat de l'Ajuntament"
    # Both titles are in the page, so the language switch changes it without a reload.
    assert es["titles"] == {"ca": "Xat de l'Ajuntament", "es": "Chat del Ayuntamiento"}
    assert one["titles"] == {"ca": "One title", "es": "One title"}
    assert default["titles"] == {
        "ca": "Xat del 010 · Ajuntament de Mataró",
        "es": "Chat del 010 · Ayuntamiento de Mataró",
    }
    assert es["uploads"] is False  # no upload route: the page hides the photo button


async def test_a_title_given_in_one_language_serves_both(tmp_path: Path) -> None:
    config = _parse(
        tmp_path,
        _account("city-web", "webchat", "    display_name: {es: Chat municipal}\n"),
    )
    assert config.accounts[0].display_name == "Chat municipal"
    app = Starlette(routes=webchat_routes(WebChatHub(), webchat_titles(config)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://chat.test") as client:
        ca = _page_config((await client.get("/chat/city-web?lang=ca")).text)
    assert ca["titles"] == {"ca": "Chat municipal", "es": "Chat municipal"}


@pytest.mark.parametrize(
    ("account", "message"),
    [
        (
            _account("city-wa", "whatsapp", "    display_name: {ca: A, es: B}\n"),
            "is for web chat accounts",
        ),
        (_account("city-web", "webchat", "    display_name: {}\n"), "a text for each language"),
        (_account("city-web", "webchat", "    display_name: {ca: '  '}\n"), "a text for each"),
        (_account("city-web", "webchat", "    display_name: {ca: 5}\n"), "a text for each"),
        (
            _account(
                "city-web", "webchat", "    display_name: {ca: A}\n    webchat: {title: {ca: B}}\n"
            ),
            "title once",
        ),
    ],
)
def test_a_wrong_title_per_language_is_refused_with_a_message(
    tmp_path: Path, account: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _parse(tmp_path, account)


async def test_the_page_allows_photo_previews_and_https_videos() -> None:
    async with _client() as client:
        page = await client.get("/chat/city-web")
    policy = page.headers["content-security-policy"]
    assert "img-src 'self' https: data: blob:" in policy  # the citizen's own photo, before upload
    assert "media-src 'self' https:" in policy  # a video above a question's buttons
    assert 'accept="image/*"' in page.text  # a phone offers its camera


def test_the_mataro_web_chat_has_its_title_in_both_languages() -> None:
    config = load_config(MATARO / "config.yaml", env={})
    assert webchat_titles(config)["mataro-web"] == {
        "ca": "Xat del 010 · Ajuntament de Mataró",
        "es": "Chat del 010 · Ayuntamiento de Mataró",
    }
    (web,) = [a for a in config.accounts if a.name == "mataro-web"]
    assert web.display_name == "Xat del 010 · Ajuntament de Mataró"  # the console's


async def test_the_served_page_title_is_in_the_pages_language_before_any_script() -> None:
    config = load_config(MATARO / "config.yaml", env={})
    titles = webchat_titles(config)
    app = Starlette(routes=webchat_routes(WebChatHub(), titles))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://chat.test") as client:
        es = await client.get("/chat/mataro-web", headers={"accept-language": "es-ES,es;q=0.9"})
        ca = await client.get("/chat/mataro-web?lang=ca")
        odd = Starlette(routes=webchat_routes(WebChatHub(), {"x-web": "<b>A & B</b>"}))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=odd), base_url="http://chat.test"
        ) as other:
            escaped = await other.get("/chat/x-web")
    assert "<title>Chat del 010 · Ayuntamiento de Mataró</title>" in es.text
    assert "<title>Xat del 010 · Ajuntament de Mataró</title>" in ca.text
    assert "<title>&lt;b&gt;A &amp; B&lt;/b&gt;</title>" in escaped.text


async def test_the_text_box_takes_what_the_channel_accepts_and_no_placeholder_is_left() -> None:
    async with _client() as client:
        page = (await client.get("/chat/city-web?lang=ca")).text
    box = re.search(r"<textarea id=\"text\"[^>]*>", page)
    assert box, "no text box in the page"
    assert f'maxlength="{MAX_TEXT_IN}"' in box.group(0)
    assert re.search(r"__[A-Z_]+__", page) is None
