"""The report flow inside the bot: :class:`CaseChat`, the hook ``civicchat.bot.Bot`` calls first.

The bot's handler runs in the inbox processor's transaction; the hook runs the
:class:`~civicchat.cases.flow.CaseFlow` on a :class:`~civicchat.cases.sql.SqlCaseStore` bound to
that same transaction, so the case created by the citizen's "sí" is committed (or not) together
with the message that confirmed it, and a retried event cannot create it twice. The flow's state
lives in the conversation's ``data`` under ``case_flow``::

    chat = CaseChat(load_cases_config("examples/mataro/cases.yaml"), clock=SystemClock())
    bot = Bot(accounts, clock=clock, cases=chat)

The flow only runs while the bot answers the conversation (state ``bot`` or ``closed``): a photo
sent to an operator in a live conversation goes to the operator.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, MutableMapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from civicchat.cases.base import Geocoder, NoGeocoder
from civicchat.cases.config import CasesConfig
from civicchat.cases.flow import FLOW_DATA_KEY, CaseFlow, FlowState, FlowStep
from civicchat.cases.sql import SqlCaseStore
from civicchat.clock import Clock
from civicchat.keywords.language import detect_language
from civicchat.messages import InboundMessage, Text

__all__ = ["CaseChat"]

logger = logging.getLogger("civicchat.cases")


class CaseChat:
    """Runs the case flow for the bot's accounts (``accounts``: None means every account)."""

    def __init__(
        self,
        config: CasesConfig,
        *,
        clock: Clock,
        geocoder: Geocoder | None = None,
        accounts: Collection[str] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.geocoder: Geocoder = geocoder or NoGeocoder()
        self.accounts = None if accounts is None else frozenset(accounts)

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
    ) -> FlowStep:
        """Feed ``message`` to the flow; ``data`` (the conversation's) gets the new flow state.

        ``language`` is the conversation's language (None when unknown); a text message's own
        language decides when a report starts. ``handled=False`` in the result: the message was
        not for the flow (its ``contents`` still go first: an "expired" notice).
        """
        state = FlowState.load(data.get(FLOW_DATA_KEY)) if FLOW_DATA_KEY in data else None
        if state is None and isinstance(message.content, Text):
            language = detect_language(
                message.content.body, previous=language, default=default_language
            )
        flow = CaseFlow(
            self.config, SqlCaseStore.in_transaction(connection), self.geocoder, self.clock
        )
        step = await flow.handle(state, message, language or default_language)
        if step.state is None:
            data.pop(FLOW_DATA_KEY, None)
        else:
            data[FLOW_DATA_KEY] = step.state.to_data()
        if step.case is not None:
            logger.info(
                "case %s created on %s/%s", step.case.reference, message.channel, message.account
            )
        return step
