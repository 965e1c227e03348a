"""The identity map and unit of work of an inbox batch's transaction.

Inside :meth:`SqlTransaction.unit_of_work <civicchat.storage.repositories.SqlTransaction.
unit_of_work>` (what :class:`~civicchat.storage.workers.InboxProcessor` opens around a batch):

- the batch's senders, their contacts and their latest conversations are read up front, on
  PostgreSQL in one statement (``unnest`` of the senders, a ``LATERAL`` join for the latest
  conversation, whose row is locked as the first save would have locked it);
- ``contacts.identify``, ``conversations.latest_for`` and ``conversations.get`` answer from that
  map (a miss reads the database once and is remembered);
- new senders cost no statement of their own on PostgreSQL: the batch's read draws a contact
  id for each sender it does not find and a conversation id for each one without a
  conversation on the account (``nextval``; an id drawn and not used is a gap, no more), and
  the batch's new contacts, identities and conversations are inserted together, with the
  conversations' latest values, at the flush;
- ``conversations.save`` of a conversation in the map only updates the map: the saves are
  written together, one statement on PostgreSQL (``UPDATE ... FROM unnest``), when the unit of
  work ends, and **before any other statement that could read them** (autoflush, below).

Autoflush and invalidation watch every statement run on the transaction's connection (a
``before_execute`` listener, so SQL of other modules run on ``tx.connection`` with
``execute()`` is covered too; ``exec_driver_sql()``, which that listener does not see, is
refused with a :class:`~civicchat.exceptions.StorageError` while the unit of work is active).
Any such statement first writes the new rows not written yet (it may refer to them: a
foreign key, a read). A statement that mentions the ``conversations`` table
(``queue_position``, a console query), a write to ``contacts``, or SQL that cannot be inspected
(text) first writes the pending saves.
A write to ``conversations``, ``contacts`` or ``identities`` that the map did not make itself, or
uninspectable SQL, then empties the map (the next read goes to the database). Statements of this
module and of the repositories that keep the map right themselves carry the execution option
:data:`KEEPS_MAP`.

A rolled-back batch leaves nothing behind: the map belongs to its transaction object, and the
unit of work drops it (pending saves included) when it ends with an error. Outside a unit of
work the repositories keep nothing: every call runs its own statements, as before.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Column,
    Delete,
    Insert,
    Select,
    String,
    Table,
    Update,
    bindparam,
    column,
    event,
    text,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import visitors

from civicchat.exceptions import StorageError
from civicchat.storage.base import Contact, Conversation
from civicchat.storage.schema import ConversationRow, UTCDateTime
from civicchat.storage.statements import _CONV_FIELDS, _conversation, _stmts

KEEPS_MAP = {"civicchat_keeps_map": True}
"""Execution option of statements that keep the unit of work's map right themselves."""

_OPTION = "civicchat_keeps_map"
_CONV = cast(Table, ConversationRow.__table__)
_SAVED = (*_CONV_FIELDS, "data")
_DATETIMES = frozenset(f for f in _CONV_FIELDS if isinstance(_CONV.c[f].type, UTCDateTime))

SenderKey = tuple[str, str, str]
"""``(channel, account, external id)`` of a sender."""
LatestKey = tuple[str, str, int]
"""``(channel, account, contact id)``: whose latest conversation."""


def _pg_type(col: Column[Any]) -> str:
    # Strings as text: a cast to VARCHAR(n) would silently cut an over-long value, where the
    # column itself refuses it (as the one-row UPDATE did).
    if isinstance(col.type, String):
        return "text"
    return str(col.type.compile(dialect=pg.dialect()))  # type: ignore[no-untyped-call]


