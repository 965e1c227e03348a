"""Admin pages: keywords and the catalog, office hours, operators and teams, accounts, audit.

Every change is validated first, written atomically, put in force in this process, recorded in
the audit log and announced with a ``catalog_changed`` live event so other processes reload.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from civicchat.exceptions import CatalogError, CatalogProblem, ConfigError
from civicchat.keywords import Catalog, KeywordEngine, parse_catalog
from civicchat.routing import ConversationState, OfficeHours, load_office_hours, parse_office_hours
from civicchat.routing.hours import WEEKDAYS
from civicchat.service.console.context import ConsoleAccount
from civicchat.service.console.files import replace_keyword, write_atomic
from civicchat.service.console.i18n import translator
from civicchat.service.console.security import hash_password
from civicchat.service.console.web import Console, Denied, Principal, field
from civicchat.service.dispatch import commit_move, lock_pool
from civicchat.service.live import LiveEvent
from civicchat.storage.assignment_sql import assignment_queries
from civicchat.storage.base import AuditEntry, Conversation, Operator, OperatorRole, Presence

__all__ = ["AdminViews"]

log = logging.getLogger("civicchat.console")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def _csv(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


def _posted(form: Any, max_length: int) -> str:
    """A file's text from a form, with Unix line ends and a final newline."""
    return field(form, "text", max_length=max_length).replace("\r\n", "\n") + "\n"


T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class _Page(Protocol[T_contra]):
    """Renders the edit page of a file (see :meth:`AdminViews._save_file`)."""

    def __call__(
        self,
        shown: str,
        on_disk: str,
        value: T_contra | None,
        status: int = 200,
        problem: ConfigError | None = None,
        /,
        message: str | None = None,
    ) -> Response: ...


