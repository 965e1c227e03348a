"""The citizen's web chat: a page, an embeddable widget script and a server-sent-events stream.

- ``GET /chat/{account}``: the chat page (Catalan or Spanish, from ``?lang=`` or the browser);
- ``GET /chat/{account}/widget.js``: ``<script src=".../widget.js" async></script>`` on any page
  of the city's website adds a chat button that opens the page in a frame;
- ``GET /chat/{account}/events?visitor=...``: the replies, as server-sent events (``id`` is the
  hub's ``seq``, so a reconnecting page gets what it missed from the backlog; the page skips an
  event whose ``id`` its history already showed. ``since=``, which older pages send, is still
  checked to be a zone-aware ISO time but filters nothing: the history's times are when the
  outbox marked a reply sent, later than the event's own, and comparing the two lost replies);
- ``GET /chat/{account}/history?visitor=...``: both sides of the visitor's conversation, which
  a reloaded page shows again (see :mod:`civicchat.service.webchat.history`);
- ``POST /chat/{account}/upload``: a photo (see :mod:`civicchat.service.webchat.uploads`).

The history and the live stream are public reads: each has a per-address limit
(:data:`READS_PER_MINUTE` by default, a :class:`~civicchat.service.webhooks.WindowLimiter` of
its own, apart from the messages' one); over it, ``429`` with ``Retry-After``.

The page posts messages (text, buttons, a shared location) to ``/webhooks/webchat/{account}``
as JSON. Its title may be one string or one per language (``display_name: {ca: ..., es: ...}``
in the account's configuration). No build step: the page is one HTML file with inline script,
served from this package.

The page's text box is a textarea that grows a few lines (Enter sends, Shift+Enter is a new
line); its ``maxlength`` is the channel's ``MAX_TEXT_IN`` (4,096), written into the page when it
is served, and it says (ca/es) when a text reached it. It fits a 320 px phone. Replies show
WhatsApp's ``*bold*``, ``_italic_``, ``~strike~`` and triple-backtick mono with a JavaScript
mirror of the console's ``whatsapp_html`` (escape first, then styles and links), the same HTML
for the same text.
"""

from __future__ import annotations

import asyncio
import contextlib
import html as html_lib
import json
import logging
import math
from collections.abc import AsyncGenerator, Mapping
from datetime import datetime
from importlib import resources

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from civicchat.channels.webchat import MAX_TEXT_IN, WebChatHub, valid_visitor_id
from civicchat.service.config import ServiceConfig
from civicchat.service.webchat.history import (
    SqlWebChatHistory,
    WebChatHistory,
    history_json,
)
from civicchat.service.webchat.uploads import WebChatUploads, upload_routes
from civicchat.service.webhooks import WindowLimiter

__all__ = [
    "READS_PER_MINUTE",
    "SqlWebChatHistory",
    "WebChatHistory",
    "WebChatUploads",
    "webchat_routes",
    "webchat_titles",
]

logger = logging.getLogger("civicchat.service")

