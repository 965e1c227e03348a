"""The guided report flow: a pure state machine from a citizen's messages to a case.

The flow asks, in Catalan or Spanish, for a category, a description, an optional photo or video,
the location and a confirmation, then creates the case and confirms its reference. It starts on
a keyword ("incidència", "queixa", "suggeriment", "incidencia", "queja", "sugerencia", typos and
missing accents tolerated) or on a photo or location sent out of the blue. "cancel·lar" /
"cancelar" ends it at any step (the first question, every question asked again and the greeting
after a pause say so); "estat MTR-2026-000123" / "estado ..." answers a case's status. At the
category question, a message that the caller's ``other_request`` recognises (another keyword,
such as "el tiempo") leaves the flow with a short notice and goes on to the keyword engine.

It does no I/O of its own besides the injected store and geocoder, and keeps everything it needs
in a :class:`FlowState` that the caller stores as JSON between messages (for example in the
conversation's ``data`` column)::

    step = await flow.handle(state, message, "ca")
    if step.handled:
        save(step.state.to_json() if step.state else None)
        send(step.contents)   # in order
    else:
        ...                   # not for the flow: let the keyword engine answer (send step.contents first)
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

from civicchat.cases._text import fold, fuzzy_in
from civicchat.cases.base import CaseStore, Geocoder
from civicchat.cases.config import CaseCategory, CasesConfig
from civicchat.cases.errors import CaseReferenceError
from civicchat.cases.models import Case, CaseKind, CaseLocation, CaseReference, MediaRef, NewCase
from civicchat.cases.texts import say, status_label, supported_language
from civicchat.clock import Clock
from civicchat.keywords.matcher import singular_forms, typo_tolerance
from civicchat.keywords.normalize import content_tokens
from civicchat.messages import (
    Buttons,
    InboundMessage,
    InteractiveReply,
    ListMenu,
    ListRow,
    ListSection,
    Location,
    LocationRequest,
    Media,
    MediaKind,
    OutboundContent,
    ReplyButton,
    Text,
)

__all__ = ["FLOW_DATA_KEY", "CaseFlow", "FlowStage", "FlowState", "FlowStep", "start_kind"]

#: The key under which a conversation's ``data`` keeps the flow state.
FLOW_DATA_KEY = "case_flow"

logger = logging.getLogger("civicchat.cases")

_TRIGGERS: dict[str, CaseKind] = {
    "incidencia": CaseKind.INCIDENT,
    "incidencies": CaseKind.INCIDENT,
    "incidencias": CaseKind.INCIDENT,
    "queixa": CaseKind.COMPLAINT,
    "queixes": CaseKind.COMPLAINT,
    "queja": CaseKind.COMPLAINT,
    "quejas": CaseKind.COMPLAINT,
    "suggeriment": CaseKind.SUGGESTION,
    "suggeriments": CaseKind.SUGGESTION,
    "sugerencia": CaseKind.SUGGESTION,
    "sugerencias": CaseKind.SUGGESTION,
}
_CANCEL = ("cancellar", "cancella", "cancelar", "cancela", "cancel", "anullar", "anular")
_YES = (
    "si",
    "s",
    "yes",
    "ok",
    "acord",
    "dacord",
    "vale",
    "correcte",
    "correcto",
    "envia",
    "enviar",
)
_NO = ("no", "n", "no gracies", "no gracias")
_SKIP_MEDIA = (
    "no",
    "n",
    "cap",
    "ninguna",
    "ninguno",
    "no tinc",
    "no tengo",
    "sense foto",
    "sin foto",
)
_UNKNOWN_PLACE = ("no ho se", "no lo se", "no se", "nose", "ni idea", "no")
_STATUS_WORDS = {"estat": "ca", "estado": "es"}
_REFERENCE_IN_TEXT = re.compile(r"\b([A-Za-z]{2,6}-\d{4}-\d{1,9})\b")
_MAX_WORDS_TO_START = 6
_BUTTON_TITLE_MAX = 20
_ROW_TITLE_MAX = 24
_MAX_LIST_ROWS = 10
# A category answer by its words ("soroll" for "Sorolls i civisme") has at most this many
# other words, like a keyword request ("hi ha soroll al carrer"); more is a description.
_MAX_OTHER_CATEGORY_WORDS = 2

_CATEGORY_PREFIX = "case:cat:"
_YES_ID = "case:yes"
_NO_ID = "case:no"
_SKIP_ID = "case:skip"


class FlowStage(enum.StrEnum):
    """The question the flow is waiting an answer to."""

    CATEGORY = "category"
    DESCRIPTION = "description"
    MEDIA = "media"
    LOCATION = "location"
    CONFIRM_OUTSIDE = "confirm_outside"
    CONFIRM = "confirm"


class FlowState(BaseModel):
    """Where one citizen's report stands between two messages. Serialisable to JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    stage: FlowStage
    kind: CaseKind = CaseKind.INCIDENT
    language: str = "ca"
    started_at: AwareDatetime
    updated_at: AwareDatetime
    category: str | None = None
    description: str | None = None
    media: tuple[MediaRef, ...] = ()
    media_done: bool = False
    location: CaseLocation | None = None
    location_done: bool = False
    outside_confirmed: bool = False

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> FlowState:
        return cls.model_validate_json(data)

    def to_data(self) -> dict[str, Any]:
        """A JSON-ready dict, for a conversation's ``data`` column (under :data:`FLOW_DATA_KEY`)."""
        return self.model_dump(mode="json")

    @classmethod
    def load(cls, data: Mapping[str, Any] | str | bytes | None) -> FlowState | None:
        """Read a stored state back; None (and a warning) when it is missing or unreadable.

        A state written by an older, incompatible civicchat is dropped rather than crashing the
        conversation: the citizen simply starts again.
        """
        if data is None:
            return None
        try:
            if isinstance(data, str | bytes):
                return cls.model_validate_json(data)
            return cls.model_validate(data)
        except ValidationError as exc:
            logger.warning("dropping an unreadable case flow state (%d errors)", exc.error_count())
            return None