class AdminViews:
    def __init__(self, console: Console) -> None:
        self.c = console
        self._file_lock = asyncio.Lock()

    # ------------------------------------------------------------------ helpers

    def _audit_entry(
        self, me: Principal, action: str, account: str | None, **details: Any
    ) -> AuditEntry:
        return AuditEntry(self.c.ctx.clock.now(), f"operator:{me.id}", action, account, details)

    async def _audit(self, me: Principal, action: str, account: str | None, **details: Any) -> None:
        async with self.c.ctx.store.transaction() as tx:
            await tx.audit.audit(self._audit_entry(me, action, account, **details))

    async def _announce(self, path: Path, what: str) -> None:
        for account in self.c.ctx.accounts.values():
            if path in (account.catalog_path, account.hours_path):
                try:
                    await self.c.ctx.live.publish(
                        LiveEvent(account=account.name, kind="catalog_changed", data={"what": what})
                    )
                except Exception as exc:  # other processes reload on their next start anyway
                    log.warning("catalog_changed not published: %s", type(exc).__name__)

    def _account(self, request: Request, me: Principal) -> ConsoleAccount:
        return me.account(request.path_params["account"])

    def _catalog_of(self, account: ConsoleAccount) -> tuple[Catalog, str]:
        """The catalog in force and the file's text (for the version check)."""
        if account.engine is None:
            raise Denied(404, "no_engine")
        text = ""
        if account.catalog_path is not None:
            try:
                text = account.catalog_path.read_text(encoding="utf-8")
            except OSError:
                text = ""
        return account.engine.catalog, text

    # ------------------------------------------------------------------ keywords

    async def keywords(self, request: Request, me: Principal) -> Response:
        account = self._account(request, me)
        catalog, _ = self._catalog_of(account)
        lang = self.c.language(request)
        lang = lang if lang in catalog.languages else catalog.default_language
        return self.c.render(
            request, "admin_keywords.html", me, account=account, catalog=catalog, klang=lang
        )

    async def keyword(self, request: Request, me: Principal) -> Response:
        account = self._account(request, me)
        catalog, text = self._catalog_of(account)
        kw = catalog.keyword(request.path_params["keyword"])
        if kw is None:
            raise Denied(404)
        aliases = {lang: "\n".join(kw.aliases.get(lang, ())) for lang in catalog.languages}
        reply = {lang: kw.reply.get(lang, "") for lang in catalog.languages}
        return self._keyword_page(request, me, account, catalog, kw.id, aliases, reply, text)

    def _keyword_page(
        self,
        request: Request,
        me: Principal,
        account: ConsoleAccount,
        catalog: Catalog,
        keyword_id: str,
        aliases: dict[str, str],
        reply: dict[str, str],
        text: str,
        *,
        status: int = 200,
        problems: Sequence[CatalogProblem] = (),
        previews: dict[str, str] | None = None,
        message: str | None = None,
    ) -> Response:
        return self.c.render(
            request,
            "admin_keyword.html",
            me,
            status,
            account=account,
            catalog=catalog,
            kw=catalog.keyword(keyword_id),
            keyword_id=keyword_id,
            aliases=aliases,
            reply=reply,
            version=_digest(text),
            problems=problems,
            previews=previews or {},
            message=message,
            editable=account.catalog_path is not None,
        )

    async def save_keyword(self, request: Request, me: Principal) -> Response:
        account = self._account(request, me)
        form = await self.c.form(request)
        keyword_id = request.path_params["keyword"]
        action = field(form, "action", max_length=20)
        async with self._file_lock:
            catalog, text = self._catalog_of(account)
            if catalog.keyword(keyword_id) is None:
                raise Denied(404)
            aliases = {
                lang: field(form, f"aliases_{lang}", max_length=20_000)
                for lang in catalog.languages
            }
            reply = {
                lang: field(form, f"reply_{lang}", max_length=20_000) for lang in catalog.languages
            }
            path = account.catalog_path
            source = str(path) if path else "<catalog>"

            def page(status: int = 200, **kw: Any) -> Response:
                return self._keyword_page(
                    request,
                    me,
                    account,
                    catalog,
                    keyword_id,
                    aliases,
                    reply,
                    text,
                    status=status,
                    **kw,
                )

            if path is None or not text:
                return page(409, message=translator(self.c.language(request))("read_only"))
            if field(form, "version", max_length=64) != _digest(text):
                return page(409, problems=[CatalogProblem(source, None, None, _CHANGED)])
            try:
                new_text, new_catalog = replace_keyword(
                    text,
                    parse_catalog(text, source=source),
                    keyword_id,
                    aliases={lang: _lines(v) for lang, v in aliases.items()},
                    reply=reply,
                    source=source,
                )
            except CatalogError as exc:
                return page(400, problems=exc.problems)
            if action == "preview":
                return page(previews=self._previews(account, new_catalog, keyword_id))
            await self._put_catalog(me, account, path, new_text, new_catalog, keyword=keyword_id)
        return RedirectResponse(
            f"/admin/accounts/{account.name}/keywords/{keyword_id}?saved=1", 303
        )

    def _previews(
        self, account: ConsoleAccount, catalog: Catalog, keyword_id: str
    ) -> dict[str, str]:
        engine = KeywordEngine(catalog, clock=self.c.ctx.clock)
        out = {}
        hours, _ = self._hours_of(account)  # the file's, so an edit shows before a restart
        for lang in catalog.languages:
            context: dict[str, object] = {"now": self.c.ctx.clock.now(), "name": "Maria"}
            if hours is not None:
                context["office_hours"] = hours.describe(lang)
            try:
                out[lang] = engine.render_reply(keyword_id, lang, context) or ""
            except Exception as exc:  # shown to the admin, who is fixing exactly that
                out[lang] = f"⚠ {exc}"
        return out

    async def _put_catalog(
        self,
        me: Principal,
        account: ConsoleAccount,
        path: Path,
        text: str,
        catalog: Catalog,
        **details: Any,
    ) -> None:
        await write_atomic(path, text)
        engines = {
            id(a.engine): a.engine
            for a in self.c.ctx.accounts.values()
            if a.catalog_path == path and a.engine is not None
        }
        for engine in engines.values():
            engine.reload(catalog)
        await self._audit(
            me,
            "catalog_saved",
            account.name,
            file=path.name,
            keywords=len(catalog.keywords),
            version=_digest(text),
            **details,
        )
        log.info("catalog %s saved by operator %d", path.name, me.id)
        await self._announce(path, "catalog")

    async def catalog(self, request: Request, me: Principal) -> Response:
        account = self._account(request, me)
        _, text = self._catalog_of(account)
        return self._catalog_page(request, me, account, text, text)

    def _catalog_page(
        self,
        request: Request,
        me: Principal,
        account: ConsoleAccount,
        text: str,
        on_disk: str,
        *,
        status: int = 200,
        problems: Sequence[CatalogProblem] = (),
        message: str | None = None,
    ) -> Response:
        return self.c.render(
            request,
            "admin_catalog.html",
            me,
            status,
            account=account,
            text=text,
            version=_digest(on_disk),
            problems=problems,
            message=message,
            editable=account.catalog_path is not None,
        )

    async def save_catalog(self, request: Request, me: Principal) -> Response:
        account = self._account(request, me)
        form = await self.c.form(request)
        text = _posted(form, 400_000)
        path = account.catalog_path
        source = str(path) if path else "<catalog>"

        def page(
            shown: str,
            on_disk: str,
            _value: Catalog | None,
            status: int = 200,
            problem: ConfigError | None = None,
            message: str | None = None,
        ) -> Response:
            problems = (
                problem.problems
                if isinstance(problem, CatalogError)
                else [CatalogProblem(source, None, None, str(problem))]
                if problem is not None
                else []
            )
            return self._catalog_page(
                request,
                me,
                account,
                shown,
                on_disk,
                status=status,
                problems=problems,
                message=message,
            )

        async def put(at: Path, value: Catalog) -> None:
            await self._put_catalog(me, account, at, text, value, whole=True)

        def load() -> tuple[Catalog | None, str]:
            return None, self._catalog_of(account)[1]

        return await self._save_file(
            request,
            form,
            text,
            path,
            load=load,
            parse=lambda: parse_catalog(text, source=source),
            page=page,
            put=put,
        )

    async def _save_file(
        self,
        request: Request,
        form: Any,
        text: str,
        path: Path | None,
        *,
        load: Callable[[], tuple[T | None, str]],
        parse: Callable[[], T],
        page: _Page[Any],
        put: Callable[[Path, T], Awaitable[None]],
    ) -> Response:
        """The steps of saving an edited file (the catalog, office hours): validate, stop at a
        check (``action`` other than ``save``), refuse without a file or when the file changed
        since the form was opened, then write, put in force, audit and announce (``put``)."""
        t = translator(self.c.language(request))
        async with self._file_lock:
            current, on_disk = load()
            try:
                value = parse()
            except ConfigError as exc:
                return page(text, on_disk, current, 400, exc)
            if field(form, "action", max_length=20) != "save":
                return page(text, on_disk, value, message=t("valid"))
            if path is None:
                return page(text, on_disk, current, 409, message=t("read_only"))
            if field(form, "version", max_length=64) != _digest(on_disk):
                return page(text, on_disk, current, 409, ConfigError(_CHANGED))
            await put(path, value)
        return page(text, text, value, message=t("saved"))

    # ------------------------------------------------------------------ office hours

    def _hours_of(self, account: ConsoleAccount) -> tuple[OfficeHours | None, str]:
        text = ""
        hours = account.office_hours
        if account.hours_path is not None:
            try:
                text = account.hours_path.read_text(encoding="utf-8")
                hours = load_office_hours(account.hours_path)
            except (OSError, ConfigError):
                pass
        return hours, text

    def _hours_page(
        self,
        request: Request,
        me: Principal,
        account: ConsoleAccount,
        text: str,
        on_disk: str,
        hours: OfficeHours | None,
        *,
        status: int = 200,
        error: str | None = None,
        message: str | None = None,
    ) -> Response:
        lang = self.c.language(request)
        return self.c.render(
            request,
            "admin_hours.html",
            me,
            status,
            account=account,
            hours=hours,
            text=text,
            version=_digest(on_disk),
            error=error,
            message=message,
            weekdays=WEEKDAYS,
            hlang=lang if lang in ("ca", "es") else "ca",
            editable=account.hours_path is not None,
        )

    async def hours(self, request: Request, me: Principal) -> Response:
        account = self._account(request, me)
        hours, text = self._hours_of(account)
        return self._hours_page(request, me, account, text, text, hours)

    async def save_hours(self, request: Request, me: Principal) -> Response:
        account = self._account(request, me)
        form = await self.c.form(request)
        text = _posted(form, 200_000)
        path = account.hours_path

        def page(
            shown: str,
            on_disk: str,
            hours: OfficeHours | None,
            status: int = 200,
            problem: ConfigError | None = None,
            message: str | None = None,
        ) -> Response:
            error = None if problem is None else str(problem)
            return self._hours_page(
                request,
                me,
                account,
                shown,
                on_disk,
                hours,
                status=status,
                error=error,
                message=message,
            )

        async def put(at: Path, hours: OfficeHours) -> None:
            await write_atomic(at, text)
            await self._audit(
                me,
                "office_hours_saved",
                account.name,
                file=at.name,
                version=_digest(text),
                holidays=len(hours.holidays),
            )
            log.info("office hours %s saved by operator %d", at.name, me.id)
            await self._announce(at, "office_hours")

        return await self._save_file(
            request,
            form,
            text,
            path,
            load=lambda: self._hours_of(account),
            parse=lambda: parse_office_hours(text, source=str(path or "<office hours>")),
            page=page,
            put=put,
        )

    # ------------------------------------------------------------------ operators

    def _scopes(self, me: Principal) -> list[str]:
        scopes: list[str] = []
        for account in me.accounts:
            for scope in (account.group, account.name):
                if scope and scope not in scopes:
                    scopes.append(scope)
        return scopes

    async def operators(self, request: Request, me: Principal, **extra: Any) -> Response:
        async with self.c.ctx.store.read_transaction() as tx:
            ops = [o for s in self._scopes(me) for o in await tx.operators.operators(s)]
            status = await assignment_queries(tx).operator_status([o.id for o in ops])
        disabled = {op_id for op_id, st in status.items() if st.disabled}
        teams = sorted({team for o in ops for team in o.teams})
        values: dict[str, Any] = {"message": None, "error": None, "temporary": None}
        values.update(extra)
        return self.c.render(
            request,
            "admin_operators.html",
            me,
            int(values.pop("status", 200)),
            operators=ops,
            disabled=disabled,
            teams=teams,
            scopes=self._scopes(me),
            **values,
        )

    def _fields(self, form: Any) -> dict[str, Any]:
        role = field(form, "role", max_length=20)
        capacity = field(form, "capacity", max_length=4)
        languages = _csv(field(form, "languages", max_length=200)) or ("ca", "es")
        teams = _csv(field(form, "teams", max_length=500))
        if role not in {r.value for r in OperatorRole} or not capacity.isdigit():
            raise Denied(400, "invalid")
        if not 1 <= int(capacity) <= 100:
            raise Denied(400, "invalid")
        return {
            "role": OperatorRole(role),
            "capacity": int(capacity),
            "languages": languages,
            "teams": teams,
        }

    async def create_operator(self, request: Request, me: Principal) -> Response:
        form = await self.c.form(request)
        name = field(form, "name", max_length=200)
        login = field(form, "login", max_length=200)
        scope = field(form, "account", max_length=200)
        values = self._fields(form)
        if not name or not login or scope not in self._scopes(me):
            raise Denied(400, "invalid")
        temporary = secrets.token_urlsafe(12)
        # argon2 before the transaction: the write lock is not held while it runs.
        password_hash = await asyncio.to_thread(hash_password, temporary)
        op: Operator | None = None
        # Pages are rendered after the transaction ends, never inside it: rendering reads in a
        # transaction of its own, and on SQLite a second one waits for the first for ever.
        async with self.c.ctx.store.transaction() as tx:
            if await tx.operators.by_login(login) is None:
                op = await tx.operators.add_operator(
                    account=scope,
                    name=name,
                    login=login,
                    password_hash=password_hash,
                    **values,
                )
                await tx.audit.audit(
                    self._audit_entry(
                        me,
                        "operator_created",
                        scope,
                        operator=op.id,
                        role=op.role.value,
                        capacity=op.capacity,
                        teams=list(op.teams),
                    )
                )
        if op is None:
            t = translator(self.c.language(request))
            return await self.operators(
                request, me, status=409, error=t("login_taken", login=login)
            )
        log.info("operator %d created by operator %d", op.id, me.id)
        return await self.operators(request, me, temporary=(login, temporary))

    async def _target(self, tx: Any, request: Request, me: Principal) -> Operator:
        op: Operator | None = await tx.operators.get_operator(request.path_params["operator_id"])
        if op is None or op.account not in self._scopes(me):
            raise Denied(404)
        return op

    async def update_operator(self, request: Request, me: Principal) -> Response:
        form = await self.c.form(request)
        values = self._fields(form)
        async with self.c.ctx.store.transaction() as tx:
            op = await self._target(tx, request, me)
            changed = dataclasses.replace(op, **values)
            await tx.operators.save_operator(changed)
            await tx.audit.audit(
                self._audit_entry(
                    me,
                    "operator_updated",
                    op.account,
                    operator=op.id,
                    role=changed.role.value,
                    capacity=changed.capacity,
                    teams=list(changed.teams),
                    languages=list(changed.languages),
                )
            )
        return await self.operators(
            request, me, message=translator(self.c.language(request))("saved")
        )

    async def reset_password(self, request: Request, me: Principal) -> Response:
        temporary = secrets.token_urlsafe(12)
        password_hash = await asyncio.to_thread(hash_password, temporary)
        async with self.c.ctx.store.transaction() as tx:
            op = await self._target(tx, request, me)
            await tx.operators.save_operator(dataclasses.replace(op, password_hash=password_hash))
            await tx.audit.audit(
                self._audit_entry(me, "password_reset", op.account, operator=op.id)
            )
        return await self.operators(request, me, temporary=(op.login, temporary))

    async def disable_operator(self, request: Request, me: Principal) -> Response:
        """Disable an operator: they cannot log in (their sessions end), are never assigned,
        and what they hold goes back to the queue; their history stays."""
        now = self.c.ctx.clock.now()
        actor = f"operator:{me.id}"
        requeued: list[Conversation] = []
        async with self.c.ctx.store.transaction() as tx:
            op = await self._target(tx, request, me)
            if op.id == me.id:
                raise Denied(409, "self_disable")
            queries = assignment_queries(tx)
            mine = [a for a in self.c.ctx.accounts.values() if a.member_of(op.account)]
            for pool in sorted({a.pool for a in mine}):  # one order: no deadlock with others
                await lock_pool(tx, pool)
            op = await self._target(tx, request, me)  # read again under the locks
            await queries.set_disabled(op.id, now)
            op = dataclasses.replace(op, presence=Presence.OFFLINE)
            await tx.operators.save_operator(op)
            for account in mine:
                for conv in await queries.conversations(account.name, "assigned", lock=True):
                    if conv.assigned_operator == op.id:
                        moved = await commit_move(
                            tx,
                            conv,
                            ConversationState.QUEUED,
                            at=now,
                            actor=actor,
                            note="operator_disabled",
                        )
                        requeued.append(moved)
            await tx.audit.audit(
                self._audit_entry(
                    me, "operator_disabled", op.account, operator=op.id, requeued=len(requeued)
                )
            )
        log.info("operator %d disabled by operator %d", op.id, me.id)
        await self.c.announce_presence(op)
        for conv in requeued:
            await self._publish_conversation(conv)
        t = translator(self.c.language(request))
        return await self.operators(request, me, message=t("operator_disabled", name=op.name))

    async def enable_operator(self, request: Request, me: Principal) -> Response:
        async with self.c.ctx.store.transaction() as tx:
            op = await self._target(tx, request, me)
            await assignment_queries(tx).set_disabled(op.id, None)
            await tx.audit.audit(
                self._audit_entry(me, "operator_enabled", op.account, operator=op.id)
            )
        log.info("operator %d enabled by operator %d", op.id, me.id)
        t = translator(self.c.language(request))
        return await self.operators(request, me, message=t("operator_enabled", name=op.name))

    async def delete_operator(self, request: Request, me: Principal) -> Response:
        """Delete an operator nothing refers to (never logged in, no conversation, no history);
        one with history is disabled instead, so the history keeps meaning something."""
        deleted: Operator | None = None
        async with self.c.ctx.store.transaction() as tx:
            op = await self._target(tx, request, me)
            if op.id == me.id:
                raise Denied(409, "self_disable")
            queries = assignment_queries(tx)
            if await queries.operator_references(op.id) == 0:
                await queries.delete_operator(op.id)
                await tx.audit.audit(
                    self._audit_entry(
                        me, "operator_deleted", op.account, operator=op.id, login=op.login
                    )
                )
                deleted = op
        t = translator(self.c.language(request))
        if deleted is None:
            return await self.operators(
                request, me, status=409, error=t("operator_in_use", name=op.name)
            )
        log.info("operator %d deleted by operator %d", op.id, me.id)
        return await self.operators(request, me, message=t("operator_deleted", name=op.name))

    async def _publish_conversation(self, conv: Conversation) -> None:
        try:
            await self.c.ctx.live.publish(
                LiveEvent(conv.account, "conversation", conv.id, {"state": conv.state})
            )
        except Exception as exc:  # best effort: the change is committed
            log.warning("live event not published: %s", type(exc).__name__)

    # ------------------------------------------------------------------ accounts and audit

    async def accounts(self, request: Request, me: Principal) -> Response:
        disabled = [d for d in self.c.ctx.disabled if d.member_of(me.operator.account)]
        return self.c.render(request, "admin_accounts.html", me, disabled=disabled)

    async def audit(self, request: Request, me: Principal) -> Response:
        async with self.c.ctx.store.read_transaction() as tx:
            entries = []
            for scope in self._scopes(me):
                entries.extend(await tx.audit.audit_entries(scope, limit=200))
        entries.sort(key=lambda e: e.at, reverse=True)
        return self.c.render(request, "admin_audit.html", me, entries=entries[:200])


_CHANGED = (
    "el fitxer ha canviat mentre l'editàveu: torneu-lo a obrir / "
    "el archivo ha cambiado mientras lo editaba: vuelva a abrirlo"
)
