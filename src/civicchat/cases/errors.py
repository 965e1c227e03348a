"""Errors of the cases package, all under :class:`civicchat.exceptions.CivicchatError`.

::

    CivicchatError
    └── CaseError
        ├── CaseReferenceError        text that is not a case reference (MTR-2026-000123)
        ├── CaseNotFoundError         no case with that reference; .reference
        └── Open311Error              the city's Open311 endpoint failed; .status_code, .provider_code,
            │                         .description (the server's own words, shown to the operator)
            ├── Open311TransientError 5xx, 429, timeouts, connection errors: retry with backoff
            └── Open311RejectedError  4xx: the request itself is wrong; retrying will not help

Catch :class:`Open311Error` and look at ``.retryable``.
"""

from __future__ import annotations

from civicchat.exceptions import CivicchatError

__all__ = [
    "CaseError",
    "CaseNotFoundError",
    "CaseReferenceError",
    "Open311Error",
    "Open311RejectedError",
    "Open311TransientError",
]


class CaseError(CivicchatError):
    """Something went wrong with a case."""


class CaseReferenceError(CaseError, ValueError):
    """The text is not a case reference."""


class CaseNotFoundError(CaseError, LookupError):
    """No case has this reference."""

    def __init__(self, reference: str) -> None:
        super().__init__(f"no case with reference {reference}")
        self.reference = reference


class Open311Error(CaseError):
    """The Open311 endpoint refused or failed a request."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        provider_code: int | None = None,
        description: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.provider_code = provider_code
        self.description = description
        self.retry_after = retry_after


class Open311TransientError(Open311Error):
    """A failure worth retrying later (server error, throttling, timeout, network)."""

    retryable = True


class Open311RejectedError(Open311Error):
    """The server refused the request (4xx); ``description`` says why, in its own words."""