@dataclass(frozen=True, slots=True)
class FlowStep:
    """What one message did to the flow.

    ``state`` is the state to keep (None when there is no flow any more), ``contents`` go to the
    citizen in order, ``case`` is the case just created. ``handled`` is False when the message
    was not for the flow (the caller lets the keyword engine answer it, after ``contents``).
    """

    state: FlowState | None
    contents: tuple[OutboundContent, ...] = ()
    case: Case | None = None
    handled: bool = True


@dataclass(frozen=True, slots=True)
class _Outcome:
    state: FlowState | None
    contents: tuple[OutboundContent, ...]
    case: Case | None = None
    accepted: bool = True


def start_kind(text: str) -> CaseKind | None:
    """The kind of report a short message asks to start, or None (typos and accents tolerated)."""
    tokens = fold(text).split()
    if not tokens or len(tokens) > _MAX_WORDS_TO_START:
        return None
    for token in tokens:
        for trigger, kind in _TRIGGERS.items():
            if fuzzy_in(token, (trigger,)):
                return kind
    return None


def _is(text: str, vocabulary: tuple[str, ...]) -> bool:
    folded = fold(text)
    return bool(folded) and fuzzy_in(folded, vocabulary)


def _text_of(message: InboundMessage) -> str | None:
    content = message.content
    if isinstance(content, Text):
        return content.body
    if isinstance(content, InteractiveReply):
        return content.title
    return None


def _reply_id(message: InboundMessage) -> str | None:
    content = message.content
    return content.reply_id if isinstance(content, InteractiveReply) else None


def _is_yes(message: InboundMessage) -> bool:
    if _reply_id(message) is not None:
        return _reply_id(message) == _YES_ID
    text = _text_of(message)
    # "1" is the first option where a channel without buttons shows them as a numbered list.
    return text is not None and (fold(text) == "1" or _is(text, _YES))


def _is_no(message: InboundMessage) -> bool:
    if _reply_id(message) is not None:
        return _reply_id(message) == _NO_ID
    text = _text_of(message)
    return text is not None and (fold(text) == "2" or _is(text, _NO))


