"""The keyword engine: a catalog's matcher, index and replies behind :class:`KeywordResponder`.

::

    >>> from civicchat.keywords import KeywordEngine, parse_catalog
    >>> engine = KeywordEngine(parse_catalog('''
    ... languages: [ca, es]
    ... topics: {transport: {ca: Transport, es: Transporte}}
    ... keywords:
    ...   - id: bus
    ...     topic: transport
    ...     aliases: {ca: [bus, autobús], es: [autobús, autobuses, bus urbano]}
    ...     reply: {ca: "Bus urbà: https://example.org/bus", es: "Bus urbano: https://example.org/bus"}
    ... '''))
    >>> m = engine.match("Horario de los autobuses?")
    >>> (m.keyword_id, m.alias, m.language)
    ('bus', 'autobuses', 'es')
    >>> engine.match("El bus d'aquest matí ha passat ple i no m'hi he pogut pujar, és inacceptable") is None
    True
    >>> engine.match("bus").language, engine.match("bus", language="es").language
    ('ca', 'es')
    >>> engine.answer("transporte").kind.value  # a topic's name: that topic's part of the index
    'index'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from civicchat.clock import Clock, SystemClock
from civicchat.keywords.base import AnswerKind, KeywordAnswer, KeywordMatch
from civicchat.keywords.catalog import Catalog, Keyword
from civicchat.keywords.index import TopicNames, build_index, parse_index_request
from civicchat.keywords.language import decide_language, language_evidence
from civicchat.keywords.matcher import AliasIndex
from civicchat.keywords.normalize import content_tokens, normalize
from civicchat.keywords.replies import TemplateRenderer
from civicchat.keywords.to_person import TO_PERSON_PHRASES, PersonRequests
from civicchat.messages import (
    HEADER_MEDIA_KINDS,
    Buttons,
    Location,
    Media,
    MediaKind,
    OutboundContent,
    ReplyButton,
    Text,
    split_text,
)

__all__ = ["KW_REPLY_PREFIX", "KeywordEngine"]

_log = logging.getLogger("civicchat.keywords")

#: Reply ids of "Volia dir...?" and keyword buttons: ``"kw:<keyword id>"``.
KW_REPLY_PREFIX = "kw:"
#: A runner-up this close to the best score makes the match ambiguous.
AMBIGUITY_MARGIN = 4.0
#: Below this score a candidate is not an answer.
MIN_SCORE = 60.0
_BUTTON_TITLE_MAX = 20  # WhatsApp's limit for a reply button title
_FOOTER_MAX = 60  # WhatsApp's limit for an interactive message's footer
_BUTTON_BODY_MAX = 1024  # WhatsApp's limit for the body of an interactive message
_ALIAS_LANGUAGE_WEIGHT = 0.75  # less than one telling word: "horario del bus" is Spanish


@dataclass(frozen=True, slots=True)
class _State:
    catalog: Catalog
    index: AliasIndex
    renderer: TemplateRenderer
    topics: TopicNames
    person: PersonRequests


def _build_state(catalog: Catalog) -> _State:
    renderer = TemplateRenderer()
    for kw in catalog.keywords:
        for source in kw.reply.values():
            renderer.check(source)  # compiled now, not on a citizen's first message
    person = PersonRequests(TO_PERSON_PHRASES, catalog.to_person, stop_words=catalog.stop_words)
    return _State(catalog, AliasIndex(catalog), renderer, TopicNames(catalog), person)


class KeywordEngine:
    """Answers messages from a :class:`~civicchat.keywords.catalog.Catalog`.

    Implements :class:`~civicchat.keywords.base.KeywordResponder`. ``clock`` gives ``now`` to
    reply templates when the caller's context has none; ``timezone`` is the city's (templates see
    ``now`` in it). :meth:`reload` swaps the catalog atomically: a message being answered sees
    either the old catalog or the new one, never a mix.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        clock: Clock | None = None,
        timezone: str | tzinfo = "Europe/Madrid",
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self._tz: tzinfo = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self._state = _build_state(catalog)

    @property
    def catalog(self) -> Catalog:
        """The catalog in force."""
        return self._state.catalog

    def reload(self, catalog: Catalog) -> None:
        """Put ``catalog`` in force. Its index is built first, then swapped in one assignment.

        Pair it with :func:`~civicchat.keywords.load_catalog`, which raises before anything
        changes when the file is broken: ``engine.reload(load_catalog(path))``.
        """
        state = _build_state(catalog)
        self._state = state
        _log.info("keyword catalog loaded: %d keywords", len(catalog.keywords))

    # ----------------------------------------------------------------- matching

    def match(
        self, text: str, *, language: str | None = None, hint: str | None = None
    ) -> KeywordMatch | None:
        """The keyword ``text`` asks for, or ``None`` when a person should answer: no keyword
        fits, or the message asks for a person (:meth:`asks_for_person`).

        ``language`` is the language already known for the conversation: the citizen's own
        choice (a web chat's selector), else the conversation's last language. It is kept unless
        the message itself shows another language (its letters and words); the matched alias's
        language only decides while no language is known. ``hint`` is the client's language (for
        example Telegram's ``language_code``), which only breaks ties.
        """
        return self._match(self._state, text, language, hint)

    def asks_for_person(self, text: str) -> str | None:
        """The phrase with which ``text`` asks for a person ("parlar amb una persona", "hablar
        con alguien"; the library's and the catalog's ``to_person``), else ``None``.

        :meth:`match` and :meth:`answer` give ``None`` for such a message, whatever keyword it
        also names: "Vull parlar amb una persona sobre el padró" is for a person.
        """
        return self._state.person.find(text)

    def _match(
        self,
        state: _State,
        text: str,
        previous: str | None,
        hint: str | None,
        folded: str | None = None,
    ) -> KeywordMatch | None:
        value: object = text
        if not isinstance(value, str):
            return None
        if folded is None:
            folded = normalize(value)
        if not folded:
            return None
        tokens = folded.split()
        if state.person.find_in(content_tokens(folded, state.catalog.stop_words)) is not None:
            _log.debug("message asks for a person: no keyword")
            return None
        candidates = [c for c in state.index.search_tokens(folded, tokens) if c.score >= MIN_SCORE]
        if not candidates:
            return None
        best = candidates[0]
        runner_up: KeywordMatch | None = None
        lang = self._language(
            state.catalog,
            value,
            tokens,
            best.alias_languages,
            previous,
            hint,
            telling=best.telling_languages,
        )
        if len(candidates) > 1 and candidates[1].score >= best.score - AMBIGUITY_MARGIN:
            second = candidates[1]
            runner_up = KeywordMatch(
                second.keyword_id, second.alias, round(second.score, 1), lang, second.exact
            )
        return KeywordMatch(
            best.keyword_id, best.alias, round(best.score, 1), lang, best.exact, runner_up
        )

    def _language(
        self,
        catalog: Catalog,
        text: str,
        tokens: list[str],
        alias_languages: frozenset[str],
        previous: str | None,
        hint: str | None,
        *,
        telling: frozenset[str] = frozenset(),
    ) -> str:
        if len(catalog.languages) == 1:
            return catalog.default_language
        scores = language_evidence(text, words=tokens)
        # Once the conversation has a language, only an alias with a word of its own language
        # ("busos") weighs: "bus" is listed under ca but Spanish aliases use it too ("horario
        # bus"), and it must not turn a Spanish conversation Catalan.
        weighing = telling if _base(previous) in catalog.languages else alias_languages
        if len(weighing) == 1:
            (alias_lang,) = weighing
            scores[alias_lang] = scores.get(alias_lang, 0.0) + _ALIAS_LANGUAGE_WEIGHT
        return decide_language(
            scores,
            previous=previous,
            hint=hint,
            default=catalog.default_language,
            languages=catalog.languages,
        )

    # ----------------------------------------------------------------- answering

    def answer(
        self,
        text: str,
        *,
        language: str | None = None,
        context: Mapping[str, object] | None = None,
        max_length: int = 4096,
    ) -> KeywordAnswer | None:
        """Answer ``text`` with the keyword index, a keyword's reply or a "Volia dir...?"
        question; ``None`` when a person should answer (no keyword fits, or the message asks for
        a person, see :meth:`asks_for_person`).

        ``context`` may hold ``name``, ``now`` (aware datetime), ``office_hours`` (a string, or
        a mapping per language) and ``language_hint``; other entries reach the templates as is.
        """
        state = self._state
        value: object = text
        if not isinstance(value, str):
            return None
        context = context or {}
        hint = context.get("language_hint")
        hint = hint if isinstance(hint, str) else None
        folded = normalize(value)
        tokens = folded.split()
        if state.person.find_in(content_tokens(folded, state.catalog.stop_words)) is not None:
            return None  # not even a topic's index: the citizen asked for a person
        request = parse_index_request(tokens, state.catalog)
        if request is not None:
            lang = (
                request.language
                if request.language in state.catalog.languages
                else state.catalog.default_language
            )
            pages = build_index(state.catalog, lang, request.topic, max_length)
            return KeywordAnswer(AnswerKind.INDEX, lang, tuple(Text(body=p) for p in pages))
        found = self._match(state, value, language, hint, folded)
        if found is None or not found.exact:
            # "cultura", "Transporte": a topic's name alone is that topic's part of the index.
            # A keyword's own alias ("temps") stays that keyword, and a typo is a keyword's
            # before it is a topic's ("policai" is the police keyword, not the police topic).
            topic = state.topics.find(tokens)
            if topic is not None and (found is None or topic[2]):
                name, name_languages, _ = topic
                lang = self._language(state.catalog, value, tokens, name_languages, language, hint)
                pages = build_index(state.catalog, lang, name, max_length)
                return KeywordAnswer(AnswerKind.INDEX, lang, tuple(Text(body=p) for p in pages))
        if found is None:
            return None
        if found.runner_up is not None:
            return self._clarify(state.catalog, found)
        return self._keyword_answer(state, found, context, max_length)

    def answer_choice(
        self,
        keyword_id: str,
        *,
        language: str,
        context: Mapping[str, object] | None = None,
        max_length: int = 4096,
    ) -> KeywordAnswer | None:
        """Answer the keyword a citizen picked from a button (``"kw:<id>"`` or the bare id)."""
        state = self._state
        if keyword_id.startswith(KW_REPLY_PREFIX):
            keyword_id = keyword_id[len(KW_REPLY_PREFIX) :]
        kw = state.catalog.keyword(keyword_id)
        if kw is None:
            return None
        lang = language if language in state.catalog.languages else state.catalog.default_language
        aliases = kw.aliases.get(lang) or next(a for a in kw.aliases.values() if a)
        found = KeywordMatch(kw.id, aliases[0], 100.0, lang, True)
        return self._keyword_answer(state, found, context or {}, max_length)

    def index(self, language: str, topic: str | None = None, max_length: int = 4096) -> list[str]:
        """The keyword index in ``language`` (one topic when given), split into messages."""
        return build_index(self._state.catalog, language, topic, max_length)

    def render_reply(
        self, keyword_id: str, language: str, context: Mapping[str, object] | None = None
    ) -> str | None:
        """The rendered reply text of a keyword (``None`` for an unknown id)."""
        catalog = self._state.catalog
        kw = catalog.keyword(keyword_id)
        if kw is None:
            return None
        lang = language if language in catalog.languages else catalog.default_language
        return self._render(self._state, kw, lang, context or {})

    # ----------------------------------------------------------------- content

    def _render(self, state: _State, kw: Keyword, lang: str, context: Mapping[str, object]) -> str:
        source = kw.reply.get(lang) or kw.reply.get(state.catalog.default_language, "")
        now = context.get("now")
        if not isinstance(now, datetime) or now.tzinfo is None:
            now = self._clock.now()
        office = context.get("office_hours")
        if isinstance(office, Mapping):
            office = office.get(lang, "")
        name = context.get("name")
        values = {
            **context,
            "name": name if isinstance(name, str) else "",
            "now": now.astimezone(self._tz),
            "office_hours": office if isinstance(office, str) else "",
        }
        return state.renderer.render(source, values, lang).strip()

    def _keyword_answer(
        self,
        state: _State,
        found: KeywordMatch,
        context: Mapping[str, object],
        max_length: int,
    ) -> KeywordAnswer | None:
        catalog = state.catalog
        kw = catalog.keyword(found.keyword_id)
        if kw is None:
            return None
        lang = found.language
        text = self._render(state, kw, lang, context) or kw.label(lang)
        human_hint = catalog.text("human_hint", lang).strip()
        if human_hint:
            text = f"{text}\n\n{human_hint}"
        preview = kw.preview_url if kw.preview_url is not None else ("://" in text)
        buttons = tuple(
            ReplyButton(
                id=f"{KW_REPLY_PREFIX}{b.keyword}",
                title=_short(b.title.get(lang) or _label(catalog, b.keyword, lang)),
            )
            for b in kw.buttons
        )
        location: Location | None = None
        if kw.location is not None:
            loc = kw.location
            location = Location(
                latitude=loc.latitude,
                longitude=loc.longitude,
                name=loc.name.get(lang) or None,
                address=loc.address,
            )
        media: Media | None = None
        if kw.media is not None:
            media = Media(
                media_kind=MediaKind(kw.media.kind),
                link=kw.media.url,
                caption=kw.media.caption.get(lang) or None,
                filename=kw.media.filename,
            )
        contents: list[OutboundContent] = []
        # A header file shows no caption of its own (WhatsApp shows the file name): the caption
        # goes in the footer, or above the text when it is longer than a footer may be.
        body, footer = text, None
        if media is not None and media.caption:
            if len(media.caption) <= _FOOTER_MAX:
                footer = media.caption
            else:
                body = f"{media.caption}\n\n{text}"
        fits = len(body) <= min(_BUTTON_BODY_MAX, max_length)
        if buttons and location is None and fits and (media is None or _can_head(media)):
            # Text, buttons and at most one file as ONE message: one provider call, one bubble.
            head = None if media is None else media.model_copy(update={"caption": None})
            contents.append(Buttons(body=body, buttons=buttons, media=head, footer=footer))
        else:
            contents.extend(Text(body=p, preview_url=preview) for p in split_text(text, max_length))
            if location is not None:
                contents.append(location)
            if media is not None:
                contents.append(media)
            if buttons:
                contents.append(Buttons(body=catalog.text("see_also", lang), buttons=buttons))
        return KeywordAnswer(AnswerKind.KEYWORD, lang, tuple(contents), found)

    def _clarify(self, catalog: Catalog, found: KeywordMatch) -> KeywordAnswer:
        lang = found.language
        options = [found.keyword_id]
        if found.runner_up is not None:
            options.append(found.runner_up.keyword_id)
        buttons = tuple(
            ReplyButton(id=f"{KW_REPLY_PREFIX}{kw_id}", title=_short(_label(catalog, kw_id, lang)))
            for kw_id in options
        )
        body = catalog.text("did_you_mean", lang)
        return KeywordAnswer(
            AnswerKind.CLARIFY, lang, (Buttons(body=body, buttons=buttons),), found
        )


def _base(language: str | None) -> str | None:
    """``"es"`` for ``"es-ES"``; ``None`` for nothing."""
    if not language:
        return None
    return language.replace("_", "-").split("-", 1)[0].strip().lower() or None


def _can_head(media: Media) -> bool:
    """Whether ``media`` can be the header of a message with buttons (audio cannot)."""
    return media.media_kind in HEADER_MEDIA_KINDS


def _label(catalog: Catalog, keyword_id: str, lang: str) -> str:
    kw = catalog.keyword(keyword_id)
    return kw.label(lang) if kw is not None else keyword_id


def _short(title: str) -> str:
    title = title.strip() or "?"
    if len(title) <= _BUTTON_TITLE_MAX:
        return title
    return title[: _BUTTON_TITLE_MAX - 1].rstrip() + "…"
