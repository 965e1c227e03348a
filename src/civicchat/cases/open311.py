"""Forwarding cases to the city's back office through Open311 GeoReport v2.

:class:`Open311Client` speaks the protocol over an injected :class:`httpx.AsyncClient`;
:func:`forward_case` and :func:`poll_case` are the two background jobs (the outbox runs them)
that record their outcome on the case. Errors are typed: :class:`Open311TransientError` (5xx,
429, timeouts) is worth retrying, :class:`Open311RejectedError` (4xx) carries the server's own
``description`` for the operator.

The photo travels as a link to civicchat, signed so that only the back office can open it::

    >>> from datetime import UTC, datetime
    >>> url = signed_media_url("https://civic.example/", "whatsapp:wamid-1", "s3cret-s3cret-s3cret",
    ...                        datetime(2026, 4, 1, tzinfo=UTC))
    >>> url.split("?")[0]
    'https://civic.example/media/whatsapp%3Awamid-1'
    >>> verify_signed_media_url(url, "s3cret-s3cret-s3cret", datetime(2026, 3, 31, tzinfo=UTC))
    'whatsapp:wamid-1'
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx

from civicchat.cases._text import fold
from civicchat.cases.base import CaseStore, CaseUpkeep
from civicchat.cases.config import CasesConfig
from civicchat.cases.errors import (
    CaseNotFoundError,
    Open311Error,
    Open311RejectedError,
    Open311TransientError,
)
from civicchat.cases.models import Case, CaseStatus
from civicchat.clock import Clock
from civicchat.exceptions import ConfigError

__all__ = [
    "DESCRIPTION_MAX_CHARS",
    "ForwardResult",
    "Open311Client",
    "Open311Service",
    "RemoteStatus",
    "RetryPolicy",
    "SubmitResult",
    "forward_case",
    "map_remote_status",
    "poll_case",
    "signed_media_url",
    "verify_media_signature",
    "verify_signed_media_url",
    "with_retries",
]

logger = logging.getLogger("civicchat.cases")

#: GeoReport v2 caps ``description`` at 4,000 characters.
DESCRIPTION_MAX_CHARS = 4000
_ACTOR = "open311"
_T = TypeVar("_T")


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Open311Service:
    """One entry of ``services.json``."""

    service_code: str
    service_name: str
    description: str = ""
    metadata: bool = False
    type: str = "realtime"
    keywords: tuple[str, ...] = ()
    group: str = ""


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """The answer to ``POST requests.json``: an id, or a token to exchange for one later."""

    service_request_id: str | None
    token: str | None = None
    service_notice: str | None = None
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    """A request's status as the back office reports it, mapped to a :class:`CaseStatus`."""

    service_request_id: str
    status: CaseStatus
    remote_status: str
    status_notes: str | None = None
    agency_responsible: str | None = None
    updated_at: datetime | None = None


# Statuses beyond open/closed come from the FixMyStreet extension many servers implement.
_REMOTE_STATUS = {
    "open": CaseStatus.RECEIVED,
    "acknowledged": CaseStatus.IN_PROGRESS,
    "investigating": CaseStatus.IN_PROGRESS,
    "in_progress": CaseStatus.IN_PROGRESS,
    "in progress": CaseStatus.IN_PROGRESS,
    "action_scheduled": CaseStatus.IN_PROGRESS,
    "closed": CaseStatus.RESOLVED,
    "fixed": CaseStatus.RESOLVED,
    "duplicate": CaseStatus.REJECTED,
    "not_councils_responsibility": CaseStatus.REJECTED,
    "no_further_action": CaseStatus.REJECTED,
    "unable_to_fix": CaseStatus.REJECTED,
    "rejected": CaseStatus.REJECTED,
}
_REJECTION_WORDS = (
    "duplicate",
    "duplicat",
    "duplicada",
    "duplicado",
    "rejected",
    "rebutjada",
    "rebutjat",
    "rechazada",
    "rechazado",
    "no procedeix",
    "no procede",
    "not valid",
)


def map_remote_status(status: str, status_notes: str | None = None) -> CaseStatus:
    """Map a GeoReport status (and its notes) to a :class:`CaseStatus`.

    ``open`` is *received*, or *in progress* once the back office has written a note; ``closed``
    is *resolved*, or *rejected* when the notes say duplicate / rejected (in en, ca or es).
    Unknown statuses count as *received*.
    """
    key = status.strip().lower()
    mapped = _REMOTE_STATUS.get(key, CaseStatus.RECEIVED)
    notes = fold(status_notes or "")
    if mapped is CaseStatus.RECEIVED and key == "open" and notes:
        return CaseStatus.IN_PROGRESS
    if mapped is CaseStatus.RESOLVED and any(word in notes for word in _REJECTION_WORDS):
        return CaseStatus.REJECTED
    return mapped


