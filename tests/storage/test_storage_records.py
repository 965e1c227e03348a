"""Contract tests of the repositories (contacts, conversations, operators, audit, stats)."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from storage_helpers import T0

from civicchat.storage.base import AuditEntry, LifecycleEntry, OperatorRole, Presence


async def test_contacts_are_identified_once_per_identity(store):
    async with store.transaction() as tx:
        a = await tx.contacts.identify("whatsapp", "acc1", "34600000001", name="Maria")
        b = await tx.contacts.identify("whatsapp", "acc1", "34600000001", name="Other")
        c = await tx.contacts.identify("telegram", "bot1", "34600000001")
        assert a == b
        assert a.name == "Maria"
        assert c.id != a.id
        await tx.contacts.update(dataclasses.replace(a, language="es"))
        assert (await tx.contacts.get(a.id)).language == "es"
        (ident,) = await tx.contacts.identities(a.id)
        assert (ident.channel, ident.account, ident.external_id) == (
            "whatsapp",
            "acc1",
            "34600000001",
        )
        # A nameless contact gets the first name the provider tells us.
        nameless = await tx.contacts.identify("webchat", "web", "s1")
        assert nameless.name is None
        named = await tx.contacts.identify("webchat", "web", "s1", name="Jordi")
        assert (named.id, named.name) == (nameless.id, "Jordi")


async def test_conversations_store_every_routing_field(store, clock):
    async with store.transaction() as tx:
        contact = await tx.contacts.identify("whatsapp", "acc1", "34600000001")
        conv = await tx.conversations.create(
            channel="whatsapp",
            account="acc1",
            contact_id=contact.id,
            recipient_id="34600000001",
            state="bot",
        )
        changed = dataclasses.replace(
            conv,
            state="queued",
            language="ca",
            assigned_operator=7,
            queued_at=T0,
            last_inbound_at=T0 + timedelta(minutes=1),
            last_operator_reply_at=T0 + timedelta(minutes=2),
            last_ack_period="2026-03-02",
            last_out_of_hours_period="2026-03-02T19",
            priority=2,
            team="padró",
            data={"topic": "bus", "tags": ["urgent"]},
            assigned_at=T0 + timedelta(minutes=3),
            last_operator=7,
            topic="bus",
        )
        await tx.conversations.save(changed)
        await tx.history.record(LifecycleEntry(conv.id, T0, "bot", "bot", "queued", "no keyword"))
        await tx.history.record(LifecycleEntry(conv.id, T0, "operator:7", "queued", "assigned"))
    async with store.transaction() as tx:
        assert await tx.conversations.get(conv.id) == changed
        assert await tx.conversations.latest_for("whatsapp", "acc1", contact.id) == changed
        assert [c.id for c in await tx.conversations.list("acc1", states=["queued"])] == [conv.id]
        assert await tx.conversations.list("acc1", states=["closed"]) == []
        history = await tx.history.entries(conv.id)
        assert [(h.actor, h.from_state, h.to_state) for h in history] == [
            ("bot", "bot", "queued"),
            ("operator:7", "queued", "assigned"),
        ]
        assert history[0].at == T0


async def test_operators_and_assignments(store, clock):
    async with store.transaction() as tx:
        op = await tx.operators.add_operator(
            account="acc1",
            name="Núria",
            login="nuria@mataro.cat",
            password_hash="$argon2id$x",
            role=OperatorRole.SUPERVISOR,
            languages=("ca",),
            teams=("padró", "tributs"),
            capacity=3,
        )
        assert (await tx.operators.by_login("nuria@mataro.cat")) == op
        await tx.operators.save_operator(dataclasses.replace(op, presence=Presence.AVAILABLE))
        assert (await tx.operators.get_operator(op.id)).presence is Presence.AVAILABLE
        assert [o.teams for o in await tx.operators.operators("acc1")] == [("padró", "tributs")]
        contact = await tx.contacts.identify("whatsapp", "acc1", "346")
        conv = await tx.conversations.create(
            channel="whatsapp", account="acc1", contact_id=contact.id, recipient_id="346", state="q"
        )
        await tx.assignments.assign(conv.id, op.id, T0)
        await tx.assignments.assign(conv.id, op.id, T0 + timedelta(minutes=1))
        assert len(await tx.assignments.open_assignments(op.id)) == 1
        await tx.assignments.release(conv.id, T0 + timedelta(minutes=2))
        assert await tx.assignments.open_assignments(op.id) == []
        with pytest.raises(ValueError, match="comma"):
            await tx.operators.add_operator(
                account="acc1", name="x", login="x", password_hash="h", teams=("a,b",)
            )


async def test_operator_logins_are_unique(store):
    async def add_twice():
        async with store.transaction() as tx:
            for _ in range(2):
                await tx.operators.add_operator(
                    account="acc1", name="A", login="a@mataro.cat", password_hash="h"
                )

    with pytest.raises(IntegrityError):
        await add_twice()
    async with store.transaction() as tx:
        assert await tx.operators.operators("acc1") == []  # the transaction rolled back


async def test_audit_log_and_keyword_counts(store, clock):
    async with store.transaction() as tx:
        for i in range(3):
            await tx.audit.audit(
                AuditEntry(T0 + timedelta(minutes=i), "operator:1", f"act{i}", "acc1", {"i": i})
            )
        await tx.audit.audit(AuditEntry(T0, "admin", "other", "acc2"))
        day = date(2026, 3, 2)
        await tx.keywords.count_keyword("acc1", "bus", day)
        await tx.keywords.count_keyword("acc1", "bus", day, by=2)
        await tx.keywords.count_keyword("acc1", "padro", day + timedelta(days=1))
        await tx.keywords.count_keyword("acc1", "bus", day + timedelta(days=5))
    async with store.transaction() as tx:
        entries = await tx.audit.audit_entries("acc1")
        assert [e.action for e in entries] == ["act2", "act1", "act0"]
        assert entries[0].details == {"i": 2}
        recent = await tx.audit.audit_entries("acc1", since=T0 + timedelta(minutes=1))
        assert len(recent) == 2
        counts = await tx.keywords.keyword_counts("acc1", day, day + timedelta(days=1))
        assert [(c.keyword_id, c.day, c.count) for c in counts] == [
            ("bus", day, 3),
            ("padro", day + timedelta(days=1), 1),
        ]


async def test_queue_position_counts_who_waits_unassigned_before_by_time_queued(store):
    async with store.transaction() as tx:
        convs = []
        for n in range(4):
            contact = await tx.contacts.identify("whatsapp", "acc1", f"34600{n}")
            conv = await tx.conversations.create(
                channel="whatsapp", account="acc1", contact_id=contact.id, recipient_id="x",
                state="queued",
            )  # fmt: skip
            conv = dataclasses.replace(conv, queued_at=T0 + timedelta(minutes=10 - n))
            await tx.conversations.save(conv)
            convs.append(conv)
        # The oldest in the queue (queued first) is number 1; an assigned one no longer counts.
        taken = dataclasses.replace(convs[3], assigned_operator=None, state="assigned")
        await tx.conversations.save(taken)
        other = await tx.contacts.identify("whatsapp", "acc2", "34699")
        elsewhere = await tx.conversations.create(
            channel="whatsapp", account="acc2", contact_id=other.id, recipient_id="y",
            state="queued",
        )  # fmt: skip
        await tx.conversations.save(dataclasses.replace(elsewhere, queued_at=T0))
    async with store.transaction() as tx:
        assert await tx.conversations.queue_position(convs[2]) == 1  # queued at T0+8
        assert await tx.conversations.queue_position(convs[1]) == 2
        assert await tx.conversations.queue_position(convs[0]) == 3  # another account's not
        assert await tx.conversations.queue_position(taken) is None  # not waiting
