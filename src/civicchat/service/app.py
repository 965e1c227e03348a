"""The ASGI application: ``create_app(config)`` returns a Starlette app.

Routes: ``/webhooks/{channel}/{account}`` (see :mod:`~civicchat.service.webhooks`), ``/healthz``
(liveness: the process answers), ``/readyz`` (readiness: the database answers), ``/metrics``
(Prometheus), ``/chat/{account}`` (the web chat), and the console's routes (``/login``,
``/console/...``, ``/admin/...``) when :mod:`civicchat.service.console` is installed.

The lifespan checks (on SQLite: applies) the database migrations, creates the demo operators on
first start when configured, starts the live bus and, unless ``workers=False``, the workers.

Example::

    from civicchat.service.app import create_app
    from civicchat.service.config import load_config

    app = create_app(load_config("examples/mataro/config.yaml"))   # uvicorn-ready
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from civicchat.bot import BotAccount
from civicchat.channels._http import provider_client
from civicchat.channels.webchat import WebChatChannel, WebChatHub
from civicchat.clock import Clock
from civicchat.exceptions import ConfigError
from civicchat.service.config import ServiceConfig, config_from_environment
from civicchat.service.live import InProcessLiveBus, LiveBus, PostgresLiveBus
from civicchat.service.metrics import PROMETHEUS_CONTENT_TYPE, ServiceMetrics
from civicchat.service.runtime import RelayHub, ServiceRuntime, build_accounts
from civicchat.service.webchat import WebChatUploads, webchat_routes, webchat_titles
from civicchat.service.webchat.history import SqlWebChatHistory
from civicchat.service.webhooks import (
    InboxBatcher,
    IngressGate,
    WebhookContext,
    WebhookEndpoint,
    WindowLimiter,
)
from civicchat.storage.base import OperatorRole
from civicchat.storage.engine import check_schema, create_engine, current_revision, upgrade
from civicchat.storage.media import LocalBlobStore
from civicchat.storage.schema import OutboxRow
from civicchat.storage.sql import SqlStore

__all__ = [
    "GC_THRESHOLDS",
    "ServiceState",
    "app_from_environment",
    "create_app",
    "demo_operators",
    "prepare_database",
    "prepare_first_start",
    "tune_gc",
]

logger = logging.getLogger("civicchat.service")


@dataclass
class ServiceState:
    """Everything the app built, reachable as ``app.state.civicchat`` (for tests and tools)."""

    config: ServiceConfig
    store: SqlStore
    accounts: dict[str, BotAccount]
    live: LiveBus
    hub: WebChatHub
    blobs: LocalBlobStore
    metrics: ServiceMetrics
    clock: Clock
    runtime: ServiceRuntime
    client: httpx.AsyncClient
    console: bool = False


def _live_bus(config: ServiceConfig) -> LiveBus:
    wants_pg = config.live == "postgres" or (config.live == "auto" and not config.is_sqlite)
    if wants_pg:
        if config.is_sqlite:
            raise ConfigError("live: postgres needs a PostgreSQL database_url")
        schema = config.database_schema
        channel = f"civicchat_live_{schema}" if schema else "civicchat_live"
        return PostgresLiveBus(config.database_url, channel=channel)
    return InProcessLiveBus()


def _pool_options(config: ServiceConfig, *, workers: bool) -> dict[str, Any]:
    """PostgreSQL: enough pooled connections for every worker at once, plus the listeners, the
    webhooks' commits and the console. A pool smaller than that closes a connection on each
    return at peaks and opens a new one soon after; each new one costs PostgreSQL a backend
    start and the driver's type introspection (measured: ~120 connections opened in a 10-second
    run at 200 messages/s with the default 10)."""
    if config.is_sqlite or not workers:
        return {}  # a web-only process: the engine's default pool (10)
    inbox, outbox = config.workers.for_database(postgres=True)
    return {"pool_size": inbox + outbox + config.workers.media + 8}


def _sqlite_dir(url: str) -> None:
    """Create the directory of a SQLite file so a fresh checkout starts."""
    path = url.split(":///", 1)[1] if ":///" in url else url
    path = path.split("?", 1)[0]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def create_app(
    config: ServiceConfig,
    *,
    workers: bool | None = None,
    client: httpx.AsyncClient | None = None,
    announce: Callable[[str], None] | None = None,
) -> Starlette:
    """Build the service for ``config``.

    ``workers`` overrides ``config.workers.enabled``; ``client`` is the ``httpx.AsyncClient``
    used to reach the providers (a seam for tests); ``announce`` receives the lines meant for
    the operator starting the service (demo credentials), ``print`` by default.
    """
    clock = config.make_clock()
    if config.is_sqlite:
        _sqlite_dir(config.database_url)
    run_workers = config.workers.enabled if workers is None else workers
    engine = create_engine(
        config.database_url,
        schema=config.database_schema,
        **_pool_options(config, workers=run_workers),
    )
    store = SqlStore(engine, clock=clock)
    live = _live_bus(config)
    hub = WebChatHub()
    http = client or provider_client()
    blobs = LocalBlobStore(config.media.directory)
    # The web chat reads the citizens' photos back from the blob store (for the media worker).
    accounts = build_accounts(
        config, client=http, clock=clock, relay_hub=RelayHub(live), uploads=blobs
    )
    metrics = ServiceMetrics()
    # The webhooks of this process go first: its workers wait while they queue up.
    gate = IngressGate(config.workers.busy_webhooks)
    metrics.watch_gate(gate)
    runtime = ServiceRuntime(
        config,
        store=store,
        accounts=accounts,
        live=live,
        hub=hub,
        blobs=blobs,
        metrics=metrics,
        clock=clock,
        pacer=gate,
    )
    state = ServiceState(config, store, accounts, live, hub, blobs, metrics, clock, runtime, http)
    say = announce or (lambda line: print(line, flush=True))

    routes: list[BaseRoute] = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz(state), methods=["GET"]),
        Route("/metrics", _metrics(state), methods=["GET"]),
    ]
    disabled = {a.name: a.channel for a in config.accounts if not a.enabled}
    # The web chat's photos go through the same limiter and inbox commits as its text messages.
    webchat_limiter = WindowLimiter(config.server.webchat_messages_per_minute)
    # Several commits at once on PostgreSQL (each waits for its flush to disk); SQLite has one
    # writer.
    commits = config.server.inbox_commits or (1 if config.is_sqlite else 4)
    batcher = InboxBatcher(store, metrics, max_commits=commits)
    webhooks = WebhookContext(
        store,
        accounts,
        disabled,
        metrics,
        config.server.max_body_bytes,
        batcher=batcher,
        webchat_limiter=webchat_limiter,
        gate=gate,
    )
    chats = {a.name: a.display_name for a in accounts.values() if a.channel_name == "webchat"}
    webchats = {n: a.channel for n, a in accounts.items() if isinstance(a.channel, WebChatChannel)}
    uploads = WebChatUploads(
        webchats,
        blobs,
        batcher.accept,
        max_bytes=min(config.server.webchat_upload_max_bytes, config.media.max_bytes),
        limiter=webchat_limiter,
        metrics=metrics,
        keep=lambda key, data, mime: store.keep_blob(key, data, blobs, content_type=mime),
    )
    routes += webchat_routes(
        hub, webchat_titles(config), uploads=uploads, history=SqlWebChatHistory(store.engine)
    )
    console_routes = _console_routes(state)
    state.console = console_routes is not None
    routes += console_routes or []
    if runtime.cases is not None:
        routes.append(runtime.cases.media_route())  # cases: the photo link Open311 gets
    first_chat = next(iter(chats), None)

    async def home(_request: Request) -> Response:
        if state.console:
            return RedirectResponse("/console", 303)
        if first_chat is not None:
            return RedirectResponse(f"/chat/{first_chat}", 303)
        return PlainTextResponse("civicchat")

    routes.append(Route("/", home, methods=["GET"]))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            await prepare_database(config, store)
            if isinstance(live, PostgresLiveBus):
                await live.start()
            if config.demo_operators:
                for line in await demo_operators(config, store):
                    say(line)
            await runtime.start(workers=run_workers)
            yield
        finally:
            await runtime.stop()
            if isinstance(live, PostgresLiveBus):
                await live.close()
            if client is None:
                await http.aclose()
            await store.close()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(WebhookEndpoint, ctx=webhooks)],
    )
    app.state.civicchat = state
    return app


async def prepare_database(config: ServiceConfig, store: SqlStore) -> None:
    """Apply migrations on SQLite; on PostgreSQL refuse to start when behind (db upgrade)."""
    if config.is_sqlite:
        before = await current_revision(store.engine)
        await upgrade(store.engine)
        if before is None:
            logger.warning("created a new database (schema applied)")
    await check_schema(store.engine)


async def prepare_first_start(
    config: ServiceConfig, announce: Callable[[str], None] | None = None
) -> None:
    """Migrate (SQLite) and create the demo operators once, before several processes start."""
    say = announce or (lambda line: print(line, flush=True))
    if config.is_sqlite:
        _sqlite_dir(config.database_url)
    store = SqlStore(create_engine(config.database_url, schema=config.database_schema))
    try:
        await prepare_database(config, store)
        if config.demo_operators:
            for line in await demo_operators(config, store):
                say(line)
    finally:
        await store.close()


def _console_routes(state: ServiceState) -> list[BaseRoute] | None:
    try:
        from civicchat.service import console
    except ImportError:
        return None
    build = getattr(console, "build_console_routes", None)
    ctx_type = getattr(console, "ConsoleContext", None)
    account_type = getattr(console, "ConsoleAccount", None)
    if build is None or ctx_type is None or account_type is None:
        return None
    config = state.config
    secret = config.secret_key
    if not secret:
        # No key configured: a random one per start (operators log in again after a restart).
        secret = secrets.token_urlsafe(48)
        logger.warning("no secret_key configured: console sessions end when the service stops")
    templates_of: dict[str, dict[str, str]] = {}
    for name, account in state.accounts.items():
        templates_of[name] = dict(account.texts.whatsapp_templates)
    by_name = {a.name: a for a in config.accounts}
    accounts: dict[str, Any] = {}
    for name, account in state.accounts.items():
        acfg = by_name[name]
        accounts[name] = _make(
            account_type,
            name=name,
            channel=account.channel_name,
            display_name=account.display_name,
            engine=account.engine,
            catalog_path=account.catalog_path,
            office_hours=account.pipeline.office_hours,
            hours_path=acfg.office_hours,
            canned=_canned(console, acfg.canned_responses),
            templates=templates_of[name],
            group=acfg.group,
        )
    secure = config.server.secure_cookies
    if secure is None:
        secure = bool(config.server.public_url and config.server.public_url.startswith("https"))
    # Accounts that do not run (secrets missing): the admin's Accounts page lists them.
    dt = getattr(console, "DisabledAccount", None)
    disabled = (
        tuple(
            dt(
                name=a.name,
                channel=a.channel,
                display_name=a.display_name or a.name,
                missing=a.missing,
                group=a.group,
            )
            for a in config.accounts
            if not a.enabled
        )
        if dt
        else ()
    )
    ctx = _make(
        ctx_type,
        store=state.store,
        accounts=accounts,
        live=state.live,
        blobs=state.blobs,
        clock=state.clock,
        secret_key=secret,
        secure_cookies=secure,
        cases=state.runtime.cases,
        disabled=disabled,
    )
    routes: list[BaseRoute] = list(build(ctx))
    return routes


def _make(cls: Any, **values: Any) -> Any:
    """Build ``cls`` with the fields it has (the console's dataclasses may grow or shrink)."""
    fields = getattr(cls, "__dataclass_fields__", None)
    if fields is not None:
        values = {k: v for k, v in values.items() if k in fields}
    return cls(**values)


def _canned(console: Any, path: Path | None) -> tuple[Any, ...]:
    loader = getattr(console, "load_canned_responses", None)
    if path is None or loader is None:
        return ()
    return tuple(loader(path))


async def _healthz(_request: Request) -> Response:
    return PlainTextResponse("ok")


def _readyz(state: ServiceState) -> Callable[[Request], Any]:
    async def readyz(_request: Request) -> Response:
        try:
            async with state.store.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            # Reads alone are not enough: a stuck writer stops every webhook's commit.
            try:
                async with asyncio.timeout(2.0):
                    writable = await state.store.can_write()
            except TimeoutError:
                writable = False
        except Exception as exc:
            logger.warning("readiness check failed: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable", "database": "down"}, 503)
        if not writable:
            logger.warning("readiness check failed: no write transaction within 2 s")
            return JSONResponse({"status": "unavailable", "database": "writes stuck"}, 503)
        return JSONResponse({"status": "ready", "database": "ok"})

    return readyz