# --------------------------------------------------------------------------- the client


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _first(payload: Any, what: str) -> dict[str, Any]:
    if isinstance(payload, dict):
        nested = payload.get("service_requests") or payload.get("service_request")
        payload = nested if nested is not None else [payload]
    if not isinstance(payload, list) or not payload or not isinstance(payload[0], dict):
        raise Open311Error(f"unexpected answer to {what}: expected a list of objects")
    return payload[0]


def _error_description(response: httpx.Response) -> tuple[str | None, int | None]:
    """The server's ``[{"code": 400, "description": "..."}]`` answer, or its raw text."""
    try:
        payload = response.json()
    except ValueError:
        text = response.text.strip()
        return (text[:500] or None), None
    items = payload if isinstance(payload, list) else [payload]
    descriptions = [
        str(item["description"])
        for item in items
        if isinstance(item, dict) and item.get("description")
    ]
    codes = [item.get("code") for item in items if isinstance(item, dict)]
    code = next((c for c in codes if isinstance(c, int)), None)
    return ("; ".join(descriptions) or None), code


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


class Open311Client:
    """A GeoReport v2 client for one endpoint.

    ``base_url`` is the endpoint root (``https://city.example/open311/v2/``); ``client`` is an
    :class:`httpx.AsyncClient` the caller owns (its timeouts apply). The API key goes with every
    ``POST``; ``jurisdiction_id`` with every request when the endpoint serves several cities.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        *,
        api_key: str,
        jurisdiction_id: str | None = None,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError(
                f"Open311 base_url must be an http(s) URL such as https://city.example/open311/v2/, "
                f"not {base_url!r}"
            )
        if not api_key:
            raise ConfigError("Open311 needs the api_key the city gave you (api_key=...)")
        self._client = client
        self._base = httpx.URL(base_url if base_url.endswith("/") else base_url + "/")
        self._api_key = api_key
        self._jurisdiction = jurisdiction_id

    def _params(self) -> dict[str, str]:
        return {} if self._jurisdiction is None else {"jurisdiction_id": self._jurisdiction}

    async def _call(
        self, method: str, path: str, *, data: dict[str, str] | None = None, allow_404: bool = False
    ) -> Any:
        url = self._base.join(path)
        try:
            response = await self._client.request(method, url, params=self._params(), data=data)
        except httpx.TimeoutException as exc:
            raise Open311TransientError(f"Open311 {method} {path} timed out") from exc
        except httpx.TransportError as exc:
            raise Open311TransientError(f"Open311 {method} {path} failed: {exc!r}") from exc
        status = response.status_code
        logger.debug("open311 %s %s -> %d", method, path, status)
        if allow_404 and status == 404:
            return None
        if status >= 500 or status == 429:
            description, code = _error_description(response)
            raise Open311TransientError(
                f"Open311 {method} {path} answered {status}",
                status_code=status,
                provider_code=code,
                description=description,
                retry_after=_retry_after(response),
            )
        if status >= 400:
            description, code = _error_description(response)
            raise Open311RejectedError(
                f"Open311 {method} {path} refused ({status}): {description or 'no description'}",
                status_code=status,
                provider_code=code,
                description=description,
            )
        try:
            return response.json()
        except ValueError as exc:
            raise Open311Error(
                f"Open311 {method} {path} answered {status} without JSON", status_code=status
            ) from exc

    async def services(self) -> list[Open311Service]:
        """The service list (``GET services.json``)."""
        payload = await self._call("GET", "services.json")
        if not isinstance(payload, list):
            raise Open311Error("unexpected answer to services.json: expected a list")
        services = []
        for item in payload:
            if not isinstance(item, dict) or item.get("service_code") is None:
                continue
            keywords = str(item.get("keywords") or "")
            services.append(
                Open311Service(
                    service_code=str(item["service_code"]),
                    service_name=str(item.get("service_name") or ""),
                    description=str(item.get("description") or ""),
                    metadata=bool(item.get("metadata")),
                    type=str(item.get("type") or "realtime"),
                    keywords=tuple(k.strip() for k in keywords.split(",") if k.strip()),
                    group=str(item.get("group") or ""),
                )
            )
        return services

    async def submit(
        self, case: Case, service_code: str, media_url: str | None = None
    ) -> SubmitResult:
        """Create a service request for ``case`` (``POST requests.json``, form-encoded).

        Sends the point (``lat``/``long``) when there is one, and the typed or geocoded address
        (``address_string``) when there is one; a case with neither is refused before sending.
        No personal data of the citizen is sent.
        """
        location = case.location
        form: dict[str, str] = {"api_key": self._api_key, "service_code": service_code}
        form.update(self._params())
        if (
            location is not None
            and location.latitude is not None
            and location.longitude is not None
        ):
            form["lat"] = f"{location.latitude:.6f}"
            form["long"] = f"{location.longitude:.6f}"
        if location is not None and location.address:
            form["address_string"] = location.address
        if "lat" not in form and "address_string" not in form:
            raise Open311RejectedError(
                f"case {case.reference} has no location; Open311 needs a point or an address",
                description="no location: an operator must add a point or an address",
            )
        description = f"[{case.reference}] {case.description}".strip()
        form["description"] = description[:DESCRIPTION_MAX_CHARS]
        if media_url:
            form["media_url"] = media_url
        first = _first(await self._call("POST", "requests.json", data=form), "requests.json")
        result = SubmitResult(
            service_request_id=_text(first.get("service_request_id")),
            token=_text(first.get("token")),
            service_notice=_text(first.get("service_notice")),
            account_id=_text(first.get("account_id")),
        )
        if result.service_request_id is None and result.token is None:
            raise Open311Error("requests.json answered neither a service_request_id nor a token")
        return result

    async def token_to_id(self, token: str) -> str | None:
        """The request id behind a token (``GET tokens/{token}.json``); None while unknown."""
        payload = await self._call("GET", f"tokens/{quote(token, safe='')}.json", allow_404=True)
        if payload is None or payload == []:
            return None
        return _text(_first(payload, "tokens").get("service_request_id"))

    async def status(self, service_request_id: str) -> RemoteStatus:
        """The request's status (``GET requests/{id}.json``)."""
        path = f"requests/{quote(service_request_id, safe='')}.json"
        first = _first(await self._call("GET", path), "requests/{id}.json")
        remote = str(first.get("status") or "open")
        notes = _text(first.get("status_notes"))
        updated: datetime | None = None
        raw_updated = first.get("updated_datetime")
        if isinstance(raw_updated, str):
            try:
                updated = datetime.fromisoformat(raw_updated)
            except ValueError:
                updated = None
            if updated is not None and updated.tzinfo is None:
                updated = None  # the spec requires an offset; a naive time cannot be placed
        return RemoteStatus(
            service_request_id=service_request_id,
            status=map_remote_status(remote, notes),
            remote_status=remote,
            status_notes=notes,
            agency_responsible=_text(first.get("agency_responsible")),
            updated_at=updated,
        )


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often to try and how long to wait: ``base_delay * factor**n``, capped."""

    attempts: int = 3
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError("RetryPolicy.attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise ConfigError("RetryPolicy delays must be >= 0 and factor >= 1")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based); the server's wish wins."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return float(min(self.base_delay * self.factor**retry, self.max_delay))


async def with_retries(
    call: Callable[[], Awaitable[_T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[int, Open311TransientError], None] | None = None,
) -> tuple[_T, int]:
    """Run ``call`` until it succeeds, retrying :class:`Open311TransientError` with backoff.

    Returns the result and the number of attempts. The last transient error, or any other
    error, propagates.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return await call(), attempt
        except Open311TransientError as exc:
            if attempt == policy.attempts:
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            await sleep(policy.delay(attempt - 1, exc.retry_after))
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True, slots=True)
class ForwardResult:
    """What :func:`forward_case` did. ``retryable`` tells the outbox to try again later."""

    case: Case
    submitted: SubmitResult | None
    error: Open311Error | None
    attempts: int

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def retryable(self) -> bool:
        return self.error is not None and self.error.retryable


