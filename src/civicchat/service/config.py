"""The service's YAML configuration: the ONLY place in civicchat that reads the environment.

Strings may hold ``${NAME}`` (required) or ``${NAME:-default}`` (optional) references, filled
from the environment and, first, from the ``secrets_file`` named in the configuration (``NAME=value``
lines, like a systemd ``EnvironmentFile``). A messaging account whose references are missing is
*disabled* with a warning naming the variables, so the service starts with no variables at all
(the web chat still works); a missing variable anywhere else is a :class:`ConfigError`.

Relative paths of catalogs, hours, templates and canned responses are relative to the file;
the SQLite file and the media directory are relative to the working directory.

Example::

    config = load_config("examples/mataro/config.yaml")
    for account in config.accounts:
        print(account.name, account.channel, account.enabled)
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from civicchat.clock import Clock, ManualClock, SystemClock
from civicchat.exceptions import ConfigError

__all__ = [
    "AccountConfig",
    "AssignmentConfig",
    "ClockConfig",
    "MediaConfig",
    "ServerConfig",
    "ServiceConfig",
    "ShiftedClock",
    "TelegramConfig",
    "WebChatConfig",
    "WhatsAppConfig",
    "WorkersConfig",
    "config_from_environment",
    "export_for_processes",
    "interpolate",
    "load_config",
    "parse_config",
]

logger = logging.getLogger("civicchat.service")

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/civicchat.db"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WhatsAppConfig(_Model):
    """A WhatsApp Cloud API number (see ``civicchat.channels.WhatsAppAccount``)."""

    phone_number_id: str
    access_token: str = Field(repr=False)
    app_secret: str = Field(repr=False)
    verify_token: str = Field(repr=False)
    api_base_url: str = "https://graph.facebook.com"
    graph_version: str = "v21.0"
    messages_per_second: float = 80


class TelegramConfig(_Model):
    """A Telegram bot (see ``civicchat.channels.TelegramAccount``)."""

    bot_token: str = Field(repr=False)
    secret_token: str = Field(repr=False)
    api_base_url: str = "https://api.telegram.org"


class WebChatConfig(_Model):
    """The city's web chat page: ``title`` per language (``display_name: {ca: ..., es: ...}``
    of a web chat account lands here)."""

    title: Mapping[str, str] = Field(
        default_factory=lambda: {"ca": "Xat del 010", "es": "Chat del 010"}
    )


# --------------------------------------------------------------------------- automatic assignment
# (read by civicchat.service.dispatch)

ASSIGNMENT_STRATEGIES = ("sticky", "by_language", "by_team", "least_busy", "round_robin")
_PICKERS = ("least_busy", "round_robin")


class AssignmentConfig(_Model):
    """How an account's queue is handed to operators (``docs/routing.md``, automatic assignment).

    ``strategy`` is one name or a list composed left to right, filters first and one picker last:
    ``[sticky, by_language, least_busy]``. A list ending with a filter gets ``least_busy``.
    """

    strategy: tuple[str, ...] = ("least_busy",)
    reply_timeout_minutes: float = Field(default=10, gt=0, le=24 * 60)

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, value: Any) -> tuple[str, ...]:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list | tuple) or not names:
            raise ValueError("give a strategy name or a list such as [sticky, least_busy]")
        out = tuple(str(n).strip() for n in names)
        for name in out:
            if name not in ASSIGNMENT_STRATEGIES:
                raise ValueError(
                    f"unknown strategy {name!r}; use {', '.join(ASSIGNMENT_STRATEGIES)}"
                )
        if any(name in _PICKERS for name in out[:-1]):
            raise ValueError("least_busy / round_robin pick an operator: put them last")
        return out if out[-1] in _PICKERS else (*out, "least_busy")


# --------------------------------------------------------------------------- accounts


class AccountConfig(_Model):
    """One messaging account: a WhatsApp number, a Telegram bot or a web chat.

    ``enabled`` is false when secrets it references are missing (``missing`` names them).
    """

    name: str
    channel: Literal["whatsapp", "telegram", "webchat"]
    display_name: str = ""
    group: str | None = None
    catalog: Path
    office_hours: Path
    templates: Path | None = None
    canned_responses: Path | None = None
    languages: tuple[str, ...] = ("ca", "es")
    reengagement_template: str | None = None
    first_contact_notice: bool = True
    assignment: AssignmentConfig | None = None  # None: operators take from the queue themselves
    whatsapp: WhatsAppConfig | None = None
    telegram: TelegramConfig | None = None
    webchat: WebChatConfig | None = None
    enabled: bool = True
    missing: tuple[str, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use 1-63 of a-z 0-9 _ - (it is part of URLs), e.g. 'mataro-wa'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _webchat_title_per_language(cls, data: Any) -> Any:
        """A web chat's ``display_name: {ca: ..., es: ...}``: the page's title per language.

        It becomes ``webchat.title``; ``display_name`` keeps one string (the first language's)
        for the console and logs.
        """
        if not isinstance(data, dict) or not isinstance(data.get("display_name"), dict):
            return data
        names = data["display_name"]
        if data.get("channel") != "webchat":
            raise ValueError(
                "display_name per language ({ca: ..., es: ...}) is for web chat accounts; "
                "give one string"
            )
        if not names or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in names.items()
        ):
            raise ValueError(
                "display_name per language needs a text for each language, "
                "e.g. {ca: Xat del 010, es: Chat del 010}"
            )
        section = data.get("webchat") or {}
        if not isinstance(section, dict):
            return data  # the field's own validation says what is wrong
        if "title" in section:
            raise ValueError("give the web chat's title once: display_name or webchat.title")
        languages = data.get("languages") or ("ca", "es")
        first = next((names[lang] for lang in languages if lang in names), None)
        return {
            **data,
            "display_name": first or next(iter(names.values())),
            "webchat": {**section, "title": {k: v.strip() for k, v in names.items()}},
        }


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    access_log: bool = False
    webchat_messages_per_minute: int = Field(default=30, ge=1)  # per client address
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's
    # forwarded_allow_ips): the client address the web chat's limits count. "*": any.
    forwarded_allow_ips: list[str] = Field(default_factory=lambda: ["127.0.0.1"], min_length=1)
    webchat_upload_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)  # a photo
    # Group commits of webhooks running at once, each on its own connection (InboxBatcher);
    # None: 1 on SQLite (one writer), 4 on PostgreSQL. More may help a database server with many
    # cores and slow flushes; each one is a pooled connection the workers then lack.
    inbox_commits: int | None = Field(default=None, ge=1, le=32)
    secure_cookies: bool | None = None  # default: true when public_url is https


class WorkersConfig(_Model):
    enabled: bool = True
    # None: chosen by the database (see ``for_database``).
    inbox: int | None = Field(default=None, ge=0, le=64)
    outbox: int | None = Field(default=None, ge=0, le=64)
    media: int = Field(default=1, ge=0, le=16)
    idle_seconds: float = Field(default=0.05, gt=0, le=10)
    # Webhooks in flight at which this process's own inbox and outbox workers step aside (each
    # waits at most 0.2 s a round); 0: never. See civicchat.service.webhooks.IngressGate.
    busy_webhooks: int = Field(default=16, ge=0, le=10_000)

    def for_database(self, *, postgres: bool) -> tuple[int, int]:
        """(inbox, outbox) workers per process. Unset: 1 and 1 on SQLite (one writer: more only
        queue on its lock); 2 and 4 on PostgreSQL. An inbox worker handles a claimed batch in
        one transaction, so two keep the CPU busy (a second one runs while the first waits for
        the server) and their batches stay large; eight made smaller batches, more statements a
        message and worse latency (``benchmarks/pipeline.py``: reply p99 at 200/s 280-300 ms
        with 8, 160-220 ms with 2). An outbox worker waits for its batch's provider calls
        (0.1-0.3 s on the real Graph API): four keep enough sends in flight."""
        inbox = self.inbox if self.inbox is not None else (2 if postgres else 1)
        outbox = self.outbox if self.outbox is not None else (4 if postgres else 1)
        return inbox, outbox


class MediaConfig(_Model):
    directory: Path = Path("var/media")
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)


class CasesSettings(_Model):
    """``cases:``: citizens' reports (``docs/cases.md``). Without ``config`` there are none."""

    config: Path | None = None  # the cases file, e.g. cases.yaml (relative to this file)
    accounts: tuple[str, ...] | None = None  # accounts with the report flow; None: every one
    retention_days: int | None = Field(default=None, ge=1)  # overrides the cases file's
    open311_url: str | None = None  # GeoReport v2 endpoint; None or "": no forwarding
    open311_api_key: str = Field(default="", repr=False)
    open311_jurisdiction_id: str | None = None
    poll_minutes: float = Field(default=15, gt=0)
    media_link_days: int = Field(default=30, ge=1)


class ClockConfig(_Model):
    """For tests only: ``fixed`` freezes time, ``start`` makes it run from that instant."""

    fixed: datetime | None = None
    start: datetime | None = None

    @field_validator("fixed", "start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-11-30T10:00:00+01:00")
        return value


class ServiceConfig(_Model):
    """The whole service configuration (see ``docs/service.md``)."""

    database_url: str = DEFAULT_DATABASE_URL
    database_schema: str | None = None  # PostgreSQL search_path (tests, one schema per city)
    secret_key: str = Field(default="", repr=False)
    live: Literal["auto", "memory", "postgres"] = "auto"
    demo_operators: bool = False
    operator_group: str | None = None
    accounts: tuple[AccountConfig, ...]
    server: ServerConfig = ServerConfig()
    workers: WorkersConfig = WorkersConfig()
    media: MediaConfig = MediaConfig()
    cases: CasesSettings = CasesSettings()
    clock: ClockConfig = ClockConfig()
    base_dir: Path = Path(".")

    @property
    def enabled_accounts(self) -> tuple[AccountConfig, ...]:
        return tuple(a for a in self.accounts if a.enabled)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite") or "://" not in self.database_url

    def make_clock(self) -> Clock:
        """The clock for this service: the system clock unless a test clock is configured."""
        if self.clock.fixed is not None:
            return ManualClock(self.clock.fixed)
        if self.clock.start is not None:
            return ShiftedClock(self.clock.start)
        return SystemClock()


class ShiftedClock:
    """Real time running from ``start`` (a test clock that still moves)."""

    def __init__(self, start: datetime) -> None:
        self._offset = start - SystemClock().now()

    def now(self) -> datetime:
        return SystemClock().now() + self._offset


def interpolate(
    value: Any, env: Mapping[str, str], missing: list[tuple[str, str]], path: str = ""
) -> Any:
    """Fill ``${NAME}`` / ``${NAME:-default}`` in every string of ``value``.

    References without a value and without a default are appended to ``missing`` as
    ``(path, NAME)`` and replaced by an empty string.
    """
    if isinstance(value, str):

        def fill(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = env.get(name)
            if found not in (None, ""):
                return str(found)
            if default is not None:
                return default
            missing.append((path, name))
            return ""

        return _REF.sub(fill, value)
    if isinstance(value, dict):
        return {
            k: interpolate(v, env, missing, f"{path}.{k}" if path else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate(v, env, missing, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def read_secrets_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments, optional quotes), like a systemd EnvironmentFile."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the secrets file {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{path}:{number}: expected NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def parse_config(
    text: str,
    *,
    base_dir: Path,
    env: Mapping[str, str] | None = None,
    source: str = "<config>",
) -> ServiceConfig:
    """Parse configuration ``text``; ``env`` defaults to ``os.environ``."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with 'accounts' at the top")
    environ: dict[str, str] = dict(os.environ if env is None else env)
    secrets_file = raw.pop("secrets_file", None)
    if secrets_file:
        path = Path(interpolate(str(secrets_file), environ, []))
        path = path if path.is_absolute() else base_dir / path
        if path.exists():
            environ = {**read_secrets_file(path), **environ}
        else:
            logger.info("secrets file %s not found; using the environment only", path)

    accounts_raw = raw.pop("accounts", None)
    if not isinstance(accounts_raw, list) or not accounts_raw:
        raise ConfigError(f"{source}: 'accounts' must be a non-empty list")
    missing: list[tuple[str, str]] = []
    top = interpolate(raw, environ, missing)
    if missing:
        names = sorted({name for _, name in missing})
        raise ConfigError(
            f"{source}: environment variable(s) {', '.join(names)} not set "
            f"(used at {', '.join(sorted({p for p, _ in missing}))}); set them or give a default "
            "with ${NAME:-default}"
        )
    accounts: list[dict[str, Any]] = []
    for index, item in enumerate(accounts_raw):
        if not isinstance(item, dict):
            raise ConfigError(f"{source}: accounts[{index}] must be a mapping")
        acc_missing: list[tuple[str, str]] = []
        filled = interpolate(item, environ, acc_missing, f"accounts[{index}]")
        acc_names = tuple(sorted({name for _, name in acc_missing}))
        if acc_names:
            filled["enabled"] = False
            filled["missing"] = acc_names
            # Placeholders keep the disabled account valid; it never reaches a channel.
            _placeholders(filled)
        for key in ("catalog", "office_hours", "templates", "canned_responses"):
            if filled.get(key):
                p = Path(filled[key])
                filled[key] = p if p.is_absolute() else base_dir / p
        accounts.append(filled)
    top["accounts"] = accounts
    top["base_dir"] = base_dir
    cases = top.get("cases")
    if isinstance(cases, dict) and cases.get("config"):
        cases["config"] = base_dir / Path(str(cases["config"]))  # an absolute path stays
    try:
        config = ServiceConfig.model_validate(top)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None
    _check(config, source)
    for account in config.accounts:
        if not account.enabled:
            logger.warning(
                "account %s (%s) is DISABLED: environment variable(s) %s not set",
                account.name,
                account.channel,
                ", ".join(account.missing),
            )
    return config


def _placeholders(item: dict[str, Any]) -> None:
    for key in ("whatsapp", "telegram"):
        section = item.get(key)
        if isinstance(section, dict):
            for field_name, value in section.items():
                if value == "":
                    section[field_name] = "0" if field_name == "phone_number_id" else "missing"


def _check(config: ServiceConfig, source: str) -> None:
    seen: set[str] = set()
    for account in config.accounts:
        if account.name in seen:
            raise ConfigError(f"{source}: two accounts are named {account.name!r}")
        seen.add(account.name)
        section = getattr(account, account.channel, None)
        if account.channel != "webchat" and section is None:
            raise ConfigError(
                f"{source}: account {account.name!r} needs a '{account.channel}:' section"
            )
        for key in ("catalog", "office_hours", "templates", "canned_responses"):
            path = getattr(account, key)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{source}: account {account.name!r}: {key} {path} not found")


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> ServiceConfig:
    """Read the configuration file at ``path`` (see the module docstring)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration {file}: {exc.strerror}") from None
    return parse_config(text, base_dir=file.resolve().parent, env=env, source=str(file))


CONFIG_ENV = "CIVICCHAT_CONFIG"
_NO_WORKERS_ENV = "CIVICCHAT_NO_WORKERS"


_SECRET_ENV = "CIVICCHAT_PROCESS_SECRET_KEY"


def export_for_processes(path: str | Path, *, workers: bool, secret_key: str = "") -> None:
    """Hand the configuration to the web processes uvicorn starts (``serve --workers N``).

    ``secret_key`` (used when the configuration has none) makes every process sign console
    sessions alike.
    """
    os.environ[CONFIG_ENV] = str(Path(path).resolve())
    os.environ[_NO_WORKERS_ENV] = "" if workers else "1"
    os.environ[_SECRET_ENV] = secret_key


def config_from_environment() -> tuple[ServiceConfig, bool]:
    """The configuration named by ``CIVICCHAT_CONFIG`` and whether to run workers."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(f"set {CONFIG_ENV} to the service configuration file")
    config = load_config(path)
    shared = os.environ.get(_SECRET_ENV)
    if not config.secret_key and shared:
        config = config.model_copy(update={"secret_key": shared})
    return config, not os.environ.get(_NO_WORKERS_ENV)
