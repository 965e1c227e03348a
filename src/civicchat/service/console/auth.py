"""Login, logout, changing one's password, and the UI language."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from civicchat.service.console.context import UI_LANGUAGES
from civicchat.service.console.i18n import LANG_COOKIE, RATE_LIMITED, translator
from civicchat.service.console.security import (
    burn_verify_time,
    hash_password,
    new_token,
    tokens_match,
    verify_password,
)
from civicchat.service.console.web import CSRF_FIELD, Console, Denied, Principal, field, safe_next
from civicchat.storage.assignment_sql import assignment_queries
from civicchat.storage.base import AuditEntry, OperatorRole, Presence

__all__ = ["AuthViews"]

log = logging.getLogger("civicchat.console")

LOGIN_CSRF_COOKIE = "cc_login"


class AuthViews:
    def __init__(self, console: Console) -> None:
        self.c = console

    def _client(self, request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def _login_page(
        self, request: Request, *, error: str | None = None, status: int = 200, login: str = ""
    ) -> Response:
        token = new_token()
        response = self.c.render(
            request,
            "login.html",
            None,
            status,
            csrf=token,
            error=error,
            login=login,
            next=safe_next(request.query_params.get("next")),
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            self.c.signer.dump_login_token(token),
            max_age=3600,
            path="/login",
            secure=self.c.ctx.secure_cookies,
            httponly=True,
            samesite="lax",
        )
        return self.c.finish(response)

    async def login_form(self, request: Request) -> Response:
        if await self.c.principal(request) is not None:
            return self.c.finish(RedirectResponse("/console", 303))
        return self._login_page(request)

    async def login(self, request: Request) -> Response:
        try:
            form = await self.c.form(request)
            login = field(form, "login", max_length=200)
            password = field(form, "password", max_length=1024)
        except Denied as exc:
            return self.c.finish(self.c.error(request, exc.status, exc.key, None))
        expected = self.c.signer.load_login_token(request.cookies.get(LOGIN_CSRF_COOKIE))
        given = form.get(CSRF_FIELD)
        if not tokens_match(expected, given if isinstance(given, str) else None):
            log.warning("login refused: missing or wrong CSRF token")
            return self.c.finish(self.c.error(request, 403, "csrf", None))
        now = self.c.ctx.clock.now()
        address = self._client(request)
        # Counted as a failure before the password is checked (cleared below if it is right):
        # many simultaneous tries cannot all pass a check made before any failure is recorded.
        wait = await self.c.limiter.attempt(login, address, now)
        if wait is not None:
            minutes = max(1, math.ceil(wait.total_seconds() / 60))
            log.warning("login rate limited (too many failures)")
            response = self._login_page(
                request, error=RATE_LIMITED.format(minutes=minutes), status=429, login=login
            )
            response.headers["Retry-After"] = str(int(wait.total_seconds()) + 1)
            return response
        async with self.c.ctx.store.read_transaction() as tx:
            operator = await tx.operators.by_login(login) if login else None
            status = (
                await assignment_queries(tx).operator_status([operator.id])
                if operator is not None
                else {}
            )
        # argon2 takes a good fraction of a second on purpose: keep it off the event loop.
        if operator is None:
            await asyncio.to_thread(burn_verify_time, password)
            ok = False
        else:
            ok = await asyncio.to_thread(verify_password, operator.password_hash, password)
        if ok and operator is not None and (known := status.get(operator.id)) and known.disabled:
            # Answered exactly like a wrong password, and still counted as a failure: a distinct
            # answer, reachable only with the right password, would confirm that password.
            log.info("login refused: operator %d is disabled", operator.id)
            ok = False
        if not ok or operator is None:
            log.info("failed console login")
            t = translator(self.c.language(request))
            return self._login_page(request, error=t("bad_login"), status=401, login=login)
        await self.c.limiter.succeeded(login, address, now)
        came_online = operator.presence is Presence.OFFLINE
        async with self.c.ctx.store.transaction() as tx:
            if came_online:
                # Operators start available; supervisors and admins start away: they receive
                # conversations only once they choose "available" themselves (admins never).
                start = (
                    Presence.AVAILABLE if operator.role is OperatorRole.OPERATOR else Presence.AWAY
                )
                operator = dataclasses.replace(operator, presence=start)
                await tx.operators.save_operator(operator)
            await assignment_queries(tx).mark_seen(operator.id, now)
            await tx.audit.audit(
                AuditEntry(now, f"operator:{operator.id}", "login", operator.account)
            )
        if came_online:
            await self.c.announce_presence(operator)
        log.info("operator %d logged in", operator.id)
        target = form.get("next")
        response = RedirectResponse(safe_next(target), 303)
        self.c.set_session(response, self.c.signer.for_operator(operator))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return self.c.finish(response)

    async def logout(self, request: Request, me: Principal) -> Response:
        now = self.c.ctx.clock.now()
        async with self.c.ctx.store.transaction() as tx:
            await tx.operators.save_operator(
                dataclasses.replace(me.operator, presence=Presence.OFFLINE)
            )
            await tx.audit.audit(
                AuditEntry(now, f"operator:{me.id}", "logout", me.operator.account)
            )
        await self.c.announce_presence(me.operator)
        response = RedirectResponse("/login", 303)
        self.c.clear_session(response)
        return response

    async def password_form(self, request: Request, me: Principal) -> Response:
        return self.c.render(request, "password.html", me, message=None, error=None)

    async def change_password(self, request: Request, me: Principal) -> Response:
        form = await self.c.form(request)
        t = translator(self.c.language(request))
        current = field(form, "current", max_length=1024)
        new = field(form, "new", max_length=1024)
        error = None
        if not await asyncio.to_thread(verify_password, me.operator.password_hash, current):
            error = t("wrong_password")
        elif len(new) < self.c.ctx.min_password_length:
            error = t("password_short", n=self.c.ctx.min_password_length)
        elif new != field(form, "repeat", max_length=1024):
            error = t("password_mismatch")
        if error is not None:
            return self.c.render(request, "password.html", me, 400, message=None, error=error)
        new_hash = await asyncio.to_thread(hash_password, new)
        operator = dataclasses.replace(me.operator, password_hash=new_hash)
        async with self.c.ctx.store.transaction() as tx:
            await tx.operators.save_operator(operator)
            await tx.audit.audit(
                AuditEntry(
                    self.c.ctx.clock.now(),
                    f"operator:{me.id}",
                    "password_changed",
                    operator.account,
                    {"operator": operator.id},
                )
            )
        session = self.c.signer.for_operator(operator)
        me2 = Principal(operator, session, me.accounts)
        response = self.c.render(
            request, "password.html", me2, message=t("password_changed"), error=None
        )
        self.c.set_session(response, session)
        return response

    async def set_language(self, request: Request) -> Response:
        lang = request.path_params["lang"]
        response = RedirectResponse(safe_next(request.query_params.get("next")), 303)
        if lang in UI_LANGUAGES:
            response.set_cookie(
                LANG_COOKIE,
                lang,
                max_age=365 * 86400,
                path="/",
                secure=self.c.ctx.secure_cookies,
                samesite="lax",
            )
        return self.c.finish(response)
