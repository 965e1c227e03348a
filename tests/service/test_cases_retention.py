"""Case data has its own retention (``cases.retention_days``), applied by a service worker."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from cases_service_helpers import CASES_EXTRA, FIXED_CLOCK, case_service

from civicchat.cases.models import CaseLocation, CaseStatus, NewCase
from civicchat.service.cases_worker import CaseRetentionWorker


def _draft(citizen: str) -> NewCase:
    return NewCase(
        category="neteja",
        description="Brutícia a la plaça",
        location=CaseLocation(latitude=41.538512, longitude=2.444731, address="Plaça Gran"),
        channel="webchat",
        account="mataro-web",
        citizen_id=citizen,
    )


async def test_closed_cases_are_anonymised_after_the_case_retention_open_ones_kept(
    tmp_path: Path,
):
    extra = CASES_EXTRA.replace("}", ", retention_days: 10}")
    async with case_service(tmp_path, extra=extra, clock=FIXED_CLOCK) as svc:
        services = svc.state.runtime.cases
        assert services.config.retention_days == 10  # the service setting wins over the file's
        clock = svc.state.clock
        closed = await services.cases.create(
            _draft("visitor_aaaaaaaaaaaaaaaa"), prefix="MTR", at=clock.now(), actor="citizen"
        )
        still_open = await services.cases.create(
            _draft("visitor_bbbbbbbbbbbbbbbb"), prefix="MTR", at=clock.now(), actor="citizen"
        )
        await services.change_status(closed.reference, CaseStatus.RESOLVED, note="Fet", actor="t")
        worker = CaseRetentionWorker(services)
        assert await worker.run_once() == 0  # closed today: kept
        clock.advance(timedelta(days=11))
        assert await worker.run_once() == 1
        clock.advance(timedelta(hours=1))
        assert await worker.run_once() == 0  # once a day
        gone = await services.cases.get(closed.reference)
        assert gone is not None
        assert gone.citizen_id is None
        assert gone.description == ""
        assert gone.location is not None
        assert gone.location.address is None
        assert (gone.location.latitude, gone.location.longitude) == (41.539, 2.445)
        assert gone.status is CaseStatus.RESOLVED  # kept for statistics
        kept = await services.cases.get(still_open.reference)
        assert kept is not None
        assert kept.citizen_id == "visitor_bbbbbbbbbbbbbbbb"
        assert kept.description == "Brutícia a la plaça"
