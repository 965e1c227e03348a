"""Request plumbing shared by the console and admin pages: sessions, CSRF, roles, rendering."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from civicchat.service.console.context import UI_LANGUAGES, ConsoleAccount, ConsoleContext
from civicchat.service.console.formatting import whatsapp_html
from civicchat.service.console.i18n import LANG_COOKIE, translator
from civicchat.service.console.security import (
    SESSION_COOKIE,
    LoginLimiter,
    Session,
    SessionSigner,
    password_fingerprint,
    tokens_match,
)
from civicchat.service.live import LiveEvent
from civicchat.storage.assignment_sql import assignment_queries
from civicchat.storage.base import Conversation, Operator, OperatorRole
from civicchat.storage.login_sql import LoginFailures

__all__ = ["Console", "Denied", "Principal", "browser_language"]

log = logging.getLogger("civicchat.console")

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_RANK = {OperatorRole.OPERATOR: 0, OperatorRole.SUPERVISOR: 1, OperatorRole.ADMIN: 2}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self'; script-src 'self'; "
        "style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MAX_FORM_BYTES = 512 * 1024  # a whole catalog fits; anything bigger is refused
SEEN_EVERY = timedelta(minutes=1)
"""How often an operator's sign of life is written (any page, the live stream): well under the
dispatcher's ``PRESENCE_TIMEOUT``, after which an available operator not seen is set away."""


class Denied(Exception):
    """Stop the request with ``status`` (404 hides existence, 403 refuses a role)."""

    def __init__(self, status: int, key: str = "not_found") -> None:
        super().__init__(key)
        self.status = status
        self.key = key


@dataclass(frozen=True, slots=True)
class Principal:
    """The logged-in operator, with their session and the accounts they work on."""

    operator: Operator
    session: Session
    accounts: tuple[ConsoleAccount, ...]

    @property
    def id(self) -> int:
        return self.operator.id

    @property
    def account_names(self) -> frozenset[str]:
        return frozenset(a.name for a in self.accounts)

    def at_least(self, role: OperatorRole) -> bool:
        return _RANK[self.operator.role] >= _RANK[role]

    def account(self, name: str) -> ConsoleAccount:
        """One of this operator's accounts, or :class:`Denied` 404 (never reveal another's)."""
        for account in self.accounts:
            if account.name == name:
                return account
        raise Denied(404)

    def check_conversation(self, conv: Conversation | None) -> Conversation:
        """The conversation if this operator may open it: 404 outside their accounts, 403 for a
        plain operator on a conversation that is neither waiting nor theirs."""
        if conv is None or conv.account not in self.account_names:
            raise Denied(404)
        if self.at_least(OperatorRole.SUPERVISOR):
            return conv
        if conv.state == "queued" or conv.assigned_operator == self.id:
            return conv
        raise Denied(403, "forbidden")


Handler = Callable[[Request, Principal], Awaitable[Response]]


