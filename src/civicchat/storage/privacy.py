"""Privacy: masking phone numbers in logs, erasing and exporting one citizen, retention.

::

    >>> mask_phone("+34 600 123 456")
    '+34******456'
    >>> mask_phone("34600123456")
    '34******456'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from civicchat.clock import Clock, SystemClock
from civicchat.storage.base import AuditEntry, BlobStore, ErasureResult, RetentionMode
from civicchat.storage.media import SweepableBlobStore
from civicchat.storage.sql import SqlStore

__all__ = ["ORPHAN_GRACE", "Privacy", "RetentionPolicy", "mask_phone"]

_log = logging.getLogger("civicchat.storage")
_DIGITS = re.compile(r"\d")

#: A blob that no row names is swept once it is this old: a web chat photo is stored before its
#: message is accepted, and a download before its row says so.
ORPHAN_GRACE = timedelta(hours=24)


def mask_phone(value: str | None) -> str:
    """Mask a phone number (or any identifier) for logs: keep the first 2 and last 3 digits.

    Separators are dropped; a leading ``+`` is kept. Short values are masked entirely.
    """
    if not value:
        return ""
    plus = "+" if value.strip().startswith("+") else ""
    digits = "".join(_DIGITS.findall(value))
    if len(digits) < 7:
        return plus + "*" * max(len(digits), 3)
    return f"{plus}{digits[:2]}{'*' * (len(digits) - 5)}{digits[-3:]}"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long an account keeps conversations, and what happens after."""

    days: int
    mode: RetentionMode = RetentionMode.DELETE

    def __post_init__(self) -> None:
        if self.days < 2:
            # Providers re-deliver for up to 36 hours: deleting sooner would let a re-delivery
            # be processed as new.
            raise ValueError("a retention period must be at least 2 days")


class Privacy:
    """Erasure, export and retention, with blob deletion and an audit trail.

    Blobs are shared by identical media (content-addressed keys): erasure and retention delete
    a blob only when no remaining row names it, and always when the last one goes.
    """

    def __init__(
        self, store: SqlStore, blobs: BlobStore | None = None, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.clock: Clock = clock or store.clock or SystemClock()

    async def erase(
        self, channel: str, account: str, external_id: str, *, actor: str
    ) -> ErasureResult:
        """Erase everything about one citizen (their media bytes included, unless another
        citizen's media has the same bytes); audited."""
        result = await self.store.erase_citizen(channel, account, external_id)
        await self._delete_blobs(result.blob_keys)
        async with self.store.transaction() as tx:
            await tx.audit.audit(
                AuditEntry(
                    at=self.clock.now(),
                    actor=actor,
                    action="privacy.erase",
                    account=account,
                    details={
                        "channel": channel,
                        "citizen": mask_phone(external_id),
                        "contacts": result.contacts,
                        "conversations": result.conversations,
                        "messages": result.messages,
                        "media": result.media,
                    },
                )
            )
        _log.info(
            "erased citizen %s on %s/%s: %d message(s)",
            mask_phone(external_id),
            channel,
            account,
            result.messages,
        )
        return result

    async def export(
        self, channel: str, account: str, external_id: str, *, actor: str
    ) -> dict[str, Any]:
        """Everything about one citizen as JSON-ready data; audited."""
        data = await self.store.export_citizen(channel, account, external_id)
        async with self.store.transaction() as tx:
            await tx.audit.audit(
                AuditEntry(
                    at=self.clock.now(),
                    actor=actor,
                    action="privacy.export",
                    account=account,
                    details={"channel": channel, "citizen": mask_phone(external_id)},
                )
            )
        return data

    async def apply_retention(self, policies: Mapping[str, RetentionPolicy]) -> dict[str, int]:
        """Apply each account's policy; returns how many conversations each one touched.

        The media of those conversations go with them (their bytes once no row names them),
        then :meth:`sweep_orphans` removes the account's blobs that nothing names.
        """
        done: dict[str, int] = {}
        for account, policy in policies.items():
            cutoff = self.clock.now() - timedelta(days=policy.days)
            outcome = await self.store.retain(account, older_than=cutoff, mode=policy.mode)
            await self._delete_blobs(outcome.blob_keys)
            done[account] = outcome.conversations
            try:
                await self.sweep_orphans(account)
            except (OSError, ValueError) as exc:
                # A file system error, or an account name that is no directory: the other
                # accounts' retention still runs; the next run sweeps again.
                _log.error("sweeping the orphaned files of %s failed: %s", account, exc)
        return done

    async def sweep_orphans(self, account: str, *, grace: timedelta = ORPHAN_GRACE) -> int:
        """Delete ``account``'s blobs older than ``grace`` that no row names; returns how many.

        Such blobs are left by a web chat photo whose message was never accepted (refused, or
        a crash between storing the bytes and the inbox commit), or a download interrupted
        before its row was updated. Blobs of media still waiting to be processed are kept.
        Needs a :class:`~civicchat.storage.media.SweepableBlobStore` (does nothing otherwise);
        :class:`~civicchat.storage.media.LocalBlobStore` dates files by the filesystem, so
        ``clock`` must be the real one here.
        """
        if not isinstance(self.blobs, SweepableBlobStore):
            return 0
        stale = await self.blobs.stale_keys(account, before=self.clock.now() - grace)
        if not stale:
            return 0
        in_use = await self.store.blob_keys_in_use(stale)
        orphans = [key for key in stale if key not in in_use]
        await self._delete_blobs(orphans)
        if orphans:
            _log.info("swept %d orphaned blob(s) of %s", len(orphans), account)
        return len(orphans)

    async def _delete_blobs(self, keys: Iterable[str]) -> None:
        if self.blobs is None:
            return
        for key in keys:
            await self.store.delete_blob_if_unused(key, self.blobs)
