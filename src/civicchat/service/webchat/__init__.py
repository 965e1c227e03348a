"""The citizen's web chat: a page, an embeddable widget script and a server-sent-events stream.

- ``GET /chat/{account}``: the chat page (Catalan or Spanish, from ``?lang=`` or the browser);
- ``GET /chat/{account}/widget.js``: ``<script src=".../widget.js" async></script>`` on any page
  of the city's website adds a chat button that opens the page in a frame;
- ``GET /chat/{account}/events?visitor=...``: the replies, as server-sent events (``id`` is the
  hub's ``seq``, so a reconnecting page gets what it missed from the backlog);
- ``POST /chat/{account}/upload``: a photo (see :mod:`civicchat.service.webchat.uploads`).

The page posts messages (text, buttons, a shared location) to ``/webhooks/webchat/{account}``
as JSON. Its title may be one string or one per language (``display_name: {ca: ..., es: ...}``
in the account's configuration). No build step: the page is one HTML file with inline script,
served from this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from importlib import resources

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from civicchat.channels.webchat import WebChatHub, valid_visitor_id
from civicchat.service.config import ServiceConfig
from civicchat.service.webchat.uploads import WebChatUploads, upload_routes

__all__ = ["WebChatUploads", "webchat_routes", "webchat_titles"]

_HEARTBEAT_SECONDS = 15.0
_TITLES = {
    "ca": "Xat del 010 · Ajuntament de Mataró",
    "es": "Chat del 010 · Ayuntamiento de Mataró",
}

_NO_CHAT = "Aquest xat no existeix: revisa l'enllaç.\nEste chat no existe: revisa el enlace.\n"


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _language(request: Request) -> str:
    lang = request.query_params.get("lang", "")
    if lang in ("ca", "es"):
        return lang
    accept = request.headers.get("accept-language", "").lower()
    for part in accept.split(","):
        code = part.split(";")[0].strip()[:2]
        if code in ("ca", "es"):
            return code
    return "ca"


def webchat_titles(config: ServiceConfig) -> dict[str, str | Mapping[str, str]]:
    """The page title of each enabled web chat account: per language when configured so."""
    titles: dict[str, str | Mapping[str, str]] = {}
    for account in config.enabled_accounts:
        if account.channel != "webchat":
            continue
        section = account.webchat
        if section is not None and "title" in section.model_fields_set:
            titles[account.name] = dict(section.title)
        else:
            titles[account.name] = account.display_name
    return titles


def _titles(title: str | Mapping[str, str]) -> dict[str, str]:
    """A title for each language of the page; a language left out takes another's title."""
    if isinstance(title, str):
        return {lang: title or default for lang, default in _TITLES.items()}
    given = [t for t in title.values() if t]
    return {
        lang: title.get(lang) or (given[0] if given else default)
        for lang, default in _TITLES.items()
    }


def webchat_routes(
    hub: WebChatHub,
    accounts: Mapping[str, str | Mapping[str, str]],
    *,
    uploads: WebChatUploads | None = None,
) -> list[Route]:
    """Routes of the web chat accounts.

    ``accounts`` maps an account name to its page title: one string, or one per language
    (``{"ca": ..., "es": ...}``; an empty title is a default one). With ``uploads`` the page
    offers sending a photo.
    """
    page = _asset("page.html")
    widget = _asset("widget.js")
    titles = {name: _titles(title) for name, title in accounts.items()}

    def known(request: Request) -> str | None:
        name: str = request.path_params["account"]
        return name if name in accounts else None

    async def chat_page(request: Request) -> Response:
        name = known(request)
        if name is None:
            # A citizen who followed an old or mistyped link: tell them in both languages.
            return PlainTextResponse(_NO_CHAT, 404)
        lang = _language(request)
        config = {
            "account": name,
            "lang": lang,
            "title": titles[name][lang],
            "titles": titles[name],
            "uploads": uploads is not None and name in uploads.channels,
        }
        html = page.replace("__CONFIG__", json.dumps(config).replace("<", "\\u003c"))
        html = html.replace("__LANG__", lang)
        return Response(
            html,
            media_type="text/html; charset=utf-8",
            headers={
                "Content-Security-Policy": (
                    "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                    "style-src 'self' 'unsafe-inline'; img-src 'self' https: data: blob:; "
                    "media-src 'self' https:"
                ),
                "Cache-Control": "no-store",
            },
        )

    async def widget_js(request: Request) -> Response:
        name = known(request)
        if name is None:
            return PlainTextResponse("no such chat", 404)
        return Response(
            widget.replace("__ACCOUNT__", json.dumps(name)),
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300"},
        )

    async def events(request: Request) -> Response:
        name = known(request)
        if name is None:
            return PlainTextResponse("no such chat", 404)
        visitor = request.query_params.get("visitor", "")
        if not valid_visitor_id(visitor):
            return PlainTextResponse("visitor must be 16-128 of A-Z a-z 0-9 _ -", 400)
        last = request.headers.get("last-event-id") or request.query_params.get("after")
        after = int(last) if last and last.isdigit() else None
        return StreamingResponse(
            _stream(hub, name, visitor, after, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    routes = [
        Route("/chat/{account}", chat_page, methods=["GET"]),
        Route("/chat/{account}/widget.js", widget_js, methods=["GET"]),
        Route("/chat/{account}/events", events, methods=["GET"]),
    ]
    if uploads is not None:
        routes += upload_routes(uploads)
    return routes


async def _stream(
    hub: WebChatHub, account: str, visitor: str, after: int | None, request: Request
) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue(maxsize=200)

    async def pump() -> None:
        async for event in hub.subscribe(account, visitor, after=after):
            await queue.put(event)

    task = asyncio.create_task(pump())
    try:
        yield b"retry: 2000\n\n"
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), _HEARTBEAT_SECONDS)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": keep-alive\n\n"
                continue
            data = json.dumps(event, ensure_ascii=False)
            yield f"id: {event.get('seq', '')}\nevent: message\ndata: {data}\n\n".encode()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