def _metrics(state: ServiceState) -> Callable[[Request], Any]:
    async def metrics(_request: Request) -> Response:
        try:
            inbox = {s.value: n for s, n in (await state.store.state_counts()).items()}
            async with state.store.engine.connect() as conn:
                rows = await conn.execute(
                    select(OutboxRow.status, func.count()).group_by(OutboxRow.status)
                )
                outbox = {str(status): int(n) for status, n in rows}
            state.metrics.set_queues(inbox, outbox)
        except Exception as exc:
            logger.warning("queue sizes unavailable: %s", type(exc).__name__)
        return Response(state.metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)

    return metrics


async def demo_operators(config: ServiceConfig, store: SqlStore) -> list[str]:
    """Create the demo operators on first start; returns the lines to print (passwords once)."""
    group = config.operator_group or next(
        (a.group for a in config.accounts if a.group), config.accounts[0].name
    )
    wanted = [
        ("admin", "Administració / Administración", "admin"),
        ("supervisor", "Supervisora 010", "supervisor"),
        ("operador", "Operador 010", "operator"),
        ("operadora", "Operadora 010", "operator"),
    ]
    hash_password = _hash_function()
    created: list[tuple[str, str, str]] = []
    try:
        async with store.transaction() as tx:
            if await tx.operators.by_login("admin") is not None:
                return []
            for login, name, role in wanted:
                password = secrets.token_urlsafe(9)
                await tx.operators.add_operator(
                    account=group,
                    name=name,
                    login=login,
                    password_hash=hash_password(password),
                    role=OperatorRole(role),
                )
                created.append((login, password, role))
    except IntegrityError:
        return []  # another process created them at the same moment (and printed them)
    lines = ["", "Demo operators created (shown only now; change them in the console):"]
    lines += [f"  {login:<11} {password}   ({role})" for login, password, role in created]
    lines.append("")
    return lines


