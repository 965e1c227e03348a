"""The answer to "estat MTR-2026-000123" / "estado ...": a case's status, in the asker's language.

The language is the query word's ("estat" Catalan, "estado" Spanish). Anyone who knows a
reference learns its kind, category and status; the last note an operator wrote for the citizen
only goes back to the channel and sender who reported the case, since references are guessable::

    contents = await status_answer(text, message, config=config, store=store, now=now)
    if contents is not None:
        send(contents)   # else: the text was no status query
"""

from __future__ import annotations

import re
from datetime import datetime

from civicchat.cases._text import fold
from civicchat.cases.base import CaseStore
from civicchat.cases.config import CasesConfig
from civicchat.cases.errors import CaseReferenceError
from civicchat.cases.models import CaseReference
from civicchat.cases.texts import say, status_label
from civicchat.messages import InboundMessage, OutboundContent, Text

__all__ = ["status_answer"]

_STATUS_WORDS = {"estat": "ca", "estado": "es"}
_REFERENCE_IN_TEXT = re.compile(r"\b([A-Za-z]{2,6}-\d{4}-\d{1,9})\b")
_MAX_QUERY_WORDS = 5


async def status_answer(
    text: str,
    message: InboundMessage,
    *,
    config: CasesConfig,
    store: CaseStore,
    now: datetime,
) -> tuple[OutboundContent, ...] | None:
    """The reply to a status query in ``text`` (sent as ``message``), None when it is none.

    A query with no reference or a malformed one gets an example built from the configured
    prefix and ``now``'s year; an unknown reference is said to be unknown.
    """
    tokens = fold(text).split()
    if not tokens or tokens[0] not in _STATUS_WORDS or len(tokens) > _MAX_QUERY_WORDS:
        return None
    lang = _STATUS_WORDS[tokens[0]]
    found = _REFERENCE_IN_TEXT.search(text)
    example = f"{config.reference_prefix}-{now.year}-000123"
    if found is None:
        return (Text(body=say("status_bad_reference", lang, example=example)),)
    try:
        reference = str(CaseReference.parse(found.group(1)))
    except CaseReferenceError:
        return (Text(body=say("status_bad_reference", lang, example=example)),)
    case = await store.get(reference)
    if case is None:
        return (Text(body=say("status_unknown", lang, reference=reference)),)
    category = config.category(case.category)
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
