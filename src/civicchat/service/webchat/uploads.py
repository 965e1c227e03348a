"""``POST /chat/{account}/upload``: a photo from the citizen's web chat, into the durable inbox.

The page sends the file's bytes as the body (no form encoding) with ``X-Visitor`` (the page's
visitor id), optionally ``X-Message-Id`` (retrying with the same id is the same message),
``X-Language`` and ``X-Caption`` (the text typed with the photo, percent-encoded UTF-8; headers,
unlike a query string, stay out of access logs). The custom headers also make a cross-site
request need a CORS preflight, which this service never grants.

In order: the account, the per-address limit shared with text messages, the headers, the size
(``Content-Length``, then counted *while reading*: never more than the limit in memory), the
real type from the first bytes (JPEG, PNG, WebP; HEIC is refused by name), the bytes into the
blob store (under the media worker's content-addressed key), then the event into the inbox.
Only then ``200 {"id": ...}``. A refusal is JSON ``{"error": code, "message": {"ca", "es"}}``
that the page shows as it is.

If the bytes are stored but the inbox commit fails, the citizen gets 503 and can send again: the
same photo has the same key, so the retry reuses the file (and writes it again, which makes it
new for the sweep below). A photo never sent again leaves a file that no media row names: the
daily retention run sweeps it once it is a day old
(:meth:`~civicchat.storage.privacy.Privacy.sweep_orphans`; docs/operations.md, "Media"). The file
is not deleted here on failure: another citizen's message may name the same bytes.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from civicchat.channels.base import Event
from civicchat.channels.webchat import (
    MAX_CAPTION,
    WebChatChannel,
    is_heif,
    sniff_image,
    valid_visitor_id,
)
from civicchat.exceptions import PayloadError, StorageError
from civicchat.messages import Media
from civicchat.service.metrics import ServiceMetrics
from civicchat.service.webhooks import BodyTooLarge, WindowLimiter, read_body
from civicchat.storage.base import BlobStore
from civicchat.storage.media import media_blob_key

__all__ = ["WebChatUploads", "upload_routes"]

logger = logging.getLogger("civicchat.service")

_CHANNEL = "webchat"


def _size(max_bytes: int) -> str:
    """``10 MB``, ``2,5 MB``, ``512 kB``: the limit as a citizen reads it (decimal comma)."""
    if max_bytes >= 1024 * 1024:
        value = f"{max_bytes / (1024 * 1024):.1f}".removesuffix(".0")
        return value.replace(".", ",") + " MB"
    return f"{round(max_bytes / 1024)} kB"


def _messages(max_bytes: int) -> dict[str, dict[str, str]]:
    size = _size(max_bytes)
    return {
        "no_chat": {
            "ca": "Aquest xat no existeix: revisa l'enllaç.",
            "es": "Este chat no existe: revisa el enlace.",
        },
        "rate_limited": {
            "ca": "Has enviat molts missatges seguits. Espera un minut i torna-ho a provar.",
            "es": "Has enviado muchos mensajes seguidos. Espera un minuto y vuelve a intentarlo.",
        },
        "too_large": {
            "ca": f"La foto és massa gran (com a màxim {size}). Prova-ho amb una de més petita.",
            "es": f"La foto es demasiado grande (como máximo {size}). Prueba con una más pequeña.",
        },
        "empty": {
            "ca": "El fitxer és buit: tria una foto.",
            "es": "El archivo está vacío: elige una foto.",
        },
        "wrong_type": {
            "ca": "Només es poden enviar fotos (JPEG, PNG o WebP).",
            "es": "Solo se pueden enviar fotos (JPEG, PNG o WebP).",
        },
        "heic": {
            "ca": "Les fotos HEIC de l'iPhone no es poden veure aquí. Envia-la en JPEG "
            "(Configuració > Càmera > Formats > Més compatible).",
            "es": "Las fotos HEIC del iPhone no se pueden ver aquí. Envíala en JPEG "
            "(Ajustes > Cámara > Formatos > Más compatible).",
        },
        "caption_too_long": {
            "ca": f"El text de la foto és massa llarg (com a màxim {MAX_CAPTION} caràcters).",
            "es": f"El texto de la foto es demasiado largo (como máximo {MAX_CAPTION} caracteres).",
        },
        "bad_request": {
            "ca": "No s'ha pogut enviar la foto. Torna a carregar la pàgina i prova-ho de nou.",
            "es": "No se ha podido enviar la foto. Vuelve a cargar la página e inténtalo de nuevo.",
        },
        "try_again": {
            "ca": "Ara no s'ha pogut desar la foto. Torna-ho a provar d'aquí a una estona.",
            "es": "Ahora no se ha podido guardar la foto. Vuelve a intentarlo dentro de un rato.",
        },
    }


_STATUS = {
    "no_chat": 404,
    "rate_limited": 429,
    "too_large": 413,
    "empty": 400,
    "wrong_type": 415,
    "heic": 415,
    "caption_too_long": 400,
    "bad_request": 400,
    "try_again": 503,
}


@dataclass(frozen=True)
class WebChatUploads:
    """What the upload route needs.

    ``channels``: the web chat channel of each account; ``blobs``: where the bytes go (the
    channels read them back with ``uploads=`` the same store); ``accept``: commits events to
    the durable inbox and returns once committed (``InboxBatcher.accept``); ``limiter``: the
    per-address limit of the text messages (the same object, so photos and texts count
    together); ``max_bytes``: the largest photo; ``keep(key, data, mime)``: once the message is
    committed, makes sure its bytes are still stored (``SqlStore.keep_blob``: identical photos
    share one blob, and an erasure of another citizen's copy may have deleted it in between).
    """

    channels: Mapping[str, WebChatChannel]
    blobs: BlobStore
    accept: Callable[[Sequence[Event]], Awaitable[None]]
    max_bytes: int = 10 * 1024 * 1024
    limiter: WindowLimiter | None = None
    metrics: ServiceMetrics | None = None
    keep: Callable[[str, bytes, str], Awaitable[None]] | None = None


def _caption(raw: str | None) -> str | None:
    """The ``X-Caption`` header: percent-encoded UTF-8; raises ValueError when it is not."""
    if raw is None:
        return None
    text = urllib.parse.unquote(raw, encoding="utf-8", errors="strict")
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise ValueError("control characters in the caption")
    return text


def upload_routes(ctx: WebChatUploads) -> list[Route]:
    """``POST /chat/{account}/upload`` (see the module docstring)."""
    texts = _messages(ctx.max_bytes)

    def refuse(code: str) -> Response:
        if ctx.metrics is not None:
            ctx.metrics.inbound.labels(_CHANNEL, f"upload_{code}").inc()
        return JSONResponse(
            {"error": code, "message": texts[code]},
            _STATUS[code],
            headers={"Cache-Control": "no-store"},
        )

    async def upload(request: Request) -> Response:
        name: str = request.path_params["account"]
        channel = ctx.channels.get(name)
        if channel is None:
            return refuse("no_chat")
        if ctx.limiter is not None:
            client = request.client.host if request.client else "unknown"
            if not ctx.limiter.allow(client):
                return refuse("rate_limited")
        headers = request.headers
        visitor = headers.get("x-visitor", "")
        client_id = headers.get("x-message-id") or None
        if not valid_visitor_id(visitor):
            return refuse("bad_request")
        try:
            caption = _caption(headers.get("x-caption"))
        except (ValueError, UnicodeDecodeError):
            return refuse("bad_request")
        if caption is not None and len(caption) > MAX_CAPTION:
            return refuse("caption_too_long")
        try:
            data = await read_body(request, ctx.max_bytes)
        except BodyTooLarge:
            return refuse("too_large")
        except ClientDisconnect:
            return refuse("bad_request")
        if not data:
            return refuse("empty")
        head = data[:16]
        mime = sniff_image(head)
        if mime is None:
            return refuse("heic" if is_heif(head) else "wrong_type")
        try:
            # Hashing up to the size limit (10 MB) takes tens of ms: off the event loop.
            event = await asyncio.to_thread(
                channel.upload_message,
                visitor=visitor,
                data=data,
                mime_type=mime,
                client_id=client_id,
                caption=caption,
                language=headers.get("x-language"),
            )
        except PayloadError:
            return refuse("bad_request")
        media = event.content
        if not isinstance(media, Media) or not media.sha256:  # upload_message sets both
            return refuse("try_again")
        # upload_message hashed the bytes already: the key is that digest, not a second hash.
        key = media_blob_key(channel.name, name, media.sha256)
        try:
            await ctx.blobs.put(key, data, content_type=mime)
        except OSError:
            logger.exception("webchat %s: storing an upload failed", name)
            return refuse("try_again")
        try:
            await ctx.accept([event])
        except (StorageError, SQLAlchemyError):
            # Logged for its batch (InboxBatcher). The bytes stay under their content key: the
            # citizen's retry finds them again.
            return refuse("try_again")
        if ctx.keep is not None:
            try:
                await ctx.keep(key, data, mime)
            except (OSError, StorageError, SQLAlchemyError):
                # Accepted all the same: the media worker reports the bytes as missing.
                logger.exception("webchat %s: checking an accepted upload's file failed", name)
        logger.info("webchat %s: photo accepted (%s, %d bytes)", name, mime, len(data))
        return JSONResponse(
            {"id": event.provider_message_id}, headers={"Cache-Control": "no-store"}
        )

    return [Route("/chat/{account}/upload", upload, methods=["POST"])]