def _hash_function() -> Callable[[str], str]:
    try:
        from civicchat.service.console import hash_password

        return hash_password
    except ImportError:
        from argon2 import PasswordHasher

        return PasswordHasher().hash


def app_from_environment() -> Starlette:
    """The app of ``CIVICCHAT_CONFIG`` (uvicorn's factory for ``serve --workers N``)."""
    config, workers = config_from_environment()
    app = create_app(config, workers=workers)
    tune_gc()
    return app


GC_THRESHOLDS = (50_000, 20, 100)
"""The garbage collector's thresholds in a service process (Python's default: 700, 10, 10)."""


def tune_gc() -> None:
    """Tune the garbage collector of a process that runs the service (``civicchat serve`` and
    ``civicchat worker`` call it once the app is built; an application embedding
    :func:`create_app` decides for itself).

    The objects built at start (catalogs, keyword indexes, SQLAlchemy's tables) move to the
    permanent generation (``gc.freeze``): no collection walks them again. Young collections run
    every 50,000 allocations instead of 700: a webhook or a handled message allocates hundreds
    of short-lived objects, most of them freed by reference counting. Measured with
    ``benchmarks/pipeline.py`` in the closed loop (one web + one worker process): CPU per
    webhook 0.28-0.33 -> 0.20-0.27 ms, webhooks a second up 20-35 %.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
