"""The operator console and the admin pages of the reference service.

Server-rendered pages (Jinja2) with a little vanilla JavaScript for live updates; no build step.
The service mounts the routes::

    from civicchat.service.console import ConsoleContext, build_console_routes

    ctx = ConsoleContext(store=store, accounts=accounts, live=bus, blobs=blobs,
                         clock=SystemClock(), secret_key=secret)
    app = Starlette(routes=[*build_console_routes(ctx), ...])

Routes: ``/login``, ``/logout``, ``/console/...`` (operators), ``/admin/...`` (admins),
``/static/console/...``. See ``docs/console.md``.
"""

from __future__ import annotations

from civicchat.service.console.context import (
    CannedResponse,
    ConsoleAccount,
    ConsoleContext,
    DisabledAccount,
    load_canned_responses,
    parse_canned_responses,
)
from civicchat.service.console.routes import build_console_routes
from civicchat.service.console.security import hash_password, verify_password

__all__ = [
    "CannedResponse",
    "ConsoleAccount",
    "ConsoleContext",
    "DisabledAccount",
    "build_console_routes",
    "hash_password",
    "load_canned_responses",
    "parse_canned_responses",
    "verify_password",
]