def _operator_message(error: Open311Error) -> str:
    status = f" ({error.status_code})" if error.status_code else ""
    return f"Open311{status}: {error.description or error}"


async def forward_case(
    reference: str,
    *,
    store: CaseStore,
    upkeep: CaseUpkeep,
    client: Open311Client,
    config: CasesConfig,
    clock: Clock,
    media_url: Callable[[Case], str | None] | None = None,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ForwardResult:
    """Send one case to the back office and record the outcome on the case.

    The service code comes from the case's category. ``media_url`` builds the link to the photo
    (usually with :func:`signed_media_url`). Transient failures are retried with ``retry``'s
    backoff; what remains is recorded as ``open311.last_error`` (the server's own description,
    shown to the operator) and returned, with ``retryable`` saying whether the outbox should try
    again later. A case already forwarded is not sent twice.

    Usually ``store`` and ``upkeep`` are the same object (``MemoryCaseStore`` or a SQL store).
    """
    case = await store.get(reference)
    if case is None:
        raise CaseNotFoundError(reference)
    link = case.open311
    if link.service_request_id is not None or link.token is not None:
        return ForwardResult(case, None, None, 0)
    category = config.category(case.category)
    service_code = None if category is None else category.service_code
    attempts = 0
    error: Open311Error
    if service_code is None:
        error = Open311RejectedError(
            f"category {case.category!r} has no service_code in the cases configuration",
            description=f"category {case.category!r} has no Open311 service_code",
        )
    else:
        url = None if media_url is None or not case.media else media_url(case)
        code = service_code

        async def attempt() -> SubmitResult:
            nonlocal attempts
            attempts += 1
            return await client.submit(case, code, url)

        try:
            submitted, _ = await with_retries(attempt, retry or RetryPolicy(), sleep=sleep)
        except Open311Error as exc:
            error = exc
        else:
            new_link = link.model_copy(
                update={
                    "service_request_id": submitted.service_request_id,
                    "token": submitted.token,
                    "service_notice": submitted.service_notice,
                    "last_error": None,
                    "attempts": link.attempts + attempts,
                    "forwarded_at": clock.now(),
                }
            )
            ident = submitted.service_request_id or f"token {submitted.token}"
            updated = await upkeep.record_forwarding(
                reference, new_link, note=f"Open311: {ident}", actor=_ACTOR, at=clock.now()
            )
            logger.info("case %s forwarded to Open311 (%d attempts)", reference, attempts)
            return ForwardResult(updated, submitted, None, attempts)
    message = _operator_message(error)
    failed = link.model_copy(update={"last_error": message, "attempts": link.attempts + attempts})
    updated = await upkeep.record_forwarding(
        reference, failed, note=message, actor=_ACTOR, at=clock.now()
    )
    logger.warning(
        "case %s not forwarded to Open311 (%s, retryable=%s)",
        reference,
        type(error).__name__,
        error.retryable,
    )
    return ForwardResult(updated, None, error, attempts)


async def poll_case(
    reference: str,
    *,
    store: CaseStore,
    upkeep: CaseUpkeep,
    client: Open311Client,
    clock: Clock,
) -> Case | None:
    """Bring the back office's status home; returns the case when its status changed.

    Exchanges a pending token for the request id first. The caller notifies the citizen of a
    changed status (see :func:`civicchat.cases.notify.status_notification`).
    """
    case = await store.get(reference)
    if case is None:
        raise CaseNotFoundError(reference)
    link = case.open311
    request_id = link.service_request_id
    if request_id is None and link.token is not None:
        request_id = await client.token_to_id(link.token)
        if request_id is None:
            return None
        case = await upkeep.record_forwarding(
            reference,
            link.model_copy(update={"service_request_id": request_id}),
            note=f"Open311: token {link.token} is request {request_id}",
            actor=_ACTOR,
            at=clock.now(),
        )
    if request_id is None:
        return None
    remote = await client.status(request_id)
    if remote.status == case.status:
        return None
    if case.status.is_final and not remote.status.is_final:
        return None  # an operator closed it here; the back office lagging does not reopen it
    note = remote.status_notes or ""
    return await store.update_status(
        reference, remote.status, note=note, actor=_ACTOR, at=clock.now()
    )


# --------------------------------------------------------------------------- signed media links


def _key(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if len(key) < 16:
        raise ConfigError("the media link secret must be at least 16 bytes long")
    return key


def _signature(media_ref: str, expires: int, secret: str | bytes) -> str:
    message = f"{media_ref}\n{expires}".encode()
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def signed_media_url(base_url: str, media_ref: str, secret: str | bytes, expires: datetime) -> str:
    """A link to ``{base_url}/media/{media_ref}`` that works until ``expires``.

    The signature is an HMAC-SHA256 of the reference and the expiry time, keyed with ``secret``.
    """
    if expires.tzinfo is None:
        raise ValueError("expires must be zone-aware")
    stamp = int(expires.timestamp())
    signature = _signature(media_ref, stamp, secret)
    ref = quote(media_ref, safe="")
    return f"{base_url.rstrip('/')}/media/{ref}?expires={stamp}&signature={signature}"


def verify_media_signature(
    media_ref: str, expires: str | int, signature: str, secret: str | bytes, now: datetime
) -> bool:
    """True when ``signature`` is right for ``media_ref`` and ``expires`` is still ahead of ``now``.

    Compares in constant time; any malformed input is simply False.
    """
    try:
        stamp = int(expires)
    except (TypeError, ValueError):
        return False
    if now.astimezone(UTC).timestamp() >= stamp:
        return False
    expected = _signature(media_ref, stamp, secret)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def verify_signed_media_url(url: str, secret: str | bytes, now: datetime) -> str | None:
    """The media reference of a valid, unexpired signed link, or None."""
    parts = urlsplit(url)
    _, _, ref = parts.path.rpartition("/media/")
    if not ref or "/" in ref:
        return None
    query = parse_qs(parts.query)
    expires = query.get("expires", [""])[0]
    signature = query.get("signature", [""])[0]
    media_ref = unquote(ref)
    if verify_media_signature(media_ref, expires, signature, secret, now):
        return media_ref
    return None