_HEARTBEAT_SECONDS = 15.0
HISTORY_LIMIT = 100  # messages a reloaded page shows again
#: Default per-address limit of each public read (the history, the live stream): a page load
#: costs one of each, a reconnecting stream one more; a client polling the database is stopped.
READS_PER_MINUTE = 60
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
    history: WebChatHistory | None = None,
    history_limiter: WindowLimiter | None = None,
    events_limiter: WindowLimiter | None = None,
) -> list[Route]:
    """Routes of the web chat accounts.

    ``accounts`` maps an account name to its page title: one string, or one per language
    (``{"ca": ..., "es": ...}``; an empty title is a default one). With ``uploads`` the page
    offers sending a photo. ``history`` is where a reloaded page finds the conversation again;
    without it, the service's database (``app.state.civicchat.store``) when there is one, else
    the page shows what the hub still keeps of the service's replies only.

    ``history_limiter`` and ``events_limiter`` count the reads of each client address
    (``request.client.host``: run behind a proxy with its forwarded-address headers trusted);
    by default each is a new ``WindowLimiter(READS_PER_MINUTE)``, never the messages' limiter,
    so reading the chat does not use up what a citizen may write. Over the limit: ``429``.
    """
    history_limiter = history_limiter or WindowLimiter(READS_PER_MINUTE)
    events_limiter = events_limiter or WindowLimiter(READS_PER_MINUTE)
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
        html = page.replace("__LANG__", lang).replace(
            "__TITLE__", html_lib.escape(titles[name][lang])
        )
        # The text box takes as much as the channel accepts: one limit, the channel's.
        html = html.replace("__MAX_TEXT__", str(MAX_TEXT_IN))
        html = html.replace("__CONFIG__", json.dumps(config).replace("<", "\\u003c"))
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

    def public_read(
        request: Request, limiter: WindowLimiter, what: str
    ) -> tuple[str, str] | Response:
        """The account and visitor of a read of ``what``, or its refusal: 404, 429 or 400."""
        name = known(request)
        if name is None:
            return PlainTextResponse("no such chat", 404)
        refused = _over_limit(limiter, request, name, what)
        if refused is not None:
            return refused
        visitor = request.query_params.get("visitor", "")
        if not valid_visitor_id(visitor):
            return PlainTextResponse("visitor must be 16-128 of A-Z a-z 0-9 _ -", 400)
        return name, visitor

    async def events(request: Request) -> Response:
        read = public_read(request, events_limiter, "live stream")
        if isinstance(read, Response):
            return read
        name, visitor = read
        last = request.headers.get("last-event-id") or request.query_params.get("after")
        after = int(last) if last and last.isdigit() else None
        try:
            _time(request.query_params.get("since"))  # older pages send it: checked, unused
        except ValueError:
            return PlainTextResponse("since must be an ISO 8601 time with its zone", 400)
        return StreamingResponse(
            _stream(hub, name, visitor, after, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def past(request: Request) -> Response:
        read = public_read(request, history_limiter, "history")
        if isinstance(read, Response):
            return read
        name, visitor = read
        source = history if history is not None else _app_history(request)
        if source is None:
            return PlainTextResponse("no history here", 404)
        try:
            entries = await source.messages(name, visitor, limit=HISTORY_LIMIT)
        except Exception:
            # The page still works without its past: it says nothing and listens.
            logger.exception("web chat history of %s could not be read", name)
            return PlainTextResponse("history unavailable", 503)
        return JSONResponse(history_json(entries), headers={"Cache-Control": "no-store"})

    routes = [
        Route("/chat/{account}", chat_page, methods=["GET"]),
        Route("/chat/{account}/widget.js", widget_js, methods=["GET"]),
        Route("/chat/{account}/events", events, methods=["GET"]),
        Route("/chat/{account}/history", past, methods=["GET"]),
    ]
    if uploads is not None:
        routes += upload_routes(uploads)
    return routes


def _over_limit(
    limiter: WindowLimiter, request: Request, account: str, what: str
) -> Response | None:
    """A ``429`` when this client address has read ``what`` too often, else None."""
    client = request.client.host if request.client else "unknown"
    if limiter.allow(client):
        return None
    logger.debug("web chat %s of %s: a client over %d a minute", what, account, limiter.limit)
    wait = max(1, math.ceil(limiter.per))
    return PlainTextResponse(
        f"too many requests for the web chat {what} from this address "
        f"(at most {limiter.limit} in {wait} s): wait and retry",
        429,
        headers={"Retry-After": str(wait), "Cache-Control": "no-store"},
    )


def _app_history(request: Request) -> WebChatHistory | None:
    """The service's own database as history, when the app is the service (``create_app``)."""
    state = getattr(request.app.state, "civicchat", None)
    engine = getattr(getattr(state, "store", None), "engine", None)
    return None if engine is None else SqlWebChatHistory(engine)


def _time(value: str | None) -> datetime | None:
    """``since=``: None when absent; :class:`ValueError` when not a zone-aware ISO time."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("a time without its zone")
    return parsed


async def _stream(
    hub: WebChatHub,
    account: str,
    visitor: str,
    after: int | None,
    request: Request,
) -> AsyncGenerator[bytes, None]:
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