# One statement for a whole batch's senders: contact and latest conversation (locked, as the
# first save of it would lock it until the commit).
_CONV_COLS = [c.name for c in _CONV.c]
_PG_PREFETCH = text(
    "SELECT t.n, ct.id AS ct_id, ct.name AS ct_name, ct.language AS ct_language,"
    " ct.created_at AS ct_created_at,"
    # A contact id drawn for a new sender: its contact and identity are written with its
    # first conversation, in one statement (an id drawn and not used leaves a gap, no more).
    " CASE WHEN ct.id IS NULL THEN nextval(pg_get_serial_sequence('contacts', 'id'))"
    " END AS new_contact_id,"
    # Likewise a conversation id for a sender who has no conversation on the account yet.
    " CASE WHEN v.id IS NULL THEN nextval(pg_get_serial_sequence('conversations', 'id'))"
    " END AS new_conversation_id, "
    + ", ".join(f"v.{c}" for c in _CONV_COLS)
    + " FROM unnest(CAST(:channels AS text[]), CAST(:accounts AS text[]),"
    " CAST(:externals AS text[])) WITH ORDINALITY AS t(channel, account, external_id, n)"
    # LATERAL ... LIMIT 1: one probe of the unique index a sender, whatever the statistics say.
    # A join let the planner hash the whole table when its statistics were older than its
    # growth (a young table, a burst of new senders): 17 ms a call at 13,000 identities.
    " LEFT JOIN LATERAL (SELECT i.contact_id FROM identities AS i WHERE i.channel = t.channel"
    " AND i.account = t.account AND i.external_id = t.external_id LIMIT 1) AS i ON true"
    " LEFT JOIN contacts AS ct ON ct.id = i.contact_id"
    " LEFT JOIN LATERAL (SELECT * FROM conversations AS x WHERE x.channel = t.channel"
    " AND x.account = t.account AND x.contact_id = ct.id AND ct.id IS NOT NULL"
    # (a new sender has no conversation: no index scan, whichever index the planner took)
    " ORDER BY x.id DESC LIMIT 1"
    " FOR UPDATE) AS v ON true"
    " ORDER BY t.n"
).columns(
    column("n"),
    column("ct_id"),
    column("ct_name"),
    column("ct_language"),
    column("ct_created_at", UTCDateTime()),
    column("new_contact_id"),
    column("new_conversation_id"),
    *(column(c.name, c.type) for c in _CONV.c),
)

# Every pending save of the batch in one statement.
_PG_SAVE_MANY = text(
    "UPDATE conversations AS v SET "
    + ", ".join(f"{f} = t.{f}" for f in _SAVED)
    + " FROM unnest(CAST(:id AS bigint[]), "
    + ", ".join(f"CAST(:{f} AS {_pg_type(_CONV.c[f])}[])" for f in _SAVED)
    + ") AS t(id, "
    + ", ".join(_SAVED)
    + ") WHERE v.id = t.id RETURNING v.id"
)

# A new sender: contact and identity in one statement.
PG_NEW_SENDER = text(
    "WITH c AS (INSERT INTO contacts (name, language, created_at)"
    " VALUES (CAST(:name AS text), NULL, :now) RETURNING id)"
    " INSERT INTO identities (contact_id, channel, account, external_id)"
    " SELECT c.id, CAST(:channel AS text), CAST(:account AS text), CAST(:external_id AS text)"
    " FROM c RETURNING contact_id"
).bindparams(bindparam("now", type_=UTCDateTime()))

# A new sender's first conversation, with its contact (the id drawn by the prefetch) and
# identity: one statement.
PG_NEW_SENDER_CONVERSATION = text(
    "WITH c AS (INSERT INTO contacts (id, name, language, created_at)"
    " VALUES (:contact_id, CAST(:name AS text), NULL, :contact_created_at) RETURNING id),"
    " i AS (INSERT INTO identities (contact_id, channel, account, external_id)"
    " SELECT c.id, CAST(:i_channel AS text), CAST(:i_account AS text),"
    " CAST(:external_id AS text) FROM c)"
    " INSERT INTO conversations (channel, account, contact_id, recipient_id, state, created_at,"
    " priority, data) SELECT CAST(:channel AS text), CAST(:account AS text), c.id,"
    " CAST(:recipient_id AS text), CAST(:state AS text), :now, 0, CAST('{}' AS json) FROM c"
    " RETURNING id"
).bindparams(
    bindparam("now", type_=UTCDateTime()), bindparam("contact_created_at", type_=UTCDateTime())
)

