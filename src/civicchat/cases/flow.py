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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from civicchat.cases._answers import (
    CANCEL,
    NO_ID,
    SKIP_ID,
    SKIP_MEDIA,
    UNKNOWN_PLACE,
    YES_ID,
    is_no,
    is_yes,
    media_ref,
    reply_id,
    says,
    text_of,
    visual_media,
)
from civicchat.cases._text import fold, fuzzy_in, short
from civicchat.cases.base import CaseStore, Geocoder
from civicchat.cases.categories import category_menu, pick_category
from civicchat.cases.config import CaseCategory, CasesConfig
from civicchat.cases.models import Case, CaseKind, CaseLocation, MediaRef, NewCase
from civicchat.cases.status_query import status_answer
from civicchat.cases.texts import say, supported_language
from civicchat.clock import Clock
from civicchat.messages import (
    Buttons,
    InboundMessage,
    ListMenu,
    Location,
    LocationRequest,
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
_MAX_WORDS_TO_START = 6


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


def _holds_something(state: FlowState) -> bool:
    """Whether the report already keeps something the citizen sent: a photo, a place, words."""
    return bool(state.media) or state.location is not None or state.description is not None


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
        text = text_of(message)

        if state is not None and now - state.updated_at > self._config.expiry:
            logger.info("case flow expired after %s", now - state.updated_at)
            notice = Text(body=say("expired", state.language, kind=state.kind))
            fresh = await self.handle(None, message, language, other_request=other_request)
            return FlowStep(fresh.state, (notice, *fresh.contents), fresh.case, fresh.handled)

        if text is not None:
            status = await status_answer(
                text, message, config=self._config, store=self._store, now=now
            )
            if status is not None:
                if state is None:
                    return FlowStep(None, status)
                return FlowStep(state, (*status, *self._question(state)))

        if state is None:
            return await self._start(message, supported_language(language), now)

        if text is not None and says(text, CANCEL):
            logger.info("case flow cancelled at %s", state.stage)
            return FlowStep(None, (Text(body=say("cancelled", state.language, kind=state.kind)),))

        # The answer's category, matched once: the check below and the answer both need it.
        category = (
            pick_category(self._config.categories, message)
            if state.stage is FlowStage.CATEGORY
            else None
        )
        if (
            state.stage is FlowStage.CATEGORY
            and text is not None
            and other_request is not None
            and category is None
            and start_kind(text) is None
            and other_request(text)
        ):
            if _holds_something(state):
                # What the citizen already sent (a photo, a place, words) is not thrown away:
                # the report waits, as after any pause, until it expires.
                logger.info("case flow paused at %s for another question", state.stage)
                paused = state.model_copy(update={"updated_at": now})
                notice = Text(body=say("paused", state.language, kind=state.kind))
                return FlowStep(paused, (notice,), handled=False)
            logger.info("case flow left at %s for another question", state.stage)
            return FlowStep(
                None, (Text(body=say("left", state.language, kind=state.kind)),), handled=False
            )

        resumed = now - state.updated_at >= self._config.resume_after
        outcome = await self._answer(state, message, now, category)
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
        text = text_of(message)
        media = visual_media(message)
        if text is not None:
            kind = start_kind(text)
            if kind is None:
                return FlowStep(None, handled=False)
            state = state.model_copy(update={"kind": kind})
        elif media is not None:
            caption = (media.caption or "").strip()
            state = state.model_copy(
                update={
                    "media": (media_ref(message, media),),
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

    async def _answer(
        self,
        state: FlowState,
        message: InboundMessage,
        now: datetime,
        category: CaseCategory | None,
    ) -> _Outcome:
        stage = state.stage
        if stage is FlowStage.CATEGORY:
            return await self._on_category(state, message, now, category)
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
        media = visual_media(message)
        if media is not None and not state.media:
            return {"media": (media_ref(message, media),), "media_done": True}
        if isinstance(message.content, Location) and not state.location_done:
            return {"location": await self._from_point(message.content), "location_done": True}
        return {}

    async def _on_category(
        self,
        state: FlowState,
        message: InboundMessage,
        now: datetime,
        category: CaseCategory | None,
    ) -> _Outcome:
        """``category``: what the answer names (:func:`pick_category`, matched by the caller)."""
        text = text_of(message)
        kind = None if category is not None or text is None else start_kind(text)
        if kind is not None:
            # "queixa" while the category of an incident is asked: the citizen meant a complaint.
            moved = state.model_copy(update={"kind": kind, "updated_at": now})
            return _Outcome(moved, _with_cancel_hint(self._question(moved), moved.language))
        if category is None and isinstance(message.content, Location):
            # A place before the category: kept (the latest wins) and said so, then the
            # category asked again; it is no misunderstanding.
            location = await self._from_point(message.content)
            moved = state.model_copy(
                update={"location": location, "location_done": True, "updated_at": now}
            )
            body = say("got_location", moved.language)
            return _Outcome(moved, (category_menu(self._config.categories, body, moved.language),))
        if category is None:
            return self._reject(state, now, **await self._absorb(state, message))
        return self._accept(state, now, category=category.id)

    async def _on_description(
        self, state: FlowState, message: InboundMessage, now: datetime
    ) -> _Outcome:
        content = message.content
        media = visual_media(message)
        if media is not None:
            caption = (media.caption or "").strip()
            update: dict[str, object] = {}
            if not state.media:
                update = {"media": (media_ref(message, media),), "media_done": True}
            if len(fold(caption)) >= 3:
                limit = self._config.description_max_chars
                return self._accept(state, now, description=caption[:limit], **update)
            return self._reject(state, now, **update)
        if isinstance(content, Text) and len(fold(content.body)) >= 3:
            limit = self._config.description_max_chars
            return self._accept(state, now, description=content.body.strip()[:limit])
        return self._reject(state, now, **await self._absorb(state, message))

    async def _on_media(self, state: FlowState, message: InboundMessage, now: datetime) -> _Outcome:
        media = visual_media(message)
        if media is not None:
            return self._accept(
                state, now, media=(*state.media, media_ref(message, media)), media_done=True
            )
        if reply_id(message) == SKIP_ID:
            return self._accept(state, now, media_done=True)
        text = text_of(message)
        if text is not None and (fold(text) == "1" or says(text, SKIP_MEDIA)):
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
        text = text_of(message)
        if text is not None and says(text, UNKNOWN_PLACE):
            return self._accept(state, now, location=None, location_done=True)
        if isinstance(content, Text) and len(fold(content.body)) >= 3:
            location = await self._from_address(content.body.strip())
            return self._accept(
                state, now, location=location, location_done=True, outside_confirmed=False
            )
        return self._reject(state, now, **await self._absorb(state, message))

    def _on_outside(self, state: FlowState, message: InboundMessage, now: datetime) -> _Outcome:
        if is_yes(message):
            return self._accept(state, now, outside_confirmed=True)
        if is_no(message):
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
        if is_no(message):
            return _Outcome(None, (Text(body=say("discarded", lang)),))
        if not is_yes(message):
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
                ReplyButton(id=YES_ID, title=say("yes", lang)),
                ReplyButton(id=NO_ID, title=say("no", lang)),
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
            return (category_menu(self._config.categories, body, lang),)
        prefix: tuple[OutboundContent, ...] = ()
        if again and stage is FlowStage.MEDIA:
            # One message: what this step takes and how to skip it, with the skip button.
            skip = ReplyButton(id=SKIP_ID, title=say("skip_media", lang))
            return (Buttons(body=say("ask_media_again", lang), buttons=(skip,)),)
        if again:
            key = {
                FlowStage.DESCRIPTION: "ask_description_again",
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
            skip = ReplyButton(id=SKIP_ID, title=say("skip_media", lang))
            return Buttons(body=say("ask_media", lang), buttons=(skip,))
        if stage is FlowStage.LOCATION:
            return LocationRequest(body=say("ask_location", lang))
        if stage is FlowStage.CONFIRM_OUTSIDE:
            town = self._config.municipality_name(lang)
            return self._yes_no(say("ask_outside", lang, town=town), lang)
        if stage is FlowStage.CONFIRM:
            return self._yes_no(say("confirm", lang, summary=self._summary(state)), lang)
        return category_menu(
            self._config.categories, say("ask_category", lang, kind=state.kind), lang
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
            description=short(state.description or "", 300),
            media=media,
            location=where,
        )
