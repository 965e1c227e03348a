"""The web chat page a citizen opens: its language and what a wrong link says."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from civicchat.channels.webchat import WebChatHub
from civicchat.service.webchat import webchat_routes


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
