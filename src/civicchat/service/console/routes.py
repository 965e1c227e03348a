"""The console's route table."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from civicchat.service.console.admin import AdminViews
from civicchat.service.console.auth import AuthViews
from civicchat.service.console.cases import case_routes
from civicchat.service.console.context import ConsoleContext
from civicchat.service.console.lists import ListViews
from civicchat.service.console.operators import OperatorViews
from civicchat.service.console.views import ConsoleViews
from civicchat.service.console.web import Console
from civicchat.storage.base import OperatorRole

__all__ = ["build_console_routes"]


_FAVICON = resources.files("civicchat.service.console").joinpath("static/favicon.svg").read_bytes()


async def favicon(_request: Request) -> Response:
    return Response(
        _FAVICON,
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


def build_console_routes(ctx: ConsoleContext) -> list[BaseRoute]:
    """The routes of the console and the admin pages, ready to mount in the service's app.

    Pages need a logged-in operator (else a redirect to ``/login``); ``/console/api/...`` and
    the live stream answer 401 instead. Every POST needs the session's CSRF token.
    """
    console = Console(ctx)
    auth = AuthViews(console)
    views = ConsoleViews(console)
    lists = ListViews(console)
    admin = AdminViews(console)
    ops = OperatorViews(console)
    g = console.guard
    sup = OperatorRole.SUPERVISOR
    adm = OperatorRole.ADMIN
    static_dir = str(resources.files("civicchat.service.console").joinpath("static"))

    conv = "/console/conversations/{cid:int}"
    acct = "/admin/accounts/{account}"
    return [
        Route("/login", auth.login_form, methods=["GET"]),
        Route("/login", auth.login, methods=["POST"]),
        Route("/logout", g(auth.logout), methods=["POST"]),
        Route("/lang/{lang}", auth.set_language, methods=["GET"]),
        Route("/console", g(lists.home), methods=["GET"]),
        Route("/console/password", g(auth.password_form), methods=["GET"]),
        Route("/console/password", g(auth.change_password), methods=["POST"]),
        Route("/console/presence", g(views.presence), methods=["POST"]),
        Route("/console/api/lists", g(lists.queue_partial, api=True), methods=["GET"]),
        Route("/console/api/events", g(views.events, api=True), methods=["GET"]),
        Route(conv, g(views.conversation), methods=["GET"]),
        Route(f"{conv}/messages", g(views.messages_partial, api=True), methods=["GET"]),
        Route(f"{conv}/reply", g(views.reply), methods=["POST"]),
        Route(f"{conv}/take", g(views.take), methods=["POST"]),
        Route(f"{conv}/transfer", g(views.transfer), methods=["POST"]),
        Route(f"{conv}/close", g(views.close), methods=["POST"]),
        Route(f"{conv}/media/{{media_id}}", g(views.media), methods=["GET"]),
        Route("/console/contacts/{contact_id:int}", g(views.contact), methods=["GET"]),
        Route("/console/reports", g(lists.reports, role=sup), methods=["GET"]),
        *case_routes(console),
        Route("/admin", g(admin.accounts, role=adm), methods=["GET"]),
        Route("/admin/accounts", g(admin.accounts, role=adm), methods=["GET"]),
        Route(f"{acct}/keywords", g(admin.keywords, role=adm), methods=["GET"]),
        Route(f"{acct}/keywords/{{keyword}}", g(admin.keyword, role=adm), methods=["GET"]),
        Route(f"{acct}/keywords/{{keyword}}", g(admin.save_keyword, role=adm), methods=["POST"]),
        Route(f"{acct}/catalog", g(admin.catalog, role=adm), methods=["GET"]),
        Route(f"{acct}/catalog", g(admin.save_catalog, role=adm), methods=["POST"]),
        Route(f"{acct}/hours", g(admin.hours, role=adm), methods=["GET"]),
        Route(f"{acct}/hours", g(admin.save_hours, role=adm), methods=["POST"]),
        Route("/admin/operators", g(ops.operators, role=adm), methods=["GET"]),
        Route("/admin/operators", g(ops.create_operator, role=adm), methods=["POST"]),
        Route(
            "/admin/operators/{operator_id:int}",
            g(ops.update_operator, role=adm),
            methods=["POST"],
        ),
        Route(
            "/admin/operators/{operator_id:int}/password",
            g(ops.reset_password, role=adm),
            methods=["POST"],
        ),
        *[
            Route(
                f"/admin/operators/{{operator_id:int}}/{action}",
                g(handler, role=adm),
                methods=["POST"],
            )
            for action, handler in (
                ("disable", ops.disable_operator),
                ("enable", ops.enable_operator),
                ("delete", ops.delete_operator),
            )
        ],
        Route("/admin/audit", g(admin.audit, role=adm), methods=["GET"]),
        # Browsers ask for /favicon.ico on every page (the web chat's too): the console's icon.
        Route("/favicon.ico", favicon, methods=["GET"]),
        Mount("/static/console", app=StaticFiles(directory=static_dir), name="console-static"),
    ]
