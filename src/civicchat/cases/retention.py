"""Case retention, separate from chat retention.

Cases are kept longer than chats (the city must be able to answer for a repair), but not for
ever: a case closed (resolved or rejected) more than ``retention_days`` ago is anonymised (the
default: the category, status, dates and a rounded point stay for statistics) or deleted. Open
cases are never touched, however old.

:func:`retention_decisions` is the pure rule; :func:`apply_retention` runs it on a store.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from civicchat.cases.base import CaseUpkeep
from civicchat.cases.models import Case

__all__ = ["RetentionAction", "RetentionDecision", "apply_retention", "retention_decisions"]

logger = logging.getLogger("civicchat.cases")


class RetentionAction(enum.StrEnum):
    """What retention does to a closed case past its period."""

    ANONYMISE = "anonymise"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class RetentionDecision:
    """One case to anonymise or delete."""

    reference: str
    action: RetentionAction


def retention_decisions(
    cases: Iterable[Case],
    *,
    retention_days: int,
    now: datetime,
    mode: RetentionAction | str = RetentionAction.ANONYMISE,
) -> list[RetentionDecision]:
    """Which cases to anonymise or delete now.

    A case qualifies when its status is final and its last change is more than
    ``retention_days`` before ``now``. Already anonymised cases are left alone in anonymise
    mode and deleted in delete mode.
    """
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    if now.tzinfo is None:
        raise ValueError("now must be zone-aware")
    action = RetentionAction(mode)
    cutoff = now - timedelta(days=retention_days)
    decisions = []
    for case in cases:
        if not case.status.is_final or case.updated_at >= cutoff:
            continue
        if action is RetentionAction.ANONYMISE and case.anonymised_at is not None:
            continue
        decisions.append(RetentionDecision(case.reference, action))
    return decisions


async def apply_retention(
    upkeep: CaseUpkeep,
    *,
    retention_days: int,
    now: datetime,
    mode: RetentionAction | str = RetentionAction.ANONYMISE,
    batch: int = 1000,
) -> list[RetentionDecision]:
    """Apply :func:`retention_decisions` to the store's cases, in batches; returns what was done."""
    action = RetentionAction(mode)
    cutoff = now - timedelta(days=retention_days)
    decisions: list[RetentionDecision] = []
    while True:
        candidates = await upkeep.closed_before(
            cutoff, include_anonymised=action is RetentionAction.DELETE, limit=batch
        )
        round_ = retention_decisions(
            candidates, retention_days=retention_days, now=now, mode=action
        )
        for decision in round_:
            if decision.action is RetentionAction.DELETE:
                await upkeep.delete(decision.reference)
            else:
                await upkeep.anonymise(decision.reference, at=now)
        decisions.extend(round_)
        # Every candidate was acted on, so the next batch holds new ones; stop on a short batch.
        if len(candidates) < batch or not round_:
            break
    if decisions:
        logger.info("case retention: %d case(s) %sd", len(decisions), RetentionAction(mode).value)
    return decisions
