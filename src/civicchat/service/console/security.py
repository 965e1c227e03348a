"""Passwords, signed session cookies, CSRF tokens and login rate limiting.

Sessions are stateless signed cookies (itsdangerous) holding the operator id, the session's CSRF
token and a fingerprint of the password hash: changing a password ends every other session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from civicchat.storage.base import Operator

__all__ = [
    "SESSION_COOKIE",
    "FailureStore",
    "LoginLimiter",
    "MemoryLoginFailures",
    "Session",
    "SessionSigner",
    "hash_password",
    "new_token",
    "password_fingerprint",
    "tokens_match",
    "verify_password",
]

SESSION_COOKIE = "cc_session"
_HASHER = PasswordHasher()
_DUMMY: list[str] = []  # a hash verified against when the login is unknown (same time spent)


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (store it in ``Operator.password_hash``)."""
    if not password:
        raise ValueError("an empty password cannot be hashed")
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True if ``password`` matches ``password_hash``; False for a wrong password or a bad hash."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def burn_verify_time(password: str) -> None:
    """Spend the time of one verification (used when the login does not exist)."""
    if not _DUMMY:
        _DUMMY.append(_HASHER.hash(secrets.token_urlsafe(16)))
    verify_password(_DUMMY[0], password)


def password_fingerprint(password_hash: str) -> str:
    """A short digest of the hash, kept in the cookie: a new password invalidates old sessions."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; a missing token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True, slots=True)
class Session:
    """What the session cookie carries."""

    operator_id: int
    csrf: str
    fingerprint: str


class SessionSigner:
    """Signs and reads session and pre-login cookies with the console's secret key."""

    def __init__(self, secret_key: str, max_age: timedelta) -> None:
        self._session = URLSafeTimedSerializer(secret_key, salt="civicchat.console.session")
        self._anon = URLSafeTimedSerializer(secret_key, salt="civicchat.console.login-csrf")
        self.max_age = int(max_age.total_seconds())

    def dump(self, session: Session) -> str:
        return self._session.dumps([session.operator_id, session.csrf, session.fingerprint])

    def load(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data: Any = self._session.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        if (
            not isinstance(data, list)
            or len(data) != 3
            or not isinstance(data[0], int)
            or not all(isinstance(x, str) for x in data[1:])
        ):
            return None
        return Session(data[0], data[1], data[2])

    def for_operator(self, operator: Operator) -> Session:
        return Session(operator.id, new_token(), password_fingerprint(operator.password_hash))

    def dump_login_token(self, token: str) -> str:
        return self._anon.dumps(token)

    def load_login_token(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            value: Any = self._anon.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None


class FailureStore(Protocol):
    """Where the login limiter counts failures: :class:`MemoryLoginFailures` (one process) or
    :class:`~civicchat.storage.login_sql.LoginFailures` (the database, every process)."""

    async def since(
        self, keys: Sequence[str], since: datetime
    ) -> dict[str, tuple[int, datetime]]: ...

    async def record(
        self, keys: Sequence[str], at: datetime, *, prune_before: datetime
    ) -> None: ...

    async def discard(self, key: str, at: datetime) -> None: ...

    async def clear(self, key: str) -> None: ...


class MemoryLoginFailures:
    """Failed logins in this process's memory (the same methods as ``LoginFailures``).

    At most ``max_failures`` are kept (the oldest go first), so a spray of random logins
    cannot grow it without bound.
    """

    def __init__(self, *, max_failures: int = 100_000) -> None:
        self._times: dict[str, list[datetime]] = {}
        self._order: deque[tuple[datetime, str]] = deque()  # every failure, oldest first
        self._max = max_failures

    async def since(self, keys: Sequence[str], since: datetime) -> dict[str, tuple[int, datetime]]:
        """For each key with failures after ``since``: how many, and when the oldest was."""
        out: dict[str, tuple[int, datetime]] = {}
        for key in keys:
            recent = [t for t in self._times.get(key, ()) if t > since]
            if recent:
                out[key] = (len(recent), min(recent))
        return out

    async def record(self, keys: Sequence[str], at: datetime, *, prune_before: datetime) -> None:
        """Count one failure for each key at ``at``, and forget failures before
        ``prune_before``."""
        for key in keys:
            self._times.setdefault(key, []).append(at)
            self._order.append((at, key))
        while self._order and (self._order[0][0] < prune_before or len(self._order) > self._max):
            old, key = self._order.popleft()
            self._forget(key, old)

    def _forget(self, key: str, at: datetime) -> None:
        times = self._times.get(key)
        if times is not None and at in times:
            times.remove(at)
            if not times:
                del self._times[key]

    async def discard(self, key: str, at: datetime) -> None:
        """Forget one failure of ``key`` counted at ``at``."""
        self._forget(key, at)

    async def clear(self, key: str) -> None:
        """Forget every failure of ``key``."""
        self._times.pop(key, None)


class LoginLimiter:
    """Counts failed logins per login name and per client address in a sliding window.

    ``store`` keeps the count: the database's
    :class:`~civicchat.storage.login_sql.LoginFailures` makes every process of the service count
    the same failures (``serve --workers 2`` gives an attacker no more tries than one process);
    the default, :class:`MemoryLoginFailures`, counts per process. (No in-memory fast path in
    front of the database: it would keep refusing a login that succeeded in another process
    since; one indexed query costs little next to the password hash.)
    """

    def __init__(
        self,
        *,
        per_login: int,
        per_address: int,
        window: timedelta,
        store: FailureStore | None = None,
    ) -> None:
        self._limits = {"login": per_login, "address": per_address}
        self._window = window
        self._store: FailureStore = store if store is not None else MemoryLoginFailures()

    def _keys(self, login: str, address: str) -> dict[str, int]:
        """The keys of an attempt, each with its limit."""
        return {
            f"login:{login.casefold()}": self._limits["login"],
            f"address:{address}": self._limits["address"],
        }

    async def blocked_for(self, login: str, address: str, now: datetime) -> timedelta | None:
        """How long until another try is allowed, or ``None`` if one is allowed now."""
        return await self._over(login, address, now, allowed=0)

    async def _over(
        self, login: str, address: str, now: datetime, *, allowed: int
    ) -> timedelta | None:
        """The wait if a key has more than ``limit - 1 + allowed`` failures in the window."""
        keys = self._keys(login, address)
        found = await self._store.since(list(keys), now - self._window)
        waits = [
            max(oldest + self._window - now, timedelta(seconds=1))
            for key, (count, oldest) in found.items()
            if count > keys[key] - 1 + allowed
        ]
        return max(waits) if waits else None

    async def attempt(self, login: str, address: str, now: datetime) -> timedelta | None:
        """Count a login attempt as a failure BEFORE its password is checked, and say whether it
        may be checked: ``None`` if so, else how long to wait.

        Counting first closes the race of many simultaneous tries: each one is counted before
        any is verified, and one that finds more than the limit counted (its own included) is
        refused, so at most the limit reach the password check. A refused try that was over the
        limit already is not counted (hammering does not extend the wait). Call
        :meth:`succeeded` when the password was right.
        """
        wait = await self.blocked_for(login, address, now)
        if wait is not None:
            return wait
        await self.failed(login, address, now)
        return await self._over(login, address, now, allowed=1)

    async def failed(self, login: str, address: str, now: datetime) -> None:
        """Count one failure of ``login`` and of ``address`` at ``now``."""
        keys = list(self._keys(login, address))
        await self._store.record(keys, now, prune_before=now - self._window)

    async def succeeded(self, login: str, address: str, now: datetime) -> None:
        """The attempt counted at ``now`` had the right password: forget the login's failures,
        and this attempt's count against the address (a success is no failure)."""
        await self._store.clear(f"login:{login.casefold()}")
        await self._store.discard(f"address:{address}", now)
