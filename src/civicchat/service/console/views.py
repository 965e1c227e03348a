"""The operator console: queue, my conversations, a conversation, replies, actions, live events."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from civicchat.exceptions import RoutingError
from civicchat.messages import (
    Content,
    Location,
    Media,
    OutboundMessage,
    Text,
    content_from_json,
)
from civicchat.routing import ConversationState
from civicchat.service.console.compose import (
    DRAFT_FIELDS,
    REPLY_KINDS,
    InvalidReply,
    reply_content,
)
from civicchat.service.console.context import ConsoleAccount
from civicchat.service.console.i18n import translator
from civicchat.service.console.lists import make_row
from civicchat.service.console.web import (
    MAX_FORM_BYTES,
    SEEN_EVERY,
    Console,
    Denied,
    Principal,
    field,
)
from civicchat.service.dispatch import RETURNED_KEY, commit_move, lock_pool, returned_by
from civicchat.service.live import LiveEvent
from civicchat.storage.assignment_sql import (
    OPERATOR_REPLY_PREFIX,
    assignment_queries,
)
from civicchat.storage.base import (
    AuditEntry,
    Conversation,
    MediaState,
    Operator,
    OperatorRole,
    Presence,
    Transaction,
)

__all__ = ["ConsoleViews"]

log = logging.getLogger("civicchat.console")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9-]{8,64}\Z")
_URL = re.compile(r"^https?://[^\s<>\"]+\Z")
_TICKS = {
    "queued": "🕓",
    "sent": "✓",
    "delivered": "✓✓",
    "read": "✓✓",
    "played": "✓✓",
    "failed": "✗",
}
# Shown inline in the browser; anything else is downloaded (no HTML or SVG from citizens inline).
_INLINE_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "video/mp4",
        "video/3gpp",
        "video/webm",
        "audio/ogg",
        "audio/mpeg",
        "audio/mp4",
        "audio/aac",
        "audio/amr",
        "audio/webm",
        "application/pdf",
    }
)
SSE_HEARTBEAT = 15.0
SSE_MAX_SECONDS = 300.0  # the browser reconnects by itself; bounded streams ease shutdowns


@dataclass(frozen=True, slots=True)
class Shown:
    """One message of a conversation, ready for the template."""

    direction: str
    at: datetime
    content: Content
    status: str | None
    tick: str
    media_url: str | None


class ConsoleViews:
    def __init__(self, console: Console) -> None:
        self.c = console

    @property
    def now(self) -> datetime:
        return self.c.ctx.clock.now()

    # ------------------------------------------------------------------ one conversation

    async def _load(self, tx: Transaction, me: Principal, request: Request) -> Conversation:
        raw = request.path_params["cid"]
        conv = await tx.conversations.get(raw) if isinstance(raw, int) else None
        return me.check_conversation(conv)

    async def _load_locked(self, tx: Transaction, me: Principal, request: Request) -> Conversation:
        """The conversation read again under its operator pool's assignment lock (the one the
        dispatcher takes): whatever this request changes, nobody else is changing it too.

        A plain operator whose conversation a colleague (or the dispatcher) took meanwhile gets
        a 409 that says so."""
        raw = request.path_params["cid"]
        first = await tx.conversations.get(raw) if isinstance(raw, int) else None
        if first is None or first.account not in me.account_names:
            raise Denied(404)
        await lock_pool(tx, me.account(first.account).pool)
        conv = await tx.conversations.get(first.id)
        if conv is None:
            raise Denied(404)
        if (
            conv.state == "assigned"
            and conv.assigned_operator != me.id
            and not me.at_least(OperatorRole.SUPERVISOR)
        ):
            raise Denied(409, "taken")
        return me.check_conversation(conv)

    async def _messages(self, tx: Transaction, conv: Conversation) -> list[Shown]:
        shown = []
        for record in await tx.conversation_messages(conv.id, limit=300):
            try:
                content = content_from_json(record.content_json)
            except ValidationError:
                continue
            media_url = None
            if isinstance(content, Media):
                if content.media_id and record.direction == "in":
                    media_url = f"/console/conversations/{conv.id}/media/{content.media_id}"
                elif content.link and _URL.match(content.link):
                    media_url = content.link  # never a javascript: or data: address in an href
            status = record.status.value if record.status else None
            shown.append(
                Shown(
                    record.direction,
                    record.at,
                    content,
                    status,
                    _TICKS.get(status or "", ""),
                    media_url,
                )
            )
        return shown

    async def conversation(self, request: Request, me: Principal) -> Response:
        return await self._conversation_page(request, me)

    async def _conversation_page(
        self,
        request: Request,
        me: Principal,
        *,
        status: int = 200,
        draft: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
    ) -> Response:
        """The conversation; after a reply that could not be sent, with what the operator
        typed (``draft``) and the message next to the field to correct (``errors``)."""
        async with self.c.ctx.store.read_transaction() as tx:
            conv = await self._load(tx, me, request)
            account = me.account(conv.account)
            contact = await tx.contacts.get(conv.contact_id)
            messages = await self._messages(tx, conv)
            history = await tx.history.entries(conv.id)
            colleagues = [o for o in await self._colleagues(tx, account) if o.id != me.id]
            known = await assignment_queries(tx).operator_status([o.id for o in colleagues])
            # Offline or disabled colleagues cannot receive a transfer: not offered.
            colleagues = [
                o
                for o in colleagues
                if o.presence is not Presence.OFFLINE
                and not (o.id in known and known[o.id].disabled)
            ]
            assigned = (
                await tx.operators.get_operator(conv.assigned_operator)
                if conv.assigned_operator
                else None
            )
            replies = await assignment_queries(tx).reply_times([conv.id])
        row = make_row(me, conv, contact, replies.get(conv.id), self.now)
        lang = conv.language or "ca"
        suggestions = self._suggestions(account, messages, lang, me)
        canned = [
            (c.label(self.c.language(request)), c.render(lang, me.operator.name), c.shortcut)
            for c in account.canned
        ]
        return self.c.render(
            request,
            "conversation.html",
            me,
            status,
            draft=draft or {"kind": "text"},
            errors=errors or {},
            kinds=REPLY_KINDS,
            conv=conv,
            row=row,
            account=account,
            contact=contact,
            messages=messages,
            history=history,
            colleagues=colleagues,
            assigned=assigned,
            suggestions=suggestions,
            canned=canned,
            request_id=str(uuid.uuid4()),
            can_act=me.at_least(OperatorRole.SUPERVISOR) or conv.assigned_operator == me.id,
            Media=Media,
            Location=Location,
            Text=Text,
        )

    async def _colleagues(self, tx: Transaction, account: ConsoleAccount) -> list[Operator]:
        """Operators who work on ``account`` (registered on it or on its group)."""
        scopes = [account.name] + ([account.group] if account.group else [])
        return [o for scope in scopes for o in await tx.operators.operators(scope)]

    def _suggestions(
        self, account: ConsoleAccount, messages: Sequence[Shown], lang: str, me: Principal
    ) -> list[tuple[str, str, float]]:
        """Keyword replies for the citizen's last text: (title, reply text, score)."""
        engine = account.engine
        last = next((m.content for m in reversed(messages) if m.direction == "in"), None)
        if engine is None or not isinstance(last, Text):
            return []
        found = engine.match(last.body, language=lang)
        if found is None:
            return []
        out = []
        context: dict[str, object] = {"now": self.now, "name": ""}
        if account.office_hours is not None:
            context["office_hours"] = account.office_hours.describe(found.language)
        for match in (found, found.runner_up):
            if match is None:
                continue
            kw = engine.catalog.keyword(match.keyword_id)
            try:
                text = engine.render_reply(match.keyword_id, found.language, context)
            except Exception:  # a broken template must not break the operator's page
                log.warning("keyword %s reply could not be rendered", match.keyword_id)
                continue
            if kw is not None and text is not None:
                out.append((kw.label(found.language), text, match.score))
        return out

    async def messages_partial(self, request: Request, me: Principal) -> Response:
        async with self.c.ctx.store.read_transaction() as tx:
            conv = await self._load(tx, me, request)
            messages = await self._messages(tx, conv)
        return self.c.render(
            request,
            "_messages.html",
            me,
            conv=conv,
            messages=messages,
            Media=Media,
            Location=Location,
            Text=Text,
        )

    # ------------------------------------------------------------------ replies

    async def reply(self, request: Request, me: Principal) -> Response:
        form = await self.c.form(request)
        kind = field(form, "kind", max_length=20) or "text"
        try:
            content = reply_content(form, kind)
        except InvalidReply as exc:
            t = translator(self.c.language(request))
            if request.headers.get("x-requested-with") == "fetch":
                words = t(exc.key, **exc.params)
                return self.c.render(request, "error.html", me, 400, message=words, detail=None)
            # Nothing the operator typed is lost: the page again, their input kept.
            # Read without a cap of its own: a field over its limit is kept too, to be shortened.
            draft = {name: field(form, name, max_length=MAX_FORM_BYTES) for name in DRAFT_FIELDS}
            draft["kind"] = kind if kind in REPLY_KINDS else "text"
            draft["request_id"] = field(form, "request_id", max_length=64)
            return await self._conversation_page(
                request, me, status=400, draft=draft, errors={exc.field: t(exc.key, **exc.params)}
            )
        request_id = field(form, "request_id", max_length=64)
        if not _REQUEST_ID.match(request_id):
            request_id = str(uuid.uuid4())
        now = self.now
        actor = f"operator:{me.id}"
        async with self.c.ctx.store.transaction() as tx:
            conv = await self._load_locked(tx, me, request)
            message = OutboundMessage(
                channel=conv.channel,
                account=conv.account,
                recipient_id=conv.recipient_id,
                content=content,
            )
            written = await tx.enqueue(
                [message],
                key_prefix=f"{OPERATOR_REPLY_PREFIX}{request_id}",
                conversation_id=conv.id,
            )
            moved = False
            if written:  # a re-submitted form changes nothing twice
                try:
                    if conv.state in ("closed", "queued", "bot"):
                        # The reply's time goes with the move: one UPDATE of the row.
                        conv = await _assign_to(
                            tx, conv, me.id, at=now, actor=actor, note="reply", replied=True
                        )
                        moved = True
                except RoutingError:
                    raise Denied(409, "invalid") from None
                if not moved:
                    conv = dataclasses.replace(conv, last_operator_reply_at=now)
                    await tx.conversations.save(conv)
                await tx.audit.audit(
                    AuditEntry(
                        now,
                        actor,
                        "reply",
                        conv.account,
                        {"conversation": conv.id, "kind": content.kind, "request": request_id},
                    )
                )
        if written:
            log.info("operator %d replied in conversation %d (%s)", me.id, conv.id, content.kind)
            await self._publish(conv, "message_out", {"outbox": written})
            if moved:
                await self._publish(conv, "conversation", {"state": conv.state})
        return self._back(request, conv, me)

    def _back(self, request: Request, conv: Conversation, me: Principal) -> Response:
        if request.headers.get("x-requested-with") == "fetch":
            return Response(status_code=204)
        try:
            me.check_conversation(conv)
        except Denied:
            # Closed, or handed to a colleague: the operator may not open it any more, so the
            # queue is where they go next, not a "no permission" page.
            return RedirectResponse("/console", 303)
        return RedirectResponse(f"/console/conversations/{conv.id}", 303)

    async def _publish(self, conv: Conversation, kind: str, data: dict[str, Any]) -> None:
        await self._publish_account(conv.account, kind, data, conv.id)

    async def _publish_account(
        self, account: str, kind: str, data: dict[str, Any], conversation_id: int | None = None
    ) -> None:
        try:
            await self.c.ctx.live.publish(
                LiveEvent(account=account, kind=kind, conversation_id=conversation_id, data=data)
            )
        except Exception as exc:  # live updates are best effort; the change is committed
            log.warning("live event not published: %s", type(exc).__name__)

    # ------------------------------------------------------------------ actions

    async def _act(self, request: Request, me: Principal, action: str) -> Response:
        if action not in ("take", "close", "transfer"):
            raise Denied(404)
        form = await self.c.form(request)
        now = self.now
        actor = f"operator:{me.id}"
        async with self.c.ctx.store.transaction() as tx:
            conv = await self._load_locked(tx, me, request)
            supervisor = me.at_least(OperatorRole.SUPERVISOR)
            own = conv.assigned_operator == me.id
            if action == "take" and own:
                return self._back(request, conv, me)  # taken already (a second click): no-op
            if action != "take" and not (own or supervisor):
                raise Denied(403, "forbidden")
            details: dict[str, Any] = {"conversation": conv.id, "from": conv.state}
            try:
                if action == "take":
                    conv = await _assign_to(tx, conv, me.id, at=now, actor=actor, note="take")
                elif action == "close":
                    conv = await commit_move(
                        tx, conv, ConversationState.CLOSED, at=now, actor=actor
                    )
                elif (target := field(form, "to", max_length=20)) == "queue":
                    data = dict(conv.data or {})
                    if conv.assigned_operator is not None:
                        # The dispatcher never gives it back to whoever put it back.
                        holders = returned_by(conv) | {conv.assigned_operator}
                        data[RETURNED_KEY] = sorted(holders)
                    conv = await commit_move(
                        tx,
                        conv,
                        ConversationState.QUEUED,
                        at=now,
                        actor=actor,
                        note="transfer",
                        data=data,
                    )
                    details["to"] = "queue"
                else:
                    other = (
                        await tx.operators.get_operator(int(target)) if target.isdigit() else None
                    )
                    if other is None or not me.account(conv.account).member_of(other.account):
                        raise Denied(400, "invalid")
                    status = await assignment_queries(tx).operator_status([other.id])
                    if other.presence is Presence.OFFLINE or (
                        other.id in status and status[other.id].disabled
                    ):
                        # The dispatcher would hand it back to the queue at once: say so now.
                        raise Denied(409, "transfer_offline")
                    conv = await commit_move(
                        tx,
                        conv,
                        ConversationState.ASSIGNED,
                        at=now,
                        actor=actor,
                        operator=other.id,
                        note="transfer",
                    )
                    details["to"] = other.id
            except RoutingError:
                raise Denied(409, "invalid") from None
            details["to_state"] = conv.state
            await tx.audit.audit(AuditEntry(now, actor, action, conv.account, details))
        log.info("operator %d: %s conversation %d", me.id, action, conv.id)
        await self._publish(conv, "conversation", {"state": conv.state})
        return self._back(request, conv, me)

    async def take(self, request: Request, me: Principal) -> Response:
        return await self._act(request, me, "take")

    async def close(self, request: Request, me: Principal) -> Response:
        return await self._act(request, me, "close")

    async def transfer(self, request: Request, me: Principal) -> Response:
        return await self._act(request, me, "transfer")

    async def presence(self, request: Request, me: Principal) -> Response:
        form = await self.c.form(request)
        value = field(form, "presence", max_length=20)
        if value not in (Presence.AVAILABLE.value, Presence.AWAY.value):
            raise Denied(400, "invalid")
        async with self.c.ctx.store.transaction() as tx:
            await tx.operators.save_operator(
                dataclasses.replace(me.operator, presence=Presence(value))
            )
            await assignment_queries(tx).mark_seen(me.id, self.now)
        await self.c.announce_presence(me.operator)
        if request.headers.get("x-requested-with") == "fetch":
            return Response(status_code=204)
        return RedirectResponse("/console", 303)

    # ------------------------------------------------------------------ media and contacts

    async def media(self, request: Request, me: Principal) -> Response:
        media_id = request.path_params["media_id"]
        async with self.c.ctx.store.read_transaction() as tx:
            conv = await self._load(tx, me, request)
            in_conversation = any(
                isinstance(m.content, Media) and m.content.media_id == media_id
                for m in await self._messages(tx, conv)
                if m.direction == "in"
            )
            if not in_conversation:
                raise Denied(404)
            row = await tx.media.get_media(conv.channel, conv.account, media_id)
        if row is None or row.state is not MediaState.STORED or not row.blob_key:
            raise Denied(404, "media_pending")
        try:
            data = await self.c.ctx.blobs.get(row.blob_key)
        except KeyError:
            raise Denied(404, "media_pending") from None
        mime = (row.mime_type or "application/octet-stream").split(";")[0].strip().lower()
        inline = mime in _INLINE_TYPES
        headers = {
            "Content-Disposition": "inline" if inline else "attachment",
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        }
        return Response(
            data, media_type=mime if inline else "application/octet-stream", headers=headers
        )

    async def contact(self, request: Request, me: Principal) -> Response:
        contact_id = request.path_params["contact_id"]
        async with self.c.ctx.store.read_transaction() as tx:
            contact = await tx.contacts.get(contact_id)
            identities = await tx.contacts.identities(contact_id) if contact else []
            visible = [i for i in identities if i.account in me.account_names]
            if contact is None or not visible:
                raise Denied(404)
            convs = []
            for ident in visible:
                conv = await tx.conversations.latest_for(ident.channel, ident.account, contact.id)
                if conv is not None:
                    convs.append(conv)
        return self.c.render(
            request, "contact.html", me, contact=contact, identities=visible, conversations=convs
        )

    # ------------------------------------------------------------------ live

    async def events(self, request: Request, me: Principal) -> Response:
        return StreamingResponse(
            self.stream(me.account_names, operator_id=me.id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def stream(
        self,
        accounts: frozenset[str],
        *,
        heartbeat: float = SSE_HEARTBEAT,
        max_seconds: float = SSE_MAX_SECONDS,
        operator_id: int | None = None,
    ) -> AsyncIterator[str]:
        """Server-sent events for ``accounts``: only kind, account and conversation id go out
        (the page reloads what it shows), never message text.

        While the stream is open, ``operator_id``'s sign of life is recorded every
        ``SEEN_EVERY``: an open console keeps its operator's presence."""
        queue: asyncio.Queue[LiveEvent] = asyncio.Queue(maxsize=256)

        async def pump(account: str) -> None:
            async with self.c.ctx.live.subscribe(account) as events:
                async for event in events:
                    if queue.full():
                        with contextlib.suppress(asyncio.QueueEmpty):
                            queue.get_nowait()
                    queue.put_nowait(event)

        tasks = [asyncio.create_task(pump(a)) for a in sorted(accounts)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_seconds
        seen = self.now
        try:
            yield "retry: 2000\n: connected\n\n"
            while (left := deadline - loop.time()) > 0:
                if operator_id is not None and self.now - seen >= SEEN_EVERY:
                    seen = self.now
                    await self.c.mark_seen(operator_id)
                try:
                    event = await asyncio.wait_for(queue.get(), min(heartbeat, left))
                except TimeoutError:
                    yield ": ping\n\n"
                    continue
                payload = {
                    "kind": event.kind,
                    "account": event.account,
                    "conversation_id": event.conversation_id,
                }
                yield f"event: {event.kind}\ndata: {json.dumps(payload)}\n\n"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _assign_to(
    tx: Transaction,
    conv: Conversation,
    operator: int,
    *,
    at: datetime,
    actor: str,
    note: str,
    replied: bool = False,
) -> Conversation:
    """``conv`` assigned to ``operator`` (a closed one reopened first); ``replied``: the
    operator's reply time is saved with the move."""
    if conv.state == "closed":
        conv = await commit_move(tx, conv, ConversationState.QUEUED, at=at, actor=actor)
    return await commit_move(
        tx,
        conv,
        ConversationState.ASSIGNED,
        at=at,
        actor=actor,
        operator=operator,
        note=note,
        operator_reply_at=at if replied else None,
    )