class Console:
    """Holds the context, the session signer, the login limiter and the template environment."""

    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx
        self.signer = SessionSigner(ctx.secret_key, ctx.session_max_age)
        self.limiter = LoginLimiter(
            per_login=ctx.login_attempts,
            per_address=ctx.login_attempts_per_address,
            window=ctx.login_window,
            store=LoginFailures(ctx.store, ctx.secret_key) if ctx.shared_login_limit else None,
        )
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("civicchat.service.console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["ago"] = self.ago
        self.env.filters["local"] = self.local
        self.env.filters["whatsapp"] = whatsapp_html
        self.tz = _first_timezone(ctx)

    # ------------------------------------------------------------------ formatting

    def local(self, at: datetime | None, fmt: str = "%d/%m %H:%M") -> str:
        return "" if at is None else at.astimezone(self.tz).strftime(fmt)

    def ago(self, delta: timedelta | None) -> str:
        if delta is None:
            return ""
        minutes = max(0, int(delta.total_seconds() // 60))
        if minutes < 60:
            return f"{minutes} min"
        hours, minutes = divmod(minutes, 60)
        if hours < 48:
            return f"{hours} h {minutes:02d} min"
        return f"{hours // 24} d {hours % 24} h"

    # ------------------------------------------------------------------ requests

    def language(self, request: Request) -> str:
        """The language chosen in the console (cookie), else the browser's first language the
        console speaks (``Accept-Language``), else the default."""
        lang = request.cookies.get(LANG_COOKIE, "")
        if lang in UI_LANGUAGES:
            return lang
        return browser_language(request.headers.get("accept-language", "")) or (
            self.ctx.default_language
        )

    def accounts_of(self, operator: Operator) -> tuple[ConsoleAccount, ...]:
        return tuple(a for a in self.ctx.accounts.values() if a.member_of(operator.account))

    async def announce_presence(self, operator: Operator) -> None:
        """Tell every process that ``operator``'s presence changed: the dispatcher serves the
        queue at once instead of at its next periodic round. Best effort: the change is stored."""
        for account in sorted(a.name for a in self.accounts_of(operator)):
            event = LiveEvent(account=account, kind="presence", data={"operator": operator.id})
            try:
                await self.ctx.live.publish(event)
            except Exception as exc:
                log.warning("live event not published: %s", type(exc).__name__)

    async def principal(self, request: Request) -> Principal | None:
        session = self.signer.load(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        async with self.ctx.store.read_transaction() as tx:
            operator = await tx.operators.get_operator(session.operator_id)
            status = await assignment_queries(tx).operator_status([session.operator_id])
        if operator is None or password_fingerprint(operator.password_hash) != session.fingerprint:
            return None
        known = status.get(operator.id)
        if known is not None and known.disabled:
            return None  # disabled by an admin: every session ends
        seen = known.seen_at if known is not None else None
        if seen is None or self.ctx.clock.now() - seen >= SEEN_EVERY:
            await self.mark_seen(operator.id)
        return Principal(operator, session, self.accounts_of(operator))

    async def mark_seen(self, operator_id: int) -> None:
        """Record a sign of life of ``operator_id``'s console (their presence stays valid)."""
        try:
            async with self.ctx.store.transaction() as tx:
                await assignment_queries(tx).mark_seen(operator_id, self.ctx.clock.now())
        except Exception as exc:  # the page still works; presence may expire a little early
            log.warning("sign of life not recorded: %s", type(exc).__name__)

    async def form(self, request: Request) -> FormData:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
            raise Denied(413, "invalid")
        return await request.form(max_files=0, max_fields=200)

    def guard(
        self,
        handler: Handler,
        *,
        role: OperatorRole = OperatorRole.OPERATOR,
        api: bool = False,
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler``: login required (redirect, or 401 for ``api``), role checked, CSRF
        token checked on every POST, :class:`Denied` turned into a page."""

        async def endpoint(request: Request) -> Response:
            principal = await self.principal(request)
            if principal is None:
                if api or request.method != "GET":
                    return self.finish(JSONResponse({"error": "login required"}, 401))
                target = quote(request.url.path, safe="/")
                return self.finish(RedirectResponse(f"/login?next={target}", 303))
            try:
                if not principal.at_least(role):
                    raise Denied(403, "forbidden")
                if request.method == "POST":
                    await self.check_csrf(request, principal.session.csrf)
                response = await handler(request, principal)
            except Denied as exc:
                response = self.error(request, exc.status, exc.key, principal, api=api)
            return self.finish(response)

        return endpoint

    async def check_csrf(self, request: Request, expected: str) -> None:
        given = request.headers.get(CSRF_HEADER)
        if given is None:
            content_type = request.headers.get("content-type", "")
            if content_type.startswith(("application/x-www-form-urlencoded", "multipart/")):
                value = (await self.form(request)).get(CSRF_FIELD)
                given = value if isinstance(value, str) else None
        if not tokens_match(expected, given):
            log.warning("request refused: missing or wrong CSRF token on %s", request.url.path)
            raise Denied(403, "csrf")

    # ------------------------------------------------------------------ responses

    def finish(self, response: Response) -> Response:
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def render(
        self,
        request: Request,
        template: str,
        principal: Principal | None,
        status: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        lang = self.language(request)
        html = self.env.get_template(template).render(
            t=translator(lang),
            lang=lang,
            languages=UI_LANGUAGES,
            me=principal,
            csrf=principal.session.csrf if principal else values.pop("csrf", ""),
            path=request.url.path,
            roles=OperatorRole,
            cases_enabled=self.ctx.cases is not None,
            **values,
        )
        return HTMLResponse(html, status_code=status)

    def error(
        self,
        request: Request,
        status: int,
        key: str,
        principal: Principal | None,
        *,
        api: bool = False,
        detail: str | None = None,
    ) -> Response:
        message = translator(self.language(request))(key)
        if api:
            return JSONResponse({"error": message, "detail": detail}, status)
        return self.render(request, "error.html", principal, status, message=message, detail=detail)

    def set_session(self, response: Response, session: Session) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self.signer.dump(session),
            max_age=self.signer.max_age,
            path="/",
            secure=self.ctx.secure_cookies,
            httponly=True,
            samesite="lax",
        )

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            secure=self.ctx.secure_cookies,
            httponly=True,
            samesite="lax",
        )


def _first_timezone(ctx: ConsoleContext) -> ZoneInfo:
    for account in ctx.accounts.values():
        if account.office_hours is not None:
            return account.office_hours.timezone
    return ZoneInfo("Europe/Madrid")


_LOCAL_PATH = re.compile(r"^/(?![/\\])[A-Za-z0-9/_.~%?=&+-]*\Z")


def safe_next(value: object, default: str = "/console") -> str:
    """A local path to go back to, never another site (``//evil``, ``/\\evil``, and tabs or
    newlines that browsers drop, as in ``/\t/evil``, are refused)."""
    if isinstance(value, str) and len(value) <= 500 and _LOCAL_PATH.match(value):
        return value
    return default


def browser_language(header: str) -> str | None:
    """The console language ``Accept-Language`` prefers (``ca-ES,ca;q=0.9,es;q=0.8`` → ``ca``),
    or ``None`` when it names none of them."""
    best: tuple[float, int, str] | None = None
    for n, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        code = tag.strip().lower().split("-")[0]
        if code not in UI_LANGUAGES:
            continue
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        if quality <= 0:
            continue
        candidate = (-quality, n, code)
        if best is None or candidate < best:
            best = candidate
    return None if best is None else best[2]


def field(form: FormData | Mapping[str, Any], name: str, *, max_length: int = 4096) -> str:
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    if len(value) > max_length:
        raise Denied(400, "invalid")
    return value.strip()
