"""The one exception tree of civicchat.

::

    CivicchatError
    ├── ConfigError                      a configuration file or option is wrong (says how to fix it)
    │   └── CatalogError                 a keyword catalog failed validation (.problems: file, line, keyword)
    ├── ChannelError                     .channel, .account
    │   ├── WebhookError                 a webhook was refused; .status_code is the HTTP answer to give
    │   │   ├── SignatureError           missing or wrong signature / secret token (401 or 403)
    │   │   └── PayloadError             malformed body (400)
    │   ├── SendError                    a provider refused or failed a send; .retryable, .retry_after, .provider_code
    │   │   ├── TransientError           retry with backoff (5xx, timeouts, Meta 1, 2, 131000, 131016)
    │   │   ├── ThrottledError           retry after .retry_after seconds (429, Meta 4, 80007, 130429, 131056)
    │   │   ├── WindowClosedError        outside WhatsApp's 24-hour window: send the account's template
    │   │   ├── AuthenticationError      token invalid or expired (Meta 0, 190; Telegram 401)
    │   │   ├── UndeliverableError       the recipient cannot receive it (Meta 131026)
    │   │   ├── UnsupportedContentError  this channel cannot carry that content (Meta 131051)
    │   │   ├── BlockedError             the account is blocked or restricted (Meta 368, 130403, 131031)
    │   │   └── TemplateError            a template was rejected (Meta 132000-132016)
    │   └── MediaError                   a media download failed
    │       ├── MediaTooLargeError       over the size cap
    │       └── MediaExpiredError        the download URL or media id is no longer valid
    ├── StorageError
    │   └── SchemaBehindError            the database needs ``civicchat db upgrade``
    ├── RoutingError                     a forbidden conversation transition, an unknown operator...
    └── CaseError                        incident cases; defined in civicchat.cases.errors
        ├── CaseReferenceError           text that is not a case reference (MTR-2026-000123)
        ├── CaseNotFoundError            no case with that reference; .reference
        └── Open311Error                 the city's Open311 endpoint failed; .retryable, .status_code
            ├── Open311TransientError    5xx, 429, timeouts, connection errors: retry with backoff
            └── Open311RejectedError     4xx: the request itself is wrong; retrying will not help

Catch :class:`SendError` and look at ``.retryable`` / ``.retry_after`` to decide what to do;
the subclasses say why.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AuthenticationError",
    "BlockedError",
    "CatalogError",
    "CatalogProblem",
    "ChannelError",
    "CivicchatError",
    "ConfigError",
    "MediaError",
    "MediaExpiredError",
    "MediaTooLargeError",
    "PayloadError",
    "RoutingError",
    "SchemaBehindError",
    "SendError",
    "SignatureError",
    "StorageError",
    "TemplateError",
    "ThrottledError",
    "TransientError",
    "UndeliverableError",
    "UnsupportedContentError",
    "WebhookError",
    "WindowClosedError",
]


class CivicchatError(Exception):
    """Base of every error raised by civicchat."""


class ConfigError(CivicchatError):
    """A configuration file or option is wrong; the message says how to fix it."""


@dataclass(frozen=True)
class CatalogProblem:
    """One problem found in a catalog file."""

    file: str
    line: int | None
    keyword: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        who = f" [keyword {self.keyword}]" if self.keyword else ""
        return f"{where}{who}: {self.message}"


class CatalogError(ConfigError):
    """A keyword catalog did not validate. ``problems`` lists every problem found."""

    def __init__(self, problems: list[CatalogProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"the catalog has {len(self.problems)} problem(s):\n{lines}")


class ChannelError(CivicchatError):
    """Something went wrong talking to a messaging provider."""

    def __init__(self, message: str, *, channel: str = "", account: str = "") -> None:
        super().__init__(message)
        self.channel = channel
        self.account = account


class WebhookError(ChannelError):
    """A webhook request was refused. ``status_code`` is the HTTP answer to give."""

    status_code: int = 400

    def __init__(
        self,
        message: str,
        *,
        channel: str = "",
        account: str = "",
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, channel=channel, account=account)
        if status_code is not None:
            self.status_code = status_code


class SignatureError(WebhookError):
    """The signature or secret token is missing (401) or wrong (403)."""

    status_code = 403


class PayloadError(WebhookError):
    """The body is not valid JSON or not the provider's envelope."""

    status_code = 400


class SendError(ChannelError):
    """A send failed. ``retryable`` and ``retry_after`` (seconds) say what to do next."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        channel: str = "",
        account: str = "",
        status_code: int | None = None,
        provider_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, channel=channel, account=account)
        self.status_code = status_code
        self.provider_code = provider_code
        self.retry_after = retry_after


class TransientError(SendError):
    retryable = True


class ThrottledError(SendError):
    retryable = True


class WindowClosedError(SendError):
    """Free-form content outside WhatsApp's 24-hour window; send the account's template."""


class AuthenticationError(SendError):
    pass


class UndeliverableError(SendError):
    pass


class UnsupportedContentError(SendError):
    pass


class BlockedError(SendError):
    pass


class TemplateError(SendError):
    pass


class MediaError(ChannelError):
    """A media download failed."""


class MediaTooLargeError(MediaError):
    pass


class MediaExpiredError(MediaError):
    pass


class StorageError(CivicchatError):
    """A storage backend failed."""


class SchemaBehindError(StorageError):
    """The database schema is older than this civicchat; run ``civicchat db upgrade``."""


class RoutingError(CivicchatError):
    """A routing rule was broken (a forbidden state transition, an unknown operator...)."""