# The batch's new senders (contacts, identities) and new conversations, with the ids the
# prefetch drew: one statement.
_NEW_CONV_COLS = ("id", "account", "channel", "contact_id", "created_at", *_SAVED)
_PG_INSERT_NEW = text(
    "WITH s AS (SELECT * FROM unnest(CAST(:s_id AS bigint[]), CAST(:s_name AS text[]),"
    " CAST(:s_created AS timestamptz[]), CAST(:s_channel AS text[]), CAST(:s_account AS text[]),"
    " CAST(:s_external AS text[])) AS s(id, name, created_at, channel, account, external_id)),"
    " c AS (INSERT INTO contacts (id, name, language, created_at)"
    " SELECT id, name, NULL, created_at FROM s),"
    " i AS (INSERT INTO identities (contact_id, channel, account, external_id)"
    " SELECT id, channel, account, external_id FROM s)"
    f" INSERT INTO conversations ({', '.join(_NEW_CONV_COLS)})"
    " SELECT * FROM unnest("
    + ", ".join(f"CAST(:c_{f} AS {_pg_type(_CONV.c[f])}[])" for f in _NEW_CONV_COLS)
    + ")"
)


@dataclasses.dataclass(slots=True)
class NewSender:
    """A new sender's contact, to be written (with its first conversation if it gets one)."""

    key: SenderKey
    contact: Contact


def _tables(clause: object) -> set[str] | None:
    """The tables a Core statement names, or None when it cannot be told (text, raw SQL)."""
    if not isinstance(clause, Select | Insert | Update | Delete):
        return None
    names: set[str] = set()
    for element in visitors.iterate(clause):
        kind = element.__visit_name__
        if kind == "table":
            names.add(cast(Table, element).name)
        elif kind == "textclause":
            return None
    return names


