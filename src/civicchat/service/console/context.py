"""What the console needs from the service: the store, the accounts, the live bus, blobs, a clock.

The service (``civicchat.service.app``) builds one :class:`ConsoleContext` and passes it to
:func:`~civicchat.service.console.build_console_routes`. Nothing here reads the environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from civicchat.clock import Clock
from civicchat.exceptions import ConfigError
from civicchat.keywords import KeywordEngine
from civicchat.routing import OfficeHours
from civicchat.service.live import LiveBus
from civicchat.storage.base import BlobStore
from civicchat.storage.sql import SqlStore

__all__ = [
    "UI_LANGUAGES",
    "CannedResponse",
    "ConsoleAccount",
    "ConsoleContext",
    "DisabledAccount",
    "load_canned_responses",
    "parse_canned_responses",
]

UI_LANGUAGES = ("ca", "es", "en")
_MIN_SECRET = 32
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")


@dataclass(frozen=True, slots=True)
class CannedResponse:
    """A prepared answer an operator inserts and edits before sending (``{operator}`` is filled)."""

    id: str
    shortcut: str
    title: Mapping[str, str]
    text: Mapping[str, str]

    def render(self, language: str, operator: str) -> str:
        """The text in ``language`` (the first one available otherwise), ``{operator}`` filled."""
        source = self.text.get(language) or next(iter(self.text.values()), "")
        return source.replace("{operator}", operator)

    def label(self, language: str) -> str:
        return self.title.get(language) or next(iter(self.title.values()), self.id)


@dataclass(frozen=True, slots=True)
class ConsoleAccount:
    """One messaging account (a WhatsApp number, a Telegram bot, a web chat) as the console sees it.

    ``group`` lets several accounts share their operators: an operator whose ``account`` is the
    group name (for example ``"mataro"``) works on every account of the group; an operator whose
    ``account`` is an account name works on that account only. ``address`` is the public number
    or bot name shown to admins; tokens never reach the console. ``templates`` maps a purpose
    (``"reengagement"``, ``"out_of_hours"``...) to the approved WhatsApp template name.
    """

    name: str
    channel: str
    display_name: str
    engine: KeywordEngine | None = None
    catalog_path: Path | None = None
    office_hours: OfficeHours | None = None
    hours_path: Path | None = None
    canned: tuple[CannedResponse, ...] = ()
    templates: Mapping[str, str] = field(default_factory=dict)
    address: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.channel:
            raise ConfigError("a console account needs a name and a channel")

    def member_of(self, scope: str) -> bool:
        """Whether an operator whose ``account`` is ``scope`` works on this account."""
        return scope in (self.name, self.group)

    @property
    def pool(self) -> str:
        """The operator pool of this account (its group, else itself): the key of the
        assignment lock shared with the dispatcher (``AccountAssignment.pool``)."""
        return self.group or self.name


@dataclass(frozen=True, slots=True)
class DisabledAccount:
    """An account of the configuration that does not run because secrets it needs are not set.

    ``missing`` names the environment variables (names only: a value is never shown, and
    anything that does not look like a variable name is refused). Admins of the account (or of
    its ``group``) see it on the Accounts page with its state and the reason.
    """

    name: str
    channel: str
    display_name: str
    missing: tuple[str, ...]
    group: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.channel:
            raise ConfigError("a disabled account needs a name and a channel")
        for name in self.missing:
            if not _VARIABLE.match(name):
                raise ConfigError(
                    f"account {self.name!r}: {name!r} is not an environment variable name "
                    "(give the names of the missing variables, never their values)"
                )

    def member_of(self, scope: str) -> bool:
        """Whether an operator whose ``account`` is ``scope`` works on this account."""
        return scope in (self.name, self.group)


@dataclass(frozen=True, slots=True)
class ConsoleContext:
    """Everything the console and admin pages use.

    ``secret_key`` signs session cookies (at least 32 characters; keep it in the secrets file).
    ``secure_cookies=False`` only for local http (the cookies are then sent without ``Secure``).
    ``disabled`` lists the configured accounts that do not run (secrets missing) for the admin.
    """

    store: SqlStore
    accounts: Mapping[str, ConsoleAccount]
    live: LiveBus
    blobs: BlobStore
    clock: Clock
    secret_key: str
    secure_cookies: bool = True
    default_language: str = "ca"
    session_max_age: timedelta = timedelta(hours=12)
    login_attempts: int = 5  # failed logins per login name within ``login_window``
    login_attempts_per_address: int = 20  # failed logins per client address
    login_window: timedelta = timedelta(minutes=15)
    shared_login_limit: bool = True  # count failures in the database, across processes
    min_password_length: int = 10
    cases: Any = None  # civicchat.service.cases_worker.CaseServices, when the service keeps cases
    disabled: tuple[DisabledAccount, ...] = ()

    def __post_init__(self) -> None:
        if len(self.secret_key) < _MIN_SECRET:
            raise ConfigError(
                f"the console secret key must have at least {_MIN_SECRET} characters; generate one "
                'with python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        if self.default_language not in UI_LANGUAGES:
            raise ConfigError(f"default_language must be one of {', '.join(UI_LANGUAGES)}")
        for key, account in self.accounts.items():
            if key != account.name:
                raise ConfigError(f"account {account.name!r} is registered under {key!r}")
        for off in self.disabled:
            if off.name in self.accounts:
                raise ConfigError(f"account {off.name!r} cannot be both running and disabled")
        if self.login_attempts < 1 or self.login_attempts_per_address < 1:
            raise ConfigError("login attempt limits must be at least 1")


def parse_canned_responses(
    text: str, *, source: str = "<canned responses>"
) -> tuple[CannedResponse, ...]:
    """Read the canned-responses YAML (``responses: [{id, shortcut, title, text}]``).

    Raises :class:`~civicchat.exceptions.ConfigError` naming ``source`` when it is malformed.
    """
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    items = data.get("responses") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"{source}: expected a 'responses' list")
    out: list[CannedResponse] = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ConfigError(f"{source}: response {n} is not a mapping")
        rid, shortcut = item.get("id"), item.get("shortcut", item.get("id"))
        title, body = item.get("title", {}), item.get("text")
        if not isinstance(rid, str) or not isinstance(shortcut, str):
            raise ConfigError(f"{source}: response {n} needs a string 'id' and 'shortcut'")
        if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
            raise ConfigError(f"{source}: response {rid!r} needs 'text' per language")
        if not isinstance(title, dict):
            raise ConfigError(f"{source}: response {rid!r}: 'title' must be per language")
        out.append(
            CannedResponse(rid, shortcut, {str(k): str(v) for k, v in title.items()}, dict(body))
        )
    return tuple(out)


def load_canned_responses(path: str | Path) -> tuple[CannedResponse, ...]:
    """Read a canned-responses file (see :func:`parse_canned_responses`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read canned responses {path}: {exc}") from None
    return parse_canned_responses(text, source=str(path))
