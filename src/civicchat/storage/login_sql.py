"""Failed console logins in the database, so every process of the service counts the same ones.

The console's login limiter (``civicchat.service.console.security.LoginLimiter``) keys failures
by login name and by client address; only a digest of each key, keyed with the console's
secret key, is stored::

    failures = LoginFailures(store, secret_key)
    await failures.record(["login:anna", "address:203.0.113.7"], now, prune_before=now - window)
    counts = await failures.since(["login:anna"], now - window)   # {"login:anna": (1, now)}
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, insert, select

from civicchat.storage.assignment_sql import _aware
from civicchat.storage.schema import LoginFailureRow
from civicchat.storage.sql import SqlStore

__all__ = ["LoginFailures", "failure_key"]


def _mac_key(secret_key: str) -> bytes:
    return hashlib.blake2b(secret_key.encode(), digest_size=32, person=b"cc-login-key").digest()


def failure_key(key: str, secret_key: str) -> str:
    """What is stored for ``key`` (``login:<name>`` or ``address:<ip>``): a hex digest keyed
    with the console's secret key.

    Keyed so that a copy of the table cannot be reversed offline: an unkeyed digest of
    ``address:<ip>`` falls to trying the 2^32 IPv4 addresses.
    """
    return _keyed(key, _mac_key(secret_key))


def _keyed(key: str, mac_key: bytes) -> str:
    return hashlib.blake2b(
        key.encode(), digest_size=32, key=mac_key, person=b"cc-login"
    ).hexdigest()


class LoginFailures:
    """Failed logins of every process, in ``store``'s ``login_failures`` table.

    ``secret_key`` (the console's) keys the stored digests: the processes of one deployment
    share it, so they count the same failures. A service started without a configured secret
    key makes a random one per start: its rows then count only within that run.
    """

    def __init__(self, store: SqlStore, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("LoginFailures needs the console's secret key to key its digests")
        self.store = store
        self._mac_key = _mac_key(secret_key)

    def _digest(self, key: str) -> str:
        return _keyed(key, self._mac_key)

    async def since(self, keys: Sequence[str], since: datetime) -> dict[str, tuple[int, datetime]]:
        """For each key with failures after ``since``: how many, and when the oldest was."""
        digests = {self._digest(k): k for k in keys}
        if not digests:
            return {}
        async with self.store.read_transaction() as tx:
            rows = await tx.connection.execute(
                select(LoginFailureRow.key, func.count(), func.min(LoginFailureRow.at))
                .where(LoginFailureRow.key.in_(list(digests)), LoginFailureRow.at > since)
                .group_by(LoginFailureRow.key)
            )
            found = list(rows)
        out: dict[str, tuple[int, datetime]] = {}
        for digest, count, oldest in found:
            out[digests[digest]] = (int(count), _aware(oldest))
        return out

    async def record(self, keys: Sequence[str], at: datetime, *, prune_before: datetime) -> None:
        """Count one failure for each key at ``at``, and forget failures before ``prune_before``
        (older ones no longer count: the table never grows beyond one window)."""
        async with self.store.transaction() as tx:
            await tx.connection.execute(
                delete(LoginFailureRow).where(LoginFailureRow.at < prune_before)
            )
            if keys:
                await tx.connection.execute(
                    insert(LoginFailureRow), [{"key": self._digest(k), "at": at} for k in keys]
                )

    async def discard(self, key: str, at: datetime) -> None:
        """Forget one failure of ``key`` counted at ``at`` (an attempt that turned out right)."""
        async with self.store.transaction() as tx:
            one = await tx.connection.scalar(
                select(LoginFailureRow.id)
                .where(LoginFailureRow.key == self._digest(key), LoginFailureRow.at == at)
                .limit(1)
            )
            if one is not None:
                await tx.connection.execute(
                    delete(LoginFailureRow).where(LoginFailureRow.id == one)
                )

    async def clear(self, key: str) -> None:
        """Forget the failures of ``key`` (a login that succeeded)."""
        async with self.store.transaction() as tx:
            await tx.connection.execute(
                delete(LoginFailureRow).where(LoginFailureRow.key == self._digest(key))
            )