class UnitOfWork:
    """The map of one transaction (see the module docs); :attr:`active` only inside
    :meth:`SqlTransaction.unit_of_work`."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._postgres = conn.dialect.name == "postgresql"
        self.active = False
        self.contacts: dict[SenderKey, Contact | None] = {}
        """A sender's contact; None: known to have none (yet)."""
        self.latest: dict[LatestKey, int | None] = {}
        """The id of a contact's latest conversation on an account; None: known to have none."""
        self._convs: dict[int, tuple[Conversation, str]] = {}
        """A conversation as stored (or to be stored), its ``data`` as JSON text."""
        self._dirty: dict[int, None] = {}
        self.new_ids: dict[SenderKey, int] = {}
        """Contact ids drawn for senders the prefetch did not find."""
        self._new: dict[int, NewSender] = {}
        """New senders' contacts not written yet, by contact id."""
        self.new_conversation_ids: dict[LatestKey, int] = {}
        """Conversation ids drawn for senders with no conversation on the account."""
        self._new_convs: dict[int, None] = {}
        """Conversations created (in the map) and not written yet."""

    # -------------------------------------------------------------- lifetime

    def start(self) -> None:
        self.active = True
        event.listen(self._conn.sync_connection, "before_execute", self._before_execute)
        event.listen(self._conn.sync_connection, "before_cursor_execute", self._refuse_driver_sql)

    def stop(self) -> None:
        """Forget everything, pending saves included (after an error, or once flushed)."""
        if self.active:
            event.remove(self._conn.sync_connection, "before_execute", self._before_execute)
            event.remove(
                self._conn.sync_connection, "before_cursor_execute", self._refuse_driver_sql
            )
        self.active = False
        self._dirty.clear()
        self._new.clear()
        self.new_ids.clear()
        self._new_convs.clear()
        self.new_conversation_ids.clear()
        self.forget()

    def forget(self) -> None:
        """Drop what was read (pending saves stay: they are still to be written)."""
        self.contacts.clear()
        self.latest.clear()
        dirty = {i: self._convs[i] for i in self._dirty}
        self._convs.clear()
        self._convs.update(dirty)

    # -------------------------------------------------------------- reads

    async def prefetch(self, senders: Iterable[SenderKey]) -> None:
        """Read the senders' contacts and latest conversations (PostgreSQL: one statement;
        SQLite reads each one when first asked)."""
        keys = [k for k in dict.fromkeys(senders) if k not in self.contacts]
        if not keys or not self._postgres:
            return
        await self.flush()
        rows = await self._conn.execute(
            _PG_PREFETCH,
            {
                "channels": [k[0] for k in keys],
                "accounts": [k[1] for k in keys],
                "externals": [k[2] for k in keys],
            },
            execution_options=KEEPS_MAP,
        )
        for key in keys:
            self.contacts[key] = None
        for row in rows:
            channel, account, _ = key = keys[row.n - 1]
            contact_id = row.ct_id if row.ct_id is not None else row.new_contact_id
            if row.new_conversation_id is not None:
                self.new_conversation_ids[(channel, account, contact_id)] = row.new_conversation_id
            if row.ct_id is None:
                self.new_ids[key] = row.new_contact_id
                continue
            self.contacts[key] = Contact(
                id=row.ct_id,
                name=row.ct_name,
                language=row.ct_language,
                created_at=row.ct_created_at,
            )
            self.loaded_latest((channel, account, row.ct_id), row if row.id is not None else None)

    def conversation(self, conversation_id: int) -> Conversation | None:
        """The mapped conversation (a fresh copy: its ``data`` is the caller's to change)."""
        found = self._convs.get(conversation_id)
        if found is None:
            return None
        conv, data = found
        return dataclasses.replace(conv, data=json.loads(data))

    def loaded(self, row: Any) -> Conversation:
        """Map a conversation read from the database (the map's own copy wins: it may be
        newer); returns the caller's copy."""
        if row.id not in self._convs:
            conv = _conversation(row)
            self._convs[conv.id] = (conv, json.dumps(conv.data))
        found = self.conversation(row.id)
        assert found is not None
        return found

    def loaded_latest(self, key: LatestKey, row: Any | None) -> Conversation | None:
        self.latest[key] = None if row is None else row.id
        return None if row is None else self.loaded(row)

    def created(self, conv: Conversation) -> None:
        self._convs[conv.id] = (conv, json.dumps(dict(conv.data)))
        self.latest[(conv.channel, conv.account, conv.contact_id)] = conv.id

    def create_later(self, conv: Conversation) -> None:
        """Map a new conversation (its id drawn by the prefetch), written at the flush with
        its latest values (a save of it before then costs nothing more)."""
        self.created(conv)
        self._new_convs[conv.id] = None

    # -------------------------------------------------------------- writes

    def save(self, conv: Conversation) -> bool:
        """Keep the save for the flush; False when ``conv`` is not in the map (save it now)."""
        found = self._convs.get(conv.id)
        if found is None:
            return False
        values: dict[str, Any] = {}
        for f in _CONV_FIELDS:
            value = getattr(conv, f)
            if f in _DATETIMES and value is not None:
                if value.tzinfo is None:
                    raise ValueError("storage needs zone-aware datetimes")
                value = value.astimezone(UTC)
            values[f] = value
        data = json.dumps(dict(conv.data))  # what the column would keep, read back on each get
        # Only the saved fields change (id, account, channel, contact, created_at stay stored).
        self._convs[conv.id] = (dataclasses.replace(found[0], **values), data)
        self._dirty[conv.id] = None
        return True

    def new_sender(self, key: SenderKey, name: str | None, now: datetime) -> Contact | None:
        """The contact of a sender the prefetch did not find, written later (with its first
        conversation: :meth:`take_new_sender`); None when no id was drawn for it."""
        contact_id = self.new_ids.pop(key, None)
        if contact_id is None:
            return None
        contact = Contact(contact_id, name, None, now)
        self._new[contact_id] = NewSender(key, contact)
        self.contacts[key] = contact
        self.latest[(key[0], key[1], contact_id)] = None  # a new contact has none yet
        return contact

    def take_new_sender(self, contact_id: int) -> NewSender | None:
        """The new sender of this contact id, if not written yet (the caller writes it now)."""
        return self._new.pop(contact_id, None)

    def renamed(self, contact: Contact) -> bool:
        """Name a new sender not written yet; False when it is already written."""
        found = self._new.get(contact.id)
        if found is None:
            return False
        found.contact = contact
        return True

    async def flush(self) -> None:
        """Write the pending new senders and saves (one statement each)."""
        for stmt, params, ids in self._pending():
            result = await self._conn.execute(stmt, params, execution_options=KEEPS_MAP)
            if ids is not None:
                self._check(result, ids)

    def _flush_sync(self, conn: Connection) -> None:
        for stmt, params, ids in self._pending():
            result = conn.execute(stmt, params, execution_options=KEEPS_MAP)
            if ids is not None:
                self._check(result, ids)

    def _pending(self) -> list[tuple[Any, Any, list[int] | None]]:
        out: list[tuple[Any, Any, list[int] | None]] = []
        if self._new or self._new_convs:
            new, self._new = list(self._new.values()), {}
            conv_ids, self._new_convs = list(self._new_convs), {}
            params: dict[str, list[Any]] = {
                "s_id": [n.contact.id for n in new],
                "s_name": [n.contact.name for n in new],
                "s_created": [n.contact.created_at for n in new],
                "s_channel": [n.key[0] for n in new],
                "s_account": [n.key[1] for n in new],
                "s_external": [n.key[2] for n in new],
            }
            convs = [self._convs[i] for i in conv_ids]
            for f in _NEW_CONV_COLS:
                if f != "data":
                    params[f"c_{f}"] = [getattr(c, f) for c, _ in convs]
            params["c_data"] = [data for _, data in convs]
            for i in conv_ids:
                self._dirty.pop(i, None)  # inserted with its latest values
            out.append((_PG_INSERT_NEW, params, None))
        if self._dirty:
            out.append(self._save_many())
        return out

    def _save_many(self) -> tuple[Any, Any, list[int] | None]:
        ids, self._dirty = list(self._dirty), {}
        convs = [self._convs[i] for i in ids]
        if self._postgres:
            params: dict[str, list[Any]] = {"id": ids}
            for f in _CONV_FIELDS:
                params[f] = [getattr(c, f) for c, _ in convs]
            params["data"] = [data for _, data in convs]
            return _PG_SAVE_MANY, params, ids
        rows = []
        for c, data in convs:
            values = {f"v_{f}": getattr(c, f) for f in _CONV_FIELDS}
            values["v_data"] = json.loads(data)
            values["c_id"] = c.id
            rows.append(values)
        return _stmts(self._conn)["save_conv"], rows, ids

    def _check(self, result: CursorResult[Any], ids: Sequence[int]) -> None:
        if self._postgres:
            missing = set(ids) - set(result.scalars())
        else:
            missing = set() if result.rowcount == len(ids) else set(ids)
        if missing:
            raise StorageError(f"conversations {sorted(missing)} do not exist")

    # -------------------------------------------------------------- autoflush

    def _refuse_driver_sql(
        self,
        conn: Connection,
        cursor: object,
        statement: str,
        parameters: object,
        context: Any,
        executemany: bool,
    ) -> None:
        # ``exec_driver_sql`` skips ``before_execute``: such SQL would neither see the pending
        # saves nor empty the map after a write. Refused rather than silently wrong.
        if context is not None and context.compiled is None:
            raise StorageError(
                "exec_driver_sql() on the connection of an inbox batch's unit of work: use "
                "execute(text(...)), which sees the batch's pending writes"
            )

    def _before_execute(
        self,
        conn: Connection,
        clause: object,
        multiparams: object,
        params: object,
        execution_options: Mapping[str, Any],
    ) -> None:
        if execution_options.get(_OPTION) or not (self._convs or self.contacts or self.latest):
            return
        if self._new or self._new_convs:  # whatever it is, it may need them (a foreign key)
            self._flush_sync(conn)
        tables = _tables(clause)
        writes = not isinstance(clause, Select)
        if tables is None or "conversations" in tables or (writes and "contacts" in tables):
            self._flush_sync(conn)
        if tables is None or (writes and tables & {"conversations", "contacts", "identities"}):
            self.forget()


__all__ = [
    "KEEPS_MAP",
    "PG_NEW_SENDER",
    "PG_NEW_SENDER_CONVERSATION",
    "NewSender",
    "UnitOfWork",
]
