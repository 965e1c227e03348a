"""The report flow inside the bot: :class:`CaseChat`, the hook ``civicchat.bot.Bot`` calls first.

The bot's handler runs in the inbox processor's transaction; the hook runs the
:class:`~civicchat.cases.flow.CaseFlow` on a :class:`~civicchat.cases.sql.SqlCaseStore` bound to
that same transaction, so the case created by the citizen's "sí" is committed (or not) together
with the message that confirmed it, and a retried event cannot create it twice. The flow's state
lives in the conversation's ``data`` under ``case_flow``::

    chat = CaseChat(load_cases_config("examples/mataro/cases.yaml"), clock=SystemClock())
    bot = Bot(accounts, clock=clock, cases=chat)

The bot runs the flow while it answers the conversation (state ``bot`` or ``closed``) and while
the conversation waits in the queue for a person who has not taken it yet (``queued``); a photo
sent while an operator attends the conversation (``assigned``) goes to the operator.
:func:`other_keyword` lets a citizen asked for a category ask something else instead ("el
tiempo", "punto limpio"): the flow steps aside and the keyword engine answers.

When a report ends (sent, cancelled, discarded, left or expired), ``data`` keeps a small note
under ``case_flow_ended`` (when, which kind, which language): a bare "cancel·lar" / "cancelar"
within the flow's expiry after that gets "No hi ha cap incidència en curs." / "No hay ninguna
incidencia en curso." instead of going to routing (a citizen repeating the word, or writing it
after the report was left, is not asking for a person). Later, routing answers it as before.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Collection, MutableMapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from civicchat.cases._answers import CANCEL, says
from civicchat.cases.base import Geocoder, NoGeocoder
from civicchat.cases.config import LANGUAGES, CasesConfig
from civicchat.cases.flow import FLOW_DATA_KEY, CaseFlow, FlowState, FlowStep, start_kind
from civicchat.cases.models import CaseKind
from civicchat.cases.sql import SqlCaseStore
from civicchat.cases.texts import say
from civicchat.clock import Clock
from civicchat.keywords.catalog import Catalog
from civicchat.keywords.engine import KeywordEngine
from civicchat.keywords.language import detect_language
from civicchat.messages import InboundMessage, Text
from civicchat.routing.pipeline import LANGUAGE_CHOICE_CHANNELS, known_language

__all__ = ["ENDED_DATA_KEY", "CaseChat", "other_keyword"]

logger = logging.getLogger("civicchat.cases")

#: The key under which a conversation's ``data`` notes the last report's end.
ENDED_DATA_KEY = "case_flow_ended"


def other_keyword(engine: KeywordEngine) -> Callable[[str], bool]:
    """The flow's ``other_request`` for a catalog: is a text another question the engine answers?

    True when the text asks for a person ("vull parlar amb una persona": routing then hands it
    to one), or when ``engine`` matches it to one keyword (no "did you mean") whose topic is not
    a reporting topic. A reporting topic is one with a keyword that an alias of the flow's own
    trigger words belongs to (Mataró's ``incidents``, where "incidència" lives, and
    ``participation``, where "queixa" lives): "farola" answered while a category is asked is
    still about the report; "el tiempo" or "punto limpio" are not.

    >>> from civicchat.keywords import load_catalog
    >>> asks = other_keyword(KeywordEngine(load_catalog("examples/mataro/catalog.yaml")))
    >>> asks("el tiempo"), asks("punto limpio"), asks("farola"), asks("xyz qwerty")
    (True, True, False, False)
    >>> asks("prefereixo parlar amb una persona")
    True
    """

    def asks_something_else(text: str) -> bool:
        if engine.asks_for_person(text):
            return True
        match = engine.match(text)
        if match is None or match.runner_up is not None:
            return False
        catalog, reporting = _engine_reporting_topics(engine)
        keyword = catalog.keyword(match.keyword_id)
        return keyword is not None and keyword.topic not in reporting

    return asks_something_else


# Worked out once per catalog (some 20 ms for Mataró's), remembered per engine: weakly, so a
# dropped engine takes its entry with it, and with the catalog itself (not its ``id()``, which
# is reused after garbage collection), so a reloaded catalog is worked out again.
_TOPICS: weakref.WeakKeyDictionary[KeywordEngine, tuple[Catalog, frozenset[str]]] = (
    weakref.WeakKeyDictionary()
)


def _engine_reporting_topics(engine: KeywordEngine) -> tuple[Catalog, frozenset[str]]:
    """The catalog in force in ``engine`` and its reporting topics."""
    catalog = engine.catalog
    seen = _TOPICS.get(engine)
    if seen is not None and seen[0] is catalog:
        return seen
    seen = (catalog, _reporting_topics(catalog))
    _TOPICS[engine] = seen
    return seen


def _reporting_topics(catalog: Catalog) -> frozenset[str]:
    return frozenset(
        keyword.topic
        for keyword in catalog.keywords
        if any(
            start_kind(alias) is not None
            for aliases in keyword.aliases.values()
            for alias in aliases
        )
    )


class CaseChat:
    """Runs the case flow for the bot's accounts (``accounts``: None means every account).

    ``language_choice_channels`` are the channels whose ``sender.language_hint`` is the
    citizen's own choice (the web chat's selector), as for
    :class:`~civicchat.routing.Pipeline`: there a report starts in the chosen language.
    """

    def __init__(
        self,
        config: CasesConfig,
        *,
        clock: Clock,
        geocoder: Geocoder | None = None,
        accounts: Collection[str] | None = None,
        language_choice_channels: Collection[str] = LANGUAGE_CHOICE_CHANNELS,
    ) -> None:
        if isinstance(language_choice_channels, str):
            raise TypeError(
                "language_choice_channels is a collection of channel names, e.g. ('webchat',)"
            )
        self.config = config
        self.clock = clock
        self.geocoder: Geocoder = geocoder or NoGeocoder()
        self.accounts = None if accounts is None else frozenset(accounts)
        self.language_choice_channels = frozenset(language_choice_channels)

    def enabled_for(self, account: str) -> bool:
        """Whether citizens of ``account`` can report cases in the chat."""
        return self.accounts is None or account in self.accounts

    async def step(
        self,
        connection: AsyncConnection,
        data: MutableMapping[str, Any],
        message: InboundMessage,
        *,
        language: str | None,
        default_language: str,
        other_request: Callable[[str], bool] | None = None,
    ) -> FlowStep:
        """Feed ``message`` to the flow; ``data`` (the conversation's) gets the new flow state.

        ``language`` is the conversation's language (None when unknown); on a channel of
        ``language_choice_channels`` the citizen's choice replaces it. A text message's own
        language decides when a report starts. ``handled=False`` in the result: the message was
        not for the flow (its ``contents`` still go first: an "expired" or "left" notice).
        ``other_request`` is the flow's (see :meth:`CaseFlow.handle` and :func:`other_keyword`).
        """
        state = FlowState.load(data.get(FLOW_DATA_KEY)) if FLOW_DATA_KEY in data else None
        if state is None:
            nothing = self._nothing_to_cancel(data, message)
            if nothing is not None:
                return nothing
        hint = message.sender.language_hint
        language = known_language(
            message.channel, hint, language, LANGUAGES, self.language_choice_channels
        )
        if state is None and isinstance(message.content, Text):
            language = detect_language(
                message.content.body, previous=language, default=default_language, hint=hint
            )
        flow = CaseFlow(
            self.config, SqlCaseStore.in_transaction(connection), self.geocoder, self.clock
        )
        step = await flow.handle(
            state, message, language or default_language, other_request=other_request
        )
        if step.state is None:
            data.pop(FLOW_DATA_KEY, None)
            if state is not None:
                data[ENDED_DATA_KEY] = {
                    "at": self.clock.now().isoformat(),
                    "kind": state.kind.value,
                    "language": state.language,
                }
        else:
            data[FLOW_DATA_KEY] = step.state.to_data()
            data.pop(ENDED_DATA_KEY, None)
        if step.case is not None:
            logger.info(
                "case %s created on %s/%s", step.case.reference, message.channel, message.account
            )
        return step

    def _nothing_to_cancel(
        self, data: MutableMapping[str, Any], message: InboundMessage
    ) -> FlowStep | None:
        """ "No report in progress" for a bare cancel word soon after a report ended, else None.

        The note of the report's end is dropped once older than the flow's expiry (or unreadable).
        """
        ended = data.get(ENDED_DATA_KEY)
        if ended is None:
            return None
        try:
            at = datetime.fromisoformat(ended["at"])
            kind = CaseKind(ended["kind"])
            language = str(ended["language"])
            recent = self.clock.now() - at <= self.config.expiry
        except (TypeError, KeyError, ValueError):
            recent = False
        if not recent:
            data.pop(ENDED_DATA_KEY, None)
            return None
        if not isinstance(message.content, Text) or not says(message.content.body, CANCEL):
            return None
        logger.info("cancel with no case flow in progress")
        return FlowStep(None, (Text(body=say("nothing_to_cancel", language, kind=kind)),))
