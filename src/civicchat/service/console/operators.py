"""Admin pages: operators and teams (create, edit, reset a password, disable, delete).

Every change is recorded in the audit log. Disabling keeps the operator's history (their id in
conversations, assignments and the audit log) and ends their sessions; only an operator nothing
refers to can be deleted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from civicchat.routing import ConversationState
from civicchat.service.console.i18n import translator
from civicchat.service.console.security import hash_password
from civicchat.service.console.web import Console, Denied, Principal, field
from civicchat.service.dispatch import commit_move, lock_pool
from civicchat.service.live import LiveEvent
from civicchat.storage.assignment_sql import assignment_queries
from civicchat.storage.base import AuditEntry, Conversation, Operator, OperatorRole, Presence

__all__ = ["OperatorViews", "scopes"]

log = logging.getLogger("civicchat.console")


def scopes(me: Principal) -> list[str]:
    """The operator scopes an admin manages: their accounts' groups and names."""
    found: list[str] = []
    for account in me.accounts:
        for scope in (account.group, account.name):
            if scope and scope not in found:
                found.append(scope)
    return found


def _covers_wider(console_accounts: Any, me: Principal, scope: str) -> bool:
    """Whether operator scope ``scope`` reaches an account outside ``me``'s own."""
    mine = me.account_names
    return any(a.member_of(scope) and a.name not in mine for a in console_accounts)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


class OperatorViews:
    def __init__(self, console: Console) -> None:
        self.c = console

    def _audit_entry(
        self, me: Principal, action: str, account: str | None, **details: Any
    ) -> AuditEntry:
        return AuditEntry(self.c.ctx.clock.now(), f"operator:{me.id}", action, account, details)

    async def operators(self, request: Request, me: Principal, **extra: Any) -> Response:
        async with self.c.ctx.store.read_transaction() as tx:
            ops = [o for s in scopes(me) for o in await tx.operators.operators(s)]
            queries = assignment_queries(tx)
            status = await queries.operator_status([o.id for o in ops])
            # Delete is offered only where it works (the check of delete_operator).
            deletable = {
                o.id for o in ops if o.id != me.id and await queries.operator_references(o.id) == 0
            }
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
            deletable=deletable,
            teams=teams,
            scopes=scopes(me),
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
        if not name or not login or scope not in scopes(me):
            raise Denied(400, "invalid")
        self._check_admin_scope(me, values["role"], scope)
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

    def _check_admin_scope(self, me: Principal, role: OperatorRole, scope: str) -> None:
        """An admin whose scope reaches accounts beyond ``me``'s own (an account-level admin
        facing a group-wide one, or another account's admin) is not ``me``'s to manage, nor to
        make: ``403``, like any object that is visible but not ``me``'s to act on. A group-level
        admin manages everyone in the group."""
        if role is OperatorRole.ADMIN and _covers_wider(self.c.ctx.accounts.values(), me, scope):
            log.warning("operator %d refused: an admin of a wider scope", me.id)
            raise Denied(403, "forbidden")

    async def _target(self, tx: Any, request: Request, me: Principal) -> Operator:
        op: Operator | None = await tx.operators.get_operator(request.path_params["operator_id"])
        if op is None or op.account not in scopes(me):
            raise Denied(404)
        if _covers_wider(self.c.ctx.accounts.values(), me, op.account):
            # Whatever their role: resetting the password of a group-wide operator would let an
            # account-level admin log in as them and reach the group's other accounts.
            log.warning("operator %d refused: an operator of a wider scope", me.id)
            raise Denied(403, "forbidden")
        return op

    async def update_operator(self, request: Request, me: Principal) -> Response:
        form = await self.c.form(request)
        values = self._fields(form)
        async with self.c.ctx.store.transaction() as tx:
            op = await self._target(tx, request, me)
            self._check_admin_scope(me, values["role"], op.account)  # no promotion beyond me
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
                theirs = await queries.conversations(
                    account.name, "assigned", lock=True, assigned_operator=op.id
                )
                for conv in theirs:
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
