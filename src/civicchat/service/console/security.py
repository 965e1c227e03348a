"""Passwords, signed session cookies, CSRF tokens and login rate limiting.

Sessions are stateless signed cookies (itsdangerous) holding the operator id, the session's CSRF
token and a fingerprint of the password hash: changing a password ends every other session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from civicchat.storage.base import Operator
from civicchat.storage.login_sql import LoginFailures

__all__ = [
    "SESSION_COOKIE",
    "LoginLimiter",
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


class LoginLimiter:
    """Counts failed logins per login name and per client address in a sliding window.

    With ``shared`` (the database's :class:`~civicchat.storage.login_sql.LoginFailures`) every
    process of the service counts the same failures: ``serve --workers 2`` gives an attacker no
    more tries than one process. Without it the count is in memory, per process. (No in-memory
    fast path in front of the database: it would keep refusing a login that succeeded in
    another process since; one indexed query costs little next to the password hash.)
    """

    def __init__(
        self,
        *,
        per_login: int,
        per_address: int,
        window: timedelta,
        shared: LoginFailures | None = None,
    ) -> None:
        self._limits = {"login": per_login, "address": per_address}
        self._window = window
        self._failures: dict[tuple[str, str], deque[datetime]] = {}
        self._shared = shared

    def _recent(self, key: tuple[str, str], now: datetime) -> deque[datetime]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    @staticmethod
    def _keys(login: str, address: str) -> tuple[tuple[str, str], tuple[str, str]]:
        return ("login", login.casefold()), ("address", address)

    async def blocked_for(self, login: str, address: str, now: datetime) -> timedelta | None:
        """How long until another try is allowed, or ``None`` if one is allowed now."""
        return await self._over(login, address, now, allowed=0)

    async def _over(
        self, login: str, address: str, now: datetime, *, allowed: int
    ) -> timedelta | None:
        """The wait if a key has more than ``limit - allowed`` failures in the window."""
        waits: list[timedelta] = []
        if self._shared is not None:
            keys = {f"{kind}:{value}": kind for kind, value in self._keys(login, address)}
            found = await self._shared.since(list(keys), now - self._window)
            for key, (count, oldest) in found.items():
                if count > self._limits[keys[key]] - 1 + allowed:
                    waits.append(max(oldest + self._window - now, timedelta(seconds=1)))
            return max(waits) if waits else None
        for kind, value in self._keys(login, address):
            times = self._recent((kind, value), now)
            if len(times) > self._limits[kind] - 1 + allowed:
                waits.append(max(times[0] + self._window - now, timedelta(seconds=1)))
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
        keys = self._keys(login, address)
        if self._shared is not None:
            await self._shared.record(
                [f"{kind}:{value}" for kind, value in keys], now, prune_before=now - self._window
            )
            return
        for key in keys:
            self._recent(key, now)
            self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > 100_000:  # bound memory under a spray of random logins
            oldest = sorted(self._failures, key=lambda k: self._failures[k][-1])[:50_000]
            for key in oldest:
                del self._failures[key]

    async def succeeded(self, login: str, address: str, now: datetime) -> None:
        """The attempt counted at ``now`` had the right password: forget the login's failures,
        and this attempt's count against the address (a success is no failure)."""
        address_key = ("address", address)
        if self._shared is not None:
            await self._shared.clear(f"login:{login.casefold()}")
            await self._shared.discard(f"address:{address}", now)
            return
        self._failures.pop(("login", login.casefold()), None)
        times = self._failures.get(address_key)
        if times is not None and now in times:
            times.remove(now)
            if not times:
                del self._failures[address_key]
