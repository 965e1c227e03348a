"""Inbound media, off the webhook path: a local-directory blob store and the downloader.

The inbox processor records a :class:`~civicchat.storage.base.MediaRef` for every inbound media;
:class:`MediaDownloader` fetches it through the channel's ``fetch_media``, checks its size and
type, and stores the bytes under a content-addressed key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from civicchat.clock import Clock, SystemClock
from civicchat.exceptions import MediaError, MediaExpiredError, MediaTooLargeError
from civicchat.storage.base import BlobStore, MediaRef, MediaSource
from civicchat.storage.workers import _Loop, backoff, worker_name

if TYPE_CHECKING:
    from civicchat.storage.sql import SqlStore

__all__ = [
    "DEFAULT_MEDIA_TYPES",
    "LocalBlobStore",
    "MediaDownloader",
    "SweepableBlobStore",
    "media_blob_key",
]

_log = logging.getLogger("civicchat.storage")

DEFAULT_MEDIA_TYPES: tuple[str, ...] = (
    "image/",
    "video/",
    "audio/",
    "application/pdf",
    "text/plain",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
)


def media_blob_key(channel: str, account: str, sha256_hex: str) -> str:
    """Where a media's bytes live: content-addressed, per channel and account.

    The one key scheme of the media worker and of the web chat's uploads (the page's photo is
    stored under it first, so the worker finds it there and does not write it again).

    >>> media_blob_key("webchat", "mataro-web", "ab" + "0" * 62)
    'webchat/mataro-web/ab/ab00000000000000000000000000000000000000000000000000000000000000'
    """
    return f"{channel}/{account}/{sha256_hex[:2]}/{sha256_hex}"


@runtime_checkable
class SweepableBlobStore(BlobStore, Protocol):
    """A blob store that can list its old blobs, so that orphans can be swept
    (:meth:`civicchat.storage.privacy.Privacy.sweep_orphans`)."""

    async def stale_keys(self, account: str, *, before: datetime) -> list[str]:
        """The keys of ``account``'s blobs (every channel) last written before ``before``."""
        ...


class LocalBlobStore:
    """Blobs as files under ``root`` (written atomically: a temporary file, then a rename).

    Implements :class:`SweepableBlobStore`: a file's modification time is when it was last
    written (a web chat upload of bytes already there writes them again).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid blob key {key!r}")
        return self.root.joinpath(*parts)

    async def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Store ``data`` under ``key`` (the content type is not kept by this store)."""
        path = self._path(key)
        await asyncio.to_thread(self._write, path, data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise KeyError(key) from None

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(path.unlink, missing_ok=True)

    async def exists(self, key: str) -> bool:
        path = self._path(key)
        return await asyncio.to_thread(path.is_file)

    async def stale_keys(self, account: str, *, before: datetime) -> list[str]:
        """Keys under ``<channel>/<account>/`` of files last written before ``before``
        (aware), left-over temporary files of an interrupted write included."""
        if not account or "/" in account or account in (".", ".."):
            raise ValueError(f"invalid account {account!r}")
        return await asyncio.to_thread(self._stale, account, before.timestamp())

    def _stale(self, account: str, before: float) -> list[str]:
        found: list[str] = []
        if not self.root.is_dir():
            return found
        for channel in sorted(self.root.iterdir()):
            base = channel / account
            if not channel.is_dir() or not base.is_dir():
                continue
            for path in sorted(base.rglob("*")):
                try:
                    stat = path.lstat()
                except FileNotFoundError:
                    continue  # deleted meanwhile
                if path.is_file() and not path.is_symlink() and stat.st_mtime < before:
                    found.append(path.relative_to(self.root).as_posix())
        return found


class MediaDownloader(_Loop):
    """Downloads pending media through ``sources[channel]`` into ``blobs``.

    Media over ``max_bytes``, of a type not starting with one of ``allowed_types``, or whose id
    expired fails for good; other errors are retried with backoff up to ``max_attempts``.
    """

    def __init__(
        self,
        store: SqlStore,
        sources: Mapping[str, MediaSource],
        blobs: BlobStore,
        clock: Clock | None = None,
        *,
        max_bytes: int = 16 * 1024 * 1024,
        allowed_types: Sequence[str] = DEFAULT_MEDIA_TYPES,
        max_attempts: int = 5,
        batch_size: int = 4,
        lease_seconds: float = 300.0,
        idle_seconds: float = 1.0,
        worker_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(idle_seconds)
        self.store = store
        self.sources = sources
        self.blobs = blobs
        self.clock: Clock = clock or store.clock or SystemClock()
        self.max_bytes = max_bytes
        self.allowed_types = tuple(allowed_types)
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.worker_id = worker_id or worker_name("media")
        self._rng = rng or random.Random()

    async def run_once(self) -> bool:
        """Download one batch; False when nothing was due."""
        async with self.store.transaction() as tx:
            refs = await tx.media.claim_media(
                self.worker_id, limit=self.batch_size, lease_seconds=self.lease_seconds
            )
        for ref in refs:
            await self._download(ref)
        return bool(refs)

    async def _download(self, ref: MediaRef) -> None:
        source = self.sources.get(ref.channel)
        try:
            if source is None:
                raise MediaError(f"no media source for channel {ref.channel}")
            download = await source.fetch_media(ref.account, ref.media_id, max_bytes=self.max_bytes)
            mime = (download.mime_type or ref.mime_type or "").split(";")[0].strip().lower()
            if not mime.startswith(self.allowed_types):
                raise _Refused(f"media type {mime or 'unknown'} is not accepted")
            data = await download.read()
            if len(data) > self.max_bytes:
                raise MediaTooLargeError(f"media is larger than {self.max_bytes} bytes")
        except (_Refused, MediaTooLargeError, MediaExpiredError) as exc:
            await self._failed(ref, exc, retry=False)
            return
        except Exception as exc:
            await self._failed(ref, exc, retry=ref.attempts < self.max_attempts)
            return
        digest = hashlib.sha256(data).hexdigest()
        key = media_blob_key(ref.channel, ref.account, digest)
        async with self.store.transaction() as tx:
            # Identical files share their blob: while this holds the key, retention or an
            # erasure cannot delete the bytes found here before this row names them.
            await tx.media.hold_blob(key)
            # Content-addressed: bytes already there (a web chat upload, the same photo sent
            # again) are these bytes; writing them again would only cost an fsync.
            if not await self.blobs.exists(key):
                await self.blobs.put(key, data, content_type=mime)
            await tx.media.media_stored(
                ref.id, blob_key=key, size=len(data), sha256=digest, mime_type=mime
            )

    async def _failed(self, ref: MediaRef, exc: Exception, *, retry: bool) -> None:
        retry_at = None
        if retry:
            retry_at = self.clock.now() + timedelta(
                seconds=backoff(ref.attempts, base=5.0, rng=self._rng)
            )
        async with self.store.transaction() as tx:
            await tx.media.media_failed(ref.id, f"{type(exc).__name__}: {exc}", retry_at=retry_at)
        _log.warning(
            "media %d: %s (%s)", ref.id, type(exc).__name__, "retry" if retry else "given up"
        )


class _Refused(MediaError):
    """A media type we do not accept."""