def _visual_media(message: InboundMessage) -> Media | None:
    content = message.content
    if isinstance(content, Media) and content.media_kind in (MediaKind.IMAGE, MediaKind.VIDEO):
        return content
    return None


def _media_ref(message: InboundMessage, media: Media) -> MediaRef:
    ref = media.media_id or media.link or ""
    return MediaRef(
        media_kind=media.media_kind, ref=ref, channel=message.channel, mime_type=media.mime_type
    )


def _same_word(token: str, word: str) -> bool:
    """``token`` (the citizen's) is ``word`` (a label's), in the singular or plural or with a
    typo the keyword engine would forgive for a word of that length."""
    if token == word or word in singular_forms(token) or token in singular_forms(word):
        return True
    tolerance = typo_tolerance(len(word))
    return tolerance > 0 and OSA.distance(token, word, score_cutoff=tolerance) <= tolerance


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _with_cancel_hint(
    contents: tuple[OutboundContent, ...], language: str
) -> tuple[OutboundContent, ...]:
    """``contents`` with "write cancel·lar to stop" added to the first one's text."""
    if not contents:
        return contents
    first, rest = contents[0], contents[1:]
    if not isinstance(first, Text | Buttons | ListMenu | LocationRequest):
        return contents
    hint = say("cancel_hint", language)
    return (first.model_copy(update={"body": f"{first.body}\n\n{hint}"}), *rest)


