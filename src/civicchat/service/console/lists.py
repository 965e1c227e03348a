"""The console's lists: the queue, my conversations, the others (supervisors), and reports.

A row's waiting time runs from the citizen's first message no operator has answered yet (see
:func:`waiting_since`); reports name keywords by their title in the operator's language.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from civicchat.keywords import Catalog
from civicchat.routing import WINDOW_CHANNELS, window_closes_at
from civicchat.service.console.context import ConsoleAccount
from civicchat.service.console.web import Console, Principal
from civicchat.service.dispatch import is_escalated
from civicchat.storage.assignment_sql import ReplyTimes, assignment_queries
from civicchat.storage.base import Contact, Conversation, OperatorRole, Transaction

__all__ = ["KeywordLine", "ListViews", "Row", "make_row", "waiting_since"]


def waiting_since(conv: Conversation, replies: ReplyTimes | None) -> datetime | None:
    """Since when the citizen waits for an operator: their first message that no operator has
    answered yet (for a conversation nobody answered, since it entered the queue). ``None``
    once an operator answered everything the citizen wrote."""
    last_reply = max(
        (t for t in (replies and replies.last_reply, conv.last_operator_reply_at) if t),
        default=None,
    )
    first = replies.first_unanswered if replies else None
    if last_reply is None:
        return conv.queued_at or first or conv.last_inbound_at
    if first is not None and first > last_reply:
        return first
    if conv.last_inbound_at is not None and conv.last_inbound_at > last_reply:
        return conv.last_inbound_at  # the message is not linked to the conversation (yet)
    return None


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a conversation list."""

    conv: Conversation
    contact: Contact | None
    account: ConsoleAccount
    waiting: timedelta | None  # None: nothing unanswered
    window_left: timedelta | None  # None: no window on this channel
    operator_name: str | None
    escalated: bool = False  # no operator reply in time and nobody free (service.dispatch)
    answered: bool = False  # an operator answered the citizen's last message


@dataclass(frozen=True, slots=True)
class KeywordLine:
    """One keyword of the reports: its title in the operator's language, or its id if the
    catalog no longer has it."""

    keyword_id: str
    title: str
    count: int
    removed: bool = False


def make_row(
    me: Principal,
    conv: Conversation,
    contact: Contact | None,
    replies: ReplyTimes | None,
    now: datetime,
    operator_name: str | None = None,
) -> Row:
    """The list line of ``conv`` at ``now`` (``replies``: from ``AssignmentQueries.reply_times``)."""
    window_left = None
    if conv.channel in WINDOW_CHANNELS:
        closes = window_closes_at(conv.last_inbound_at)
        window_left = max(closes - now, timedelta(0)) if closes else timedelta(0)
    since = waiting_since(conv, replies)
    return Row(
        conv,
        contact,
        me.account(conv.account),
        None if since is None else now - since,
        window_left,
        operator_name,
        is_escalated(conv),
        answered=since is None,
    )


class ListViews:
    """The queue page, its live fragment, and reports."""

    def __init__(self, console: Console) -> None:
        self.c = console

    # ------------------------------------------------------------------ lists

    async def _rows(
        self, tx: Transaction, me: Principal, convs: Sequence[Conversation]
    ) -> list[Row]:
        now = self.c.ctx.clock.now()
        names: dict[int, str] = {}
        replies = await assignment_queries(tx).reply_times([c.id for c in convs])
        rows = []
        for conv in convs:
            if conv.assigned_operator is not None and conv.assigned_operator not in names:
                other = await tx.operators.get_operator(conv.assigned_operator)
                names[conv.assigned_operator] = other.name if other else "?"
            rows.append(
                make_row(
                    me,
                    conv,
                    await tx.contacts.get(conv.contact_id),
                    replies.get(conv.id),
                    now,
                    names.get(conv.assigned_operator) if conv.assigned_operator else None,
                )
            )
        return rows

    async def _lists(self, me: Principal) -> dict[str, list[Row]]:
        queued: list[Conversation] = []
        mine: list[Conversation] = []
        others: list[Conversation] = []
        async with self.c.ctx.store.read_transaction() as tx:
            for account in me.accounts:
                for conv in await tx.conversations.list(
                    account.name, states=["queued", "assigned"], limit=200
                ):
                    if conv.state == "queued":
                        queued.append(conv)
                        continue
                    if conv.assigned_operator == me.id:
                        mine.append(conv)
                    if me.at_least(OperatorRole.SUPERVISOR):
                        others.append(conv)  # "All": every one being attended, theirs too
            # Longest wait first: the queue is served in order.
            queued.sort(key=lambda c: (-c.priority, c.queued_at or c.created_at))
            return {
                "queued": await self._rows(tx, me, queued),
                "mine": await self._rows(tx, me, mine),
                "others": await self._rows(tx, me, others),
            }

    async def home(self, request: Request, me: Principal) -> Response:
        return self.c.render(request, "queue.html", me, 200, **await self._lists(me))

    async def queue_partial(self, request: Request, me: Principal) -> Response:
        return self.c.render(request, "_lists.html", me, 200, **await self._lists(me))

    # ------------------------------------------------------------------ reports

    async def reports(self, request: Request, me: Principal) -> Response:
        today = self.c.ctx.clock.now().astimezone(self.c.tz).date()
        since = today - timedelta(days=6)
        states: dict[str, dict[str, int]] = {}
        keywords: dict[str, int] = {}
        catalogs: list[Catalog] = []
        async with self.c.ctx.store.read_transaction() as tx:
            for account in me.accounts:
                counts: dict[str, int] = {}
                for conv in await tx.conversations.list(account.name, limit=1000):
                    counts[conv.state] = counts.get(conv.state, 0) + 1
                states[account.name] = counts
                for kc in await tx.keywords.keyword_counts(account.name, since, today):
                    keywords[kc.keyword_id] = keywords.get(kc.keyword_id, 0) + kc.count
                if account.engine is not None:
                    catalogs.append(account.engine.catalog)
        top = sorted(keywords.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
        lang = self.c.language(request)
        lines = [_keyword_line(catalogs, keyword_id, n, lang) for keyword_id, n in top]
        return self.c.render(
            request, "reports.html", me, states=states, top=lines, since=since, until=today
        )


def _keyword_line(
    catalogs: Sequence[Catalog], keyword_id: str, count: int, lang: str
) -> KeywordLine:
    """The keyword's title in ``lang`` (the catalog's default language if it has none in
    ``lang``, English included); an id no catalog knows any more is shown as it is."""
    for catalog in catalogs:
        kw = catalog.keyword(keyword_id)
        if kw is not None:
            language = lang if lang in catalog.languages else catalog.default_language
            return KeywordLine(keyword_id, kw.label(language), count)
    return KeywordLine(keyword_id, keyword_id, count, removed=True)
