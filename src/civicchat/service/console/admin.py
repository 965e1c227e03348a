"""Admin pages: keywords and the catalog, office hours, accounts, audit (operators: ``operators``).

Every change is validated first, written atomically, put in force in this process, recorded in
the audit log and announced with a ``catalog_changed`` live event so other processes reload.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import jinja2
import jinja2.meta
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from civicchat.exceptions import CatalogError, CatalogProblem, ConfigError
from civicchat.keywords import Catalog, KeywordEngine, parse_catalog
from civicchat.routing import OfficeHours, load_office_hours, parse_office_hours
from civicchat.routing.hours import WEEKDAYS
from civicchat.service.console.context import ConsoleAccount
from civicchat.service.console.files import replace_keyword, write_atomic
from civicchat.service.console.i18n import translator
from civicchat.service.console.operators import scopes
from civicchat.service.console.web import Console, Denied, Principal, field
from civicchat.service.live import LiveEvent
from civicchat.storage.base import AuditEntry

__all__ = ["AdminViews"]

log = logging.getLogger("civicchat.console")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _aliases(value: str) -> list[str]:
    """The aliases typed in the form: one per line or separated by commas (as the keywords list
    shows them). A comma cannot be part of an alias: matching turns punctuation into spaces."""
    return [a.strip() for line in value.splitlines() for a in line.split(",") if a.strip()]


def _reply_text(value: str) -> str:
    """A reply as typed in a browser's text box, as it should be sent: browsers post CRLF line
    ends (a CR reaches WhatsApp and Telegram as is), and trailing spaces are invisible."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()


# What a reply template sees (docs/catalog.md "Templates"); anything else renders empty.
_TEMPLATE_NAMES = frozenset({"name", "now", "office_hours", "language", "language_hint"})
_PARSER = jinja2.Environment()
_ALIAS_TAKEN = re.compile(
    r"""^alias (['"])(?P<alias>.*)\1 is also an alias of keyword '(?P<other>[^']+)'"""
)


def unknown_variables(source: str) -> list[str]:
    """The variables a reply template uses that no reply context has (they render empty)."""
    if "{" not in source:
        return []
    try:
        found = jinja2.meta.find_undeclared_variables(_PARSER.parse(source))
    except jinja2.TemplateError:
        return []  # reported by the catalog's validation
    return sorted(found - _TEMPLATE_NAMES)


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
        saved = request.query_params.get("saved") == "1"  # where saving redirects to
        return self._keyword_page(
            request, me, account, catalog, kw.id, aliases, reply, text, saved=saved
        )

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
        saved: bool = False,
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
            unknown={lang: unknown_variables(reply.get(lang, "")) for lang in catalog.languages},
            message=message,
            saved=saved,
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
                lang: _reply_text(field(form, f"reply_{lang}", max_length=20_000))
                for lang in catalog.languages
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
                    aliases={lang: _aliases(v) for lang, v in aliases.items()},
                    reply=reply,
                    source=source,
                )
            except CatalogError as exc:
                t = translator(self.c.language(request))
                return page(400, problems=[_problem(p, keyword_id, t) for p in exc.problems])
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

    # ------------------------------------------------------------------ accounts and audit

    async def accounts(self, request: Request, me: Principal) -> Response:
        disabled = [d for d in self.c.ctx.disabled if d.member_of(me.operator.account)]
        return self.c.render(request, "admin_accounts.html", me, disabled=disabled)

    async def audit(self, request: Request, me: Principal) -> Response:
        async with self.c.ctx.store.read_transaction() as tx:
            entries = []
            for scope in scopes(me):
                entries.extend(await tx.audit.audit_entries(scope, limit=200))
        entries.sort(key=lambda e: e.at, reverse=True)
        return self.c.render(request, "admin_audit.html", me, entries=entries[:200])


def _problem(problem: CatalogProblem, keyword_id: str, t: Callable[..., str]) -> CatalogProblem:
    """A problem of a keyword edit as the admin can act on it: no line numbers of a file they
    do not see, and an alias taken by another keyword said in their language, naming it."""
    found = _ALIAS_TAKEN.match(problem.message)
    if found is None:
        return CatalogProblem(problem.file, None, problem.keyword, problem.message)
    # The catalog reports the conflict on whichever keyword comes later in the file.
    other = found["other"] if problem.keyword == keyword_id else problem.keyword
    message = t("alias_taken", alias=found["alias"], other=other or found["other"])
    return CatalogProblem(problem.file, None, None, message)


_CHANGED = (
    "el fitxer ha canviat mentre l'editàveu: torneu-lo a obrir / "
    "el archivo ha cambiado mientras lo editaba: vuelva a abrirlo"
)