class CaseFlow:
    """Runs the guided report flow for one municipality.

    ``config`` gives the categories, boundary and timings; ``store`` creates the case and answers
    status queries; ``geocoder`` turns typed addresses into points (``NoGeocoder`` keeps them as
    text); ``clock`` gives "now" (resume and expiry are measured from the state's last update).
    """

    def __init__(
        self, config: CasesConfig, store: CaseStore, geocoder: Geocoder, clock: Clock
    ) -> None:
        self._config = config
        self._store = store
        self._geocoder = geocoder
        self._clock = clock

    # ------------------------------------------------------------------ entry point

    async def handle(
        self,
        state: FlowState | None,
        message: InboundMessage,
        language: str | None,
        *,
        other_request: Callable[[str], bool] | None = None,
    ) -> FlowStep:
        """Feed one inbound message to the flow.

        ``language`` is the conversation's language; it is used when a flow starts, after which
        the flow keeps the language it started in (short answers such as "sí" carry none).

        ``other_request(text)``, when given, says that a text is a question the bot answers
        elsewhere (for example another keyword of the catalog). At the category question such
        a text, when it is no category, leaves the flow: ``handled=False`` with a notice in
        ``contents``, so the caller answers the question itself. Without it, or for any other
        text, the category is asked again.
        """
        now = self._clock.now()
        text = _text_of(message)

        if state is not None and now - state.updated_at > self._config.expiry:
            logger.info("case flow expired after %s", now - state.updated_at)
            notice = Text(body=say("expired", state.language, kind=state.kind))
            fresh = await self.handle(None, message, language, other_request=other_request)
            return FlowStep(fresh.state, (notice, *fresh.contents), fresh.case, fresh.handled)

        if text is not None:
            status = await self._status_answer(text, message)
            if status is not None:
                if state is None:
                    return FlowStep(None, status)
                return FlowStep(state, (*status, *self._question(state)))

        if state is None:
            return await self._start(message, supported_language(language), now)

        if text is not None and _is(text, _CANCEL):
            logger.info("case flow cancelled at %s", state.stage)
            return FlowStep(None, (Text(body=say("cancelled", state.language, kind=state.kind)),))

        if (
            state.stage is FlowStage.CATEGORY
            and text is not None
            and other_request is not None
            and self._pick_category(message) is None
            and start_kind(text) is None
            and other_request(text)
        ):
            logger.info("case flow left at %s for another question", state.stage)
            return FlowStep(
                None, (Text(body=say("left", state.language, kind=state.kind)),), handled=False
            )

        resumed = now - state.updated_at >= self._config.resume_after
        outcome = await self._answer(state, message, now)
        if not resumed:
            return FlowStep(outcome.state, outcome.contents, outcome.case)
        hint = say("cancel_hint", state.language)
        greeting = Text(body=f"{say('resume', state.language, kind=state.kind)} {hint}")
        if outcome.accepted:
            return FlowStep(outcome.state, (greeting, *outcome.contents), outcome.case)
        # After hours away, an answer that does not fit is no mistake: just ask again, kindly.
        kept = outcome.state or state
        return FlowStep(
            kept.model_copy(update={"updated_at": now}), (greeting, *self._question(kept))
        )

    # ------------------------------------------------------------------ starting

    async def _start(self, message: InboundMessage, language: str, now: datetime) -> FlowStep:
        state = FlowState(
            stage=FlowStage.CATEGORY, language=language, started_at=now, updated_at=now
        )
        text = _text_of(message)
        media = _visual_media(message)
        if text is not None:
            kind = start_kind(text)
            if kind is None:
                return FlowStep(None, handled=False)
            state = state.model_copy(update={"kind": kind})
        elif media is not None:
            caption = (media.caption or "").strip()
            state = state.model_copy(
                update={
                    "media": (_media_ref(message, media),),
                    "media_done": True,
                    "description": caption[: self._config.description_max_chars]
                    if len(fold(caption)) >= 3
                    else None,
                }
            )
        elif isinstance(message.content, Location):
            location = await self._from_point(message.content)
            state = state.model_copy(update={"location": location, "location_done": True})
        else:
            return FlowStep(None, handled=False)
        logger.info("case flow started (%s, %s)", state.kind, message.channel)
        state = self._advance(state, now)
        return FlowStep(state, _with_cancel_hint(self._question(state), state.language))

    # ------------------------------------------------------------------ answers

    async def _answer(self, state: FlowState, message: InboundMessage, now: datetime) -> _Outcome:
        stage = state.stage
        if stage is FlowStage.CATEGORY:
            return await self._on_category(state, message, now)
        if stage is FlowStage.DESCRIPTION:
            return await self._on_description(state, message, now)
        if stage is FlowStage.MEDIA:
            return await self._on_media(state, message, now)
        if stage is FlowStage.LOCATION:
            return await self._on_location(state, message, now)
        if stage is FlowStage.CONFIRM_OUTSIDE:
            return self._on_outside(state, message, now)
        return await self._on_confirm(state, message, now)

    def _accept(self, state: FlowState, now: datetime, **update: object) -> _Outcome:
        moved = self._advance(state.model_copy(update=update), now)
        return _Outcome(moved, self._question(moved))

    def _reject(self, state: FlowState, now: datetime, **update: object) -> _Outcome:
        kept = state.model_copy(update={**update, "updated_at": now})
        question = _with_cancel_hint(self._question(kept, again=True), kept.language)
        return _Outcome(kept, question, accepted=False)

    async def _absorb(self, state: FlowState, message: InboundMessage) -> dict[str, object]:
        """A photo or a location sent before it was asked for is kept for its own step."""
        media = _visual_media(message)
        if media is not None and not state.media:
            return {"media": (_media_ref(message, media),), "media_done": True}
        if isinstance(message.content, Location) and not state.location_done:
            return {"location": await self._from_point(message.content), "location_done": True}
        return {}

    async def _on_category(
        self, state: FlowState, message: InboundMessage, now: datetime
    ) -> _Outcome:
        category = self._pick_category(message)
        text = _text_of(message)
        kind = None if category is not None or text is None else start_kind(text)
        if kind is not None:
            # "queixa" while the category of an incident is asked: the citizen meant a complaint.
            moved = state.model_copy(update={"kind": kind, "updated_at": now})
            return _Outcome(moved, _with_cancel_hint(self._question(moved), moved.language))
        if category is None:
            return self._reject(state, now, **await self._absorb(state, message))
        return self._accept(state, now, category=category.id)

    def _pick_category(self, message: InboundMessage) -> CaseCategory | None:
        categories = self._config.categories
        reply = _reply_id(message)
        if reply is not None and reply.startswith(_CATEGORY_PREFIX):
            return self._config.category(reply.removeprefix(_CATEGORY_PREFIX))
        text = _text_of(message)
        if text is None:
            return None
        folded = fold(text)
        if folded.isdigit():
            index = int(folded) - 1
            return categories[index] if 0 <= index < len(categories) else None
        if len(folded) < 3:
            return None
        scored: list[tuple[float, CaseCategory]] = []
        for category in categories:
            names = [fold(label) for label in category.labels.values()] + [fold(category.id)]
            best = max(
                max(fuzz.ratio(folded, name), fuzz.token_set_ratio(folded, name)) for name in names
            )
            scored.append((best, category))
        scored.sort(key=lambda pair: pair[0], reverse=True)
        if scored[0][0] < 85 or (len(scored) > 1 and scored[1][0] == scored[0][0]):
            return self._category_by_words(folded)
        return scored[0][1]

    def _category_by_words(self, folded: str) -> CaseCategory | None:
        """The one category whose label words the answer uses, as the keyword engine matches:
        singular or plural ("soroll", "sorolls"), small typos ("sorols"), stop words aside."""
        tokens = [t for t in content_tokens(folded) if len(t) >= 3]
        if not tokens:
            return None
        best: list[tuple[int, CaseCategory]] = []
        for category in self._config.categories:
            words = {
                word
                for label in (*category.labels.values(), category.id)
                for word in content_tokens(fold(label))
                if len(word) >= 3
            }
            hits = sum(any(_same_word(token, word) for word in words) for token in tokens)
            if hits:
                best.append((hits, category))
        best.sort(key=lambda pair: pair[0], reverse=True)
        if not best or (len(best) > 1 and best[1][0] == best[0][0]):
            return None
        hits, category = best[0]
        return category if len(tokens) - hits <= _MAX_OTHER_CATEGORY_WORDS else None

    async def _on_description(
        self, state: FlowState, message: InboundMessage, now: datetime
    ) -> _Outcome:
        content = message.content
        media = _visual_media(message)
        if media is not None:
            caption = (media.caption or "").strip()
            update: dict[str, object] = {}
            if not state.media:
                update = {"media": (_media_ref(message, media),), "media_done": True}
            if len(fold(caption)) >= 3:
                limit = self._config.description_max_chars
                return self._accept(state, now, description=caption[:limit], **update)
            return self._reject(state, now, **update)
        if isinstance(content, Text) and len(fold(content.body)) >= 3:
            limit = self._config.description_max_chars
            return self._accept(state, now, description=content.body.strip()[:limit])
        return self._reject(state, now, **await self._absorb(state, message))

    async def _on_media(self, state: FlowState, message: InboundMessage, now: datetime) -> _Outcome:
        media = _visual_media(message)
        if media is not None:
            return self._accept(
                state, now, media=(*state.media, _media_ref(message, media)), media_done=True
            )
        if _reply_id(message) == _SKIP_ID:
            return self._accept(state, now, media_done=True)
        text = _text_of(message)
        if text is not None and (fold(text) == "1" or _is(text, _SKIP_MEDIA)):
            return self._accept(state, now, media_done=True)
        if isinstance(message.content, Location):
            location = await self._from_point(message.content)
            return self._accept(state, now, media_done=True, location=location, location_done=True)
        return self._reject(state, now)

    async def _on_location(
        self, state: FlowState, message: InboundMessage, now: datetime
    ) -> _Outcome:
        content = message.content
        if isinstance(content, Location):
            location = await self._from_point(content)
            return self._accept(
                state, now, location=location, location_done=True, outside_confirmed=False
            )
        text = _text_of(message)
        if text is not None and _is(text, _UNKNOWN_PLACE):
            return self._accept(state, now, location=None, location_done=True)
        if isinstance(content, Text) and len(fold(content.body)) >= 3:
            location = await self._from_address(content.body.strip())
            return self._accept(
                state, now, location=location, location_done=True, outside_confirmed=False
            )
        return self._reject(state, now, **await self._absorb(state, message))

    def _on_outside(self, state: FlowState, message: InboundMessage, now: datetime) -> _Outcome:
        if _is_yes(message):
            return self._accept(state, now, outside_confirmed=True)
        if _is_no(message):
            moved = state.model_copy(
                update={
                    "location": None,
                    "location_done": False,
                    "stage": FlowStage.LOCATION,
                    "updated_at": now,
                }
            )
            lang = state.language
            return _Outcome(moved, (LocationRequest(body=say("outside_retry", lang)),))
        return self._reject(state, now)

    async def _on_confirm(
        self, state: FlowState, message: InboundMessage, now: datetime
    ) -> _Outcome:
        lang = state.language
        if _is_no(message):
            return _Outcome(None, (Text(body=say("discarded", lang)),))
        if not _is_yes(message):
            return self._reject(state, now)
        case = await self._create(state, message, now)
        body = say("created", lang, kind=state.kind, reference=case.reference)
        return _Outcome(None, (Text(body=body),), case)

    # ------------------------------------------------------------------ helpers

    async def _create(self, state: FlowState, message: InboundMessage, now: datetime) -> Case:
        category = self._config.category(state.category or "")
        new = NewCase(
            kind=state.kind,
            category=state.category or "",
            description=state.description or "",
            media=state.media,
            location=state.location,
            channel=message.channel,
            account=message.account,
            citizen_id=message.sender.id,
            language=state.language,
            department=None if category is None else category.department,
        )
        case = await self._store.create(
            new,
            prefix=self._config.reference_prefix,
            at=now.astimezone(self._config.zone),
            actor="citizen",
        )
        logger.info("case %s created from %s", case.reference, message.channel)
        return case

    async def _from_point(self, point: Location) -> CaseLocation:
        address = point.address or point.name
        if address is None:
            address = await self._geocoder.reverse(point.latitude, point.longitude)
        return CaseLocation(
            latitude=point.latitude,
            longitude=point.longitude,
            address=address,
            inside_boundary=self._inside(point.latitude, point.longitude),
            source="shared",
        )

    async def _from_address(self, address: str) -> CaseLocation:
        found = await self._geocoder.forward(address)
        if found is None:
            return CaseLocation(address=address, source="typed")
        lat, lon = found
        return CaseLocation(
            latitude=lat,
            longitude=lon,
            address=address,
            inside_boundary=self._inside(lat, lon),
            source="geocoded",
        )

    def _inside(self, lat: float, lon: float) -> bool | None:
        boundary = self._config.boundary
        return None if boundary is None else boundary.contains(lat, lon)

    def _advance(self, state: FlowState, now: datetime) -> FlowState:
        if state.category is None:
            stage = FlowStage.CATEGORY
        elif state.description is None:
            stage = FlowStage.DESCRIPTION
        elif not state.media_done:
            stage = FlowStage.MEDIA
        elif not state.location_done:
            stage = FlowStage.LOCATION
        elif (
            state.location is not None
            and state.location.inside_boundary is False
            and not state.outside_confirmed
        ):
            stage = FlowStage.CONFIRM_OUTSIDE
        else:
            stage = FlowStage.CONFIRM
        return state.model_copy(update={"stage": stage, "updated_at": now})

    def _yes_no(self, body: str, lang: str) -> Buttons:
        return Buttons(
            body=body,
            buttons=(
                ReplyButton(id=_YES_ID, title=say("yes", lang)),
                ReplyButton(id=_NO_ID, title=say("no", lang)),
            ),
        )

    def _question(self, state: FlowState, *, again: bool = False) -> tuple[OutboundContent, ...]:
        lang = state.language
        stage = state.stage
        if stage is FlowStage.CATEGORY:
            if again:
                body = say("ask_category_again", lang)
            else:
                body = say("ask_category", lang, kind=state.kind)
            return (self._category_menu(body, lang),)
        prefix: tuple[OutboundContent, ...] = ()
        if again:
            key = {
                FlowStage.DESCRIPTION: "ask_description_again",
                FlowStage.MEDIA: "ask_media_again",
                FlowStage.LOCATION: "ask_location_again",
                FlowStage.CONFIRM_OUTSIDE: "ask_outside_again",
                FlowStage.CONFIRM: "confirm_again",
            }[stage]
            prefix = (Text(body=say(key, lang)),)
        return (*prefix, self._ask(state))

    def _ask(self, state: FlowState) -> OutboundContent:
        lang = state.language
        stage = state.stage
        if stage is FlowStage.DESCRIPTION:
            return Text(body=say("ask_description", lang))
        if stage is FlowStage.MEDIA:
            skip = ReplyButton(id=_SKIP_ID, title=say("skip_media", lang))
            return Buttons(body=say("ask_media", lang), buttons=(skip,))
        if stage is FlowStage.LOCATION:
            return LocationRequest(body=say("ask_location", lang))
        if stage is FlowStage.CONFIRM_OUTSIDE:
            town = self._config.municipality_name(lang)
            return self._yes_no(say("ask_outside", lang, town=town), lang)
        if stage is FlowStage.CONFIRM:
            return self._yes_no(say("confirm", lang, summary=self._summary(state)), lang)
        return self._category_menu(say("ask_category", lang, kind=state.kind), lang)

    def _category_menu(self, body: str, lang: str) -> Buttons | ListMenu:
        categories = self._config.categories
        if len(categories) <= 3:
            return Buttons(
                body=body,
                buttons=tuple(
                    ReplyButton(
                        id=f"{_CATEGORY_PREFIX}{c.id}",
                        title=_short(c.label(lang), _BUTTON_TITLE_MAX),
                    )
                    for c in categories
                ),
            )
        rows = tuple(
            ListRow(
                id=f"{_CATEGORY_PREFIX}{c.id}",
                title=_short(c.label(lang), _ROW_TITLE_MAX),
                description=c.label(lang) if len(c.label(lang)) > _ROW_TITLE_MAX else None,
            )
            for c in categories[:_MAX_LIST_ROWS]
        )
        return ListMenu(
            body=body, button=say("list_button", lang), sections=(ListSection(rows=rows),)
        )

    def _summary(self, state: FlowState) -> str:
        lang = state.language
        category = self._config.category(state.category or "")
        location = state.location
        if location is None:
            where = say("location_unknown", lang)
        else:
            where = location.address or ""
            if location.map_url:
                where = f"{where} {location.map_url}".strip()
        media = (
            say("media_yes", lang, count=len(state.media)) if state.media else say("media_no", lang)
        )
        return say(
            "summary",
            lang,
            category=category.label(lang) if category else state.category,
            description=_short(state.description or "", 300),
            media=media,
            location=where,
        )

    async def _status_answer(
        self, text: str, message: InboundMessage
    ) -> tuple[OutboundContent, ...] | None:
        tokens = fold(text).split()
        if not tokens or tokens[0] not in _STATUS_WORDS or len(tokens) > 5:
            return None
        lang = _STATUS_WORDS[tokens[0]]
        found = _REFERENCE_IN_TEXT.search(text)
        example = f"{self._config.reference_prefix}-{self._clock.now().year}-000123"
        if found is None:
            return (Text(body=say("status_bad_reference", lang, example=example)),)
        try:
            reference = str(CaseReference.parse(found.group(1)))
        except CaseReferenceError:
            return (Text(body=say("status_bad_reference", lang, example=example)),)
        case = await self._store.get(reference)
        if case is None:
            return (Text(body=say("status_unknown", lang, reference=reference)),)
        category = self._config.category(case.category)
        body = say(
            "status",
            lang,
            kind=case.kind,
            reference=case.reference,
            category=category.label(lang) if category else case.category,
            status=status_label(case.status, lang, case.kind),
        )
        # The last note only goes to the citizen who reported it: references are guessable.
        same_citizen = case.channel == message.channel and case.citizen_id == message.sender.id
        notes = [c.note for c in case.history if c.status is not None and c.note]
        if same_citizen and notes:
            body = f"{body}\n{say('status_note', lang, note=notes[-1])}"
        return (Text(body=body),)
