"""Cases in the reference service: the report flow's hook, citizen notifications, the signed
photo link for Open311 and the Open311 worker (``docs/cases.md``).

:class:`CaseServices` is built from the ``cases:`` section of the service configuration
(:meth:`CaseServices.from_config`, None when the section names no cases file) and holds:

* ``chat``: the :class:`~civicchat.cases.chat.CaseChat` the bot calls first;
* ``cases``: the :class:`~civicchat.cases.sql.SqlCaseStore` on the service's database;
* :meth:`change_status` / :meth:`assign`: what the console does, each in one transaction with
  its audit entry and the citizen's notification in the outbox (a WhatsApp conversation whose
  24-hour window is closed gets the ``case_status_update`` template instead of free text);
* :meth:`media_route`: ``GET /media/case/{token}``, the photo of a case behind a signed,
  expiring link (the link Open311 gets);
* :class:`Open311Worker`: forwards new cases and polls their status. The schedule is the
  ``open311_next_at`` column of the case, so a case not yet forwarded when the service stops is
  forwarded after a restart; a 5xx or a timeout is tried again later with a growing delay, a
  4xx is recorded on the case (the console shows it) and not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from civicchat.bot import BotAccount
from civicchat.cases.chat import CaseChat
from civicchat.cases.config import CasesConfig, load_cases_config
from civicchat.cases.errors import CaseNotFoundError, Open311Error
from civicchat.cases.models import Case, CaseStatus
from civicchat.cases.notify import status_notification
from civicchat.cases.open311 import (
    Open311Client,
    RetryPolicy,
    forward_case,
    poll_case,
    signed_media_url,
    verify_signed_media_url,
)
from civicchat.cases.retention import apply_retention
from civicchat.cases.sql import SqlCaseStore
from civicchat.channels._http import provider_client
from civicchat.clock import Clock
from civicchat.exceptions import ConfigError
from civicchat.messages import OutboundContent, OutboundMessage
from civicchat.routing.window import window_closes_at
from civicchat.storage.base import AuditEntry, BlobStore, MediaState
from civicchat.storage.schema import MediaRow
from civicchat.storage.sql import SqlStore, SqlTransaction

__all__ = [
    "CaseRetentionWorker",
    "CaseServices",
    "Open311Worker",
    "case_workers",
    "open311_worker",
]

logger = logging.getLogger("civicchat.cases")

MEDIA_PREFIX = "case/"  # signed media references: case/<reference>.<index>
_MAX_RETRY_DELAY = timedelta(hours=1)


class CaseServices:
    """Everything the service does with cases (see the module docstring)."""

    def __init__(
        self,
        config: CasesConfig,
        *,
        store: SqlStore,
        accounts: Mapping[str, BotAccount],
        blobs: BlobStore,
        clock: Clock,
        media_secret: str,
        public_url: str | None = None,
        chat_accounts: tuple[str, ...] | None = None,
        media_link_days: int = 30,
    ) -> None:
        self.config = config
        self.store = store
        self.accounts = accounts
        self.blobs = blobs
        self.clock = clock
        self.cases = SqlCaseStore(store.engine)
        self.chat = CaseChat(config, clock=clock, accounts=chat_accounts)
        self.media_secret = media_secret
        self.public_url = (public_url or "http://127.0.0.1:8000").rstrip("/")
        self.media_link_days = media_link_days

    @classmethod
    def from_config(
        cls,
        service: Any,
        *,
        store: SqlStore,
        accounts: Mapping[str, BotAccount],
        blobs: BlobStore,
        clock: Clock,
    ) -> CaseServices | None:
        """The case services of a :class:`~civicchat.service.config.ServiceConfig` (None when
        its ``cases:`` section names no cases file)."""
        settings = getattr(service, "cases", None)
        if settings is None or settings.config is None:
            return None
        config = load_cases_config(settings.config)
        if settings.retention_days is not None:
            config = config.model_copy(update={"retention_days": settings.retention_days})
        secret = service.secret_key or secrets.token_urlsafe(32)
        return cls(
            config,
            store=store,
            accounts=accounts,
            blobs=blobs,
            clock=clock,
            media_secret=secret,
            public_url=service.server.public_url,
            chat_accounts=settings.accounts,
            media_link_days=settings.media_link_days,
        )

    # ------------------------------------------------------------------ console actions

    async def change_status(
        self, reference: str, status: CaseStatus, *, note: str, actor: str
    ) -> Case:
        """Set the status with a note, audit it and notify the citizen, in one transaction."""

        async def change(cases: SqlCaseStore, now: datetime) -> Case:
            return await cases.update_status(reference, status, note=note, actor=actor, at=now)

        details = {"status": status.value, "note": note}
        return await self._console_action("case_status", details, change, actor=actor)

    async def assign(self, reference: str, department: str, *, note: str, actor: str) -> Case:
        """Assign the case to a department, audit it and tell the citizen, in one transaction."""
        if department not in {d.id for d in self.config.departments}:
            raise ConfigError(f"unknown department {department!r}")

        async def change(cases: SqlCaseStore, now: datetime) -> Case:
            return await cases.assign(reference, department, note=note, actor=actor, at=now)

        details = {"department": department, "note": note}
        return await self._console_action("case_assign", details, change, actor=actor, note=note)

    async def _console_action(
        self,
        action: str,
        details: dict[str, str],
        change: Callable[[SqlCaseStore, datetime], Awaitable[Case]],
        *,
        actor: str,
        note: str | None = None,
    ) -> Case:
        """``change`` the case, its audit entry and the citizen's notification (with ``note``)
        in one transaction."""
        now = self.clock.now()
        async with self.store.transaction() as tx:
            case = await change(SqlCaseStore.in_transaction(tx.connection), now)
            await tx.audit.audit(
                AuditEntry(
                    at=now,
                    actor=actor,
                    action=action,
                    account=case.account,
                    details={"case": case.reference, **details},
                )
            )
            await self.notify(tx, case, note=note)
        return case

    async def notify(self, tx: SqlTransaction, case: Case, *, note: str | None = None) -> list[int]:
        """Queue the case's status for the citizen on the channel they used.

        On WhatsApp with the 24-hour window closed it goes as the approved template
        (``case_status_update``, or the account's own name for it in ``templates.yaml``); the
        outbox sends templates whatever the window. Nothing goes for an anonymised case.
        """
        if case.citizen_id is None or case.anonymised_at is not None:
            return []
        account = self.accounts.get(case.account)
        if account is None or account.channel_name != case.channel:
            logger.warning(
                "case %s: account %s is gone, citizen not told", case.reference, case.account
            )
            return []
        note_text = status_notification(case, config=self.config, note=note)
        content: OutboundContent = note_text.as_text()
        if account.channel_name == "whatsapp":
            contact = await tx.contacts.identify(case.channel, case.account, case.citizen_id)
            conv = await tx.conversations.latest_for(case.channel, case.account, contact.id)
            closes = window_closes_at(None if conv is None else conv.last_inbound_at)
            if closes is None or self.clock.now() >= closes:
                template = note_text.as_template()
                name = account.texts.whatsapp_templates.get(self.config.status_template)
                content = template.model_copy(update={"name": name}) if name else template
        message = OutboundMessage(
            channel=case.channel,
            account=case.account,
            recipient_id=case.citizen_id,
            content=content,
        )
        stamp = self.clock.now().strftime("%Y%m%dT%H%M%S%f")
        return await tx.enqueue(
            [message], key_prefix=f"case:{case.reference}:{len(case.history)}:{stamp}"
        )

    # ------------------------------------------------------------------ photo links

    def photo_link(self, case: Case) -> str | None:
        """A signed link to the case's first photo or video (for Open311), valid for days."""
        if not case.media:
            return None
        expires = self.clock.now() + timedelta(days=self.media_link_days)
        ref = f"{MEDIA_PREFIX}{case.reference}.0"
        return signed_media_url(self.public_url, ref, self.media_secret, expires)

    async def media_bytes(self, case: Case, index: int) -> tuple[bytes, str] | None:
        """The stored bytes and type of the case's ``index``-th media, None while not stored."""
        if not 0 <= index < len(case.media):
            return None
        media = case.media[index]
        async with self.store.engine.connect() as conn:
            row = (
                await conn.execute(
                    MediaRow.__table__.select().where(
                        MediaRow.channel == (media.channel or case.channel),
                        MediaRow.account == case.account,
                        MediaRow.media_id == media.ref,
                    )
                )
            ).first()
        if row is None or row.state != MediaState.STORED.value or not row.blob_key:
            return None
        try:
            data = await self.blobs.get(row.blob_key)
        except KeyError:
            return None
        mime = (row.mime_type or media.mime_type or "application/octet-stream").split(";")[0]
        return data, mime.strip().lower()

    def media_route(self) -> Route:
        """``GET /media/case/{token}``: a case's photo behind a signed, expiring link."""

        async def endpoint(request: Request) -> Response:
            token = request.path_params["token"]
            url = f"/media/{quote(MEDIA_PREFIX + token, safe='')}?{request.url.query}"
            ref = verify_signed_media_url(url, self.media_secret, self.clock.now())
            reference, _, index = token.rpartition(".")
            if ref is None or not index.isdigit():
                return PlainTextResponse("invalid or expired link", 403)
            case = await self.cases.get(reference)
            found = None if case is None else await self.media_bytes(case, int(index))
            if found is None:
                return PlainTextResponse("not found", 404)
            data, mime = found
            headers = {
                "Cache-Control": "private, max-age=3600",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
            }
            inline = mime.startswith(("image/", "video/"))
            return Response(
                data, media_type=mime if inline else "application/octet-stream", headers=headers
            )

        return Route("/media/case/{token}", endpoint, methods=["GET"])

    # ------------------------------------------------------------------ retention

    async def apply_retention(self) -> int:
        """Anonymise or delete closed cases older than ``retention_days``; returns how many."""
        done = await apply_retention(
            self.cases,
            retention_days=self.config.retention_days,
            now=self.clock.now(),
            mode=self.config.retention_mode,
        )
        return len(done)


class Open311Worker:
    """Forwards cases to the Open311 endpoint and brings their status back (durably).

    Each round takes the cases whose ``open311_next_at`` is due: one not yet forwarded is sent
    (:func:`~civicchat.cases.open311.forward_case`; a transient failure is tried again after
    ``retry_base * 2**n``, capped at an hour; a rejection is kept on the case for the operator);
    a forwarded one is polled (:func:`~civicchat.cases.open311.poll_case`) every
    ``poll_interval`` until it is resolved or rejected, and a changed status is sent to the
    citizen. Several workers (processes) may run: each case is claimed by one of them for
    ``lease`` (:meth:`~civicchat.cases.sql.SqlCaseStore.claim_open311`).
    """

    def __init__(
        self,
        services: CaseServices,
        client: Open311Client,
        *,
        poll_interval: timedelta = timedelta(minutes=15),
        retry_base: timedelta = timedelta(seconds=30),
        idle_seconds: float = 5.0,
        batch: int = 20,
        lease: timedelta = timedelta(minutes=5),
        rng: random.Random | None = None,
        owned_http: httpx.AsyncClient | None = None,
    ) -> None:
        self.services = services
        self.client = client
        self._owned_http = owned_http  # closed when run_forever ends
        self.poll_interval = poll_interval
        self.retry_base = retry_base
        self.idle_seconds = idle_seconds
        self.batch = batch
        self.lease = lease
        self._rng = rng or random.Random()
        self._stopping = asyncio.Event()

    async def run_once(self) -> int:
        """One round; returns how many cases it looked at."""
        cases = self.services.cases
        due = await cases.claim_open311(
            self.services.clock.now(), lease=self.lease, limit=self.batch
        )
        for reference in due:
            try:
                await self.process(reference)
            except CaseNotFoundError:
                await cases.schedule_open311(reference, None)
            except Exception:
                logger.exception("case %s: Open311 round failed", reference)
                await cases.schedule_open311(reference, self.services.clock.now() + self.retry_base)
        return len(due)

    async def process(self, reference: str) -> None:
        """Forward or poll one case and schedule its next look."""
        services = self.services
        cases = services.cases
        clock = services.clock
        case = await cases.get(reference)
        if case is None or case.anonymised_at is not None:
            await cases.schedule_open311(reference, None)
            return
        link = case.open311
        if link.service_request_id is None and link.token is None:
            if case.status.is_final:
                await cases.schedule_open311(reference, None)  # closed here before it went
                return
            result = await forward_case(
                reference,
                store=cases,
                upkeep=cases,
                client=self.client,
                config=services.config,
                clock=clock,
                media_url=services.photo_link,
                retry=RetryPolicy(attempts=1),  # retried by the schedule, not by sleeping here
            )
            if result.error is None:
                await cases.schedule_open311(reference, clock.now() + self.poll_interval)
            elif result.retryable:
                failures = max(result.case.open311.attempts, 1)
                delay = min(self.retry_base * 2 ** (failures - 1), _MAX_RETRY_DELAY)
                await cases.schedule_open311(reference, clock.now() + delay)
            else:
                await cases.schedule_open311(reference, None)  # shown to the operator
            return
        try:
            changed = await poll_case(
                reference, store=cases, upkeep=cases, client=self.client, clock=clock
            )
        except Open311Error as exc:
            logger.warning("case %s: Open311 status not read (%s)", reference, type(exc).__name__)
            await cases.schedule_open311(reference, clock.now() + self.poll_interval)
            return
        if changed is not None:
            async with services.store.transaction() as tx:
                await services.notify(tx, changed)
            case = changed
        if case.status.is_final:
            await cases.schedule_open311(reference, None)
        else:
            await cases.schedule_open311(reference, clock.now() + self.poll_interval)

    async def run_forever(self) -> None:
        """Rounds until :meth:`stop`; sleeps ``idle_seconds`` (with jitter) when idle."""
        try:
            while not self._stopping.is_set():
                try:
                    busy = await self.run_once()
                except Exception:
                    logger.exception("Open311 worker round failed")
                    busy = 0
                if not busy:
                    delay = self.idle_seconds * (0.5 + self._rng.random())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            if self._owned_http is not None:
                await self._owned_http.aclose()

    def stop(self) -> None:
        self._stopping.set()


class CaseRetentionWorker:
    """Applies the case retention (``retention_days`` of the cases configuration) once a day.

    Separate from the chat's retention: closed cases older than the period are anonymised (or
    deleted, per ``retention_mode``); open cases are never touched.
    """

    def __init__(
        self,
        services: CaseServices,
        *,
        every: timedelta = timedelta(hours=24),
        idle_seconds: float = 60.0,
    ) -> None:
        self.services = services
        self.every = every
        self.idle_seconds = idle_seconds
        self._next = services.clock.now()
        self._stopping = asyncio.Event()

    async def run_once(self) -> int:
        """Apply the retention when due; returns how many cases it anonymised or deleted."""
        now = self.services.clock.now()
        if now < self._next:
            return 0
        self._next = now + self.every
        done = await self.services.apply_retention()
        if done:
            logger.info("case retention: %d case(s) anonymised or deleted", done)
        return done

    async def run_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception:
                logger.exception("case retention round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.idle_seconds)

    def stop(self) -> None:
        self._stopping.set()


def case_workers(
    services: CaseServices | None, service: Any, *, http: httpx.AsyncClient | None = None
) -> list[Any]:
    """The background work of cases for the service: retention, and Open311 when configured
    (``http``, or a client of its own, as :func:`open311_worker`)."""
    if services is None:
        return []
    workers: list[Any] = [CaseRetentionWorker(services)]
    open311 = open311_worker(services, service, http=http)
    if open311 is not None:
        workers.append(open311)
    return workers


def open311_worker(
    services: CaseServices | None, service: Any, *, http: httpx.AsyncClient | None = None
) -> Open311Worker | None:
    """The Open311 worker for the service configuration, None without an endpoint.

    It sends with ``http`` (the caller closes it), else with a
    :func:`~civicchat.channels._http.provider_client` of its own, closed when the worker stops:
    the providers' timeouts, proxies from the environment, and a pool without httpcore's
    per-request rescans (``docs/service.md``, performance).
    """
    settings = getattr(service, "cases", None)
    if services is None or settings is None or not settings.open311_url:
        return None
    owned: httpx.AsyncClient | None = None
    if http is None:
        http = owned = provider_client()
    client = Open311Client(
        http,
        settings.open311_url,
        api_key=settings.open311_api_key,
        jurisdiction_id=settings.open311_jurisdiction_id,
    )
    return Open311Worker(
        services,
        client,
        poll_interval=timedelta(minutes=settings.poll_minutes),
        owned_http=owned,
    )
