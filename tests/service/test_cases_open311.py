"""Open311 forwarding and status polling by the service's worker, against the fake GeoReport v2
server of ``tests/cases/georeport_fake.py``: forward, token exchange, polling, a 500 retried
later, a 400 shown to the operator, the signed photo link, a case forwarded after a restart, and the
HTTP client the service's worker sends with."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cases_service_helpers import (
    FIXED_CLOCK,
    CaseService,
    case_service,
    georeport_fake,
    open311_worker,
)
from service_fakes import wait_for

from civicchat.cases.models import CaseLocation, CaseStatus, NewCase
from civicchat.channels._http import PROVIDER_TIMEOUT, LeanPool
from civicchat.service.cases_worker import open311_worker as service_open311_worker
from civicchat.service.console import hash_password

VISITOR = "visitor_0123456789abcdef"


def _codes(svc: CaseService) -> dict[str, str]:
    config = svc.state.runtime.cases.config
    return {c.id: c.service_code for c in config.categories if c.service_code}


async def _case(svc: CaseService, category: str = "enllumenat") -> str:
    new = NewCase(
        category=category,
        description="La farola no s'encén",
        location=CaseLocation(latitude=41.5385, longitude=2.4447, inside_boundary=True),
        channel="webchat",
        account="mataro-web",
        citizen_id=VISITOR,
    )
    services = svc.state.runtime.cases
    case = await services.cases.create(new, prefix="MTR", at=services.clock.now(), actor="citizen")
    return case.reference


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[CaseService]:
    async with case_service(tmp_path, clock=FIXED_CLOCK) as service:
        yield service


def _georeport(svc: CaseService, **kwargs: Any) -> tuple[Any, httpx.AsyncClient]:
    fake = georeport_fake().FakeGeoReport(codes=set(_codes(svc).values()), **kwargs)
    return fake, httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app()))


async def test_a_case_is_forwarded_then_polled_until_closed_and_the_citizen_told(
    svc: CaseService,
):
    ref = await _case(svc)
    fake, http = _georeport(svc)
    async with http:
        worker = open311_worker(svc, http)
        assert await worker.run_once() == 1
        [post] = fake.posts
        assert post["service_code"] == _codes(svc)["enllumenat"]
        assert (float(post["lat"]), float(post["long"])) == (41.5385, 2.4447)
        assert ref in post["description"]
        assert VISITOR not in str(post)  # no personal data of the citizen goes out
        case = await svc.state.runtime.cases.cases.get(ref)
        assert case is not None
        assert case.open311.service_request_id == "638344"

        assert await worker.run_once() == 0  # the next look is one poll interval away
        svc.state.clock.advance(timedelta(minutes=16))
        assert await worker.run_once() == 1  # still open over there: nothing changes
        before = len(await svc.outbox())
        fake.statuses["638344"] = {"status": "closed", "status_notes": "Bombeta canviada"}
        svc.state.clock.advance(timedelta(minutes=16))
        assert await worker.run_once() == 1
        case = await svc.state.runtime.cases.cases.get(ref)
        assert case is not None
        assert case.status is CaseStatus.RESOLVED
        assert case.history[-1].actor == "open311"
        rows = (await svc.outbox())[before:]
        assert [r["recipient"] for r in rows] == [VISITOR]
        assert "ara està resolta" in rows[0]["content"]["body"]
        assert "Bombeta canviada" in rows[0]["content"]["body"]
        svc.state.clock.advance(timedelta(days=1))
        assert await worker.run_once() == 0  # closed: no more polling


async def test_a_token_is_exchanged_for_the_request_id_once_the_server_knows_it(
    svc: CaseService,
):
    ref = await _case(svc)
    fake, http = _georeport(svc, use_tokens=True)
    async with http:
        worker = open311_worker(svc, http)
        await worker.run_once()
        case = await svc.state.runtime.cases.cases.get(ref)
        assert case is not None
        assert case.open311.token == "tok638344"
        assert case.open311.service_request_id is None
        svc.state.clock.advance(timedelta(minutes=16))
        await worker.run_once()  # the server does not know the token yet
        case = await svc.state.runtime.cases.cases.get(ref)
        assert case is not None
        assert case.open311.service_request_id is None
        fake.process_tokens()
        fake.statuses["638344"] = {"status": "open", "status_notes": "Brigada avisada"}
        svc.state.clock.advance(timedelta(minutes=16))
        await worker.run_once()
        case = await svc.state.runtime.cases.cases.get(ref)
        assert case is not None
        assert case.open311.service_request_id == "638344"
        assert case.status is CaseStatus.IN_PROGRESS  # open with notes: in progress


async def test_a_500_is_retried_later_and_a_400_is_shown_to_the_operator(svc: CaseService):
    ref = await _case(svc)
    fake, http = _georeport(svc)
    fake.failures.append((500, {}))
    async with http:
        worker = open311_worker(svc, http)
        await worker.run_once()
        case = await svc.state.runtime.cases.cases.get(ref)
        assert case is not None
        assert case.open311.service_request_id is None
        assert "500" in (case.open311.last_error or "")
        assert await worker.run_once() == 0  # not hammered: tried again after a delay
        svc.state.clock.advance(timedelta(seconds=31))
        assert await worker.run_once() == 1
        case = await svc.state.runtime.cases.cases.get(ref)
        assert case is not None
        assert case.open311.service_request_id == "638344"
        assert case.open311.last_error is None
        assert len(fake.posts) == 2

        # A category whose service code the server does not know: 400, kept for the operator.
        codes = _codes(svc)
        fake.codes = set(codes.values()) - {codes["neteja"]}
        bad = await _case(svc, category="neteja")
        await worker.run_once()
        case = await svc.state.runtime.cases.cases.get(bad)
        assert case is not None
        assert case.open311.last_error == (
            f"Open311 (400): Service code {codes['neteja']} is not a valid service code."
        )
        svc.state.clock.advance(timedelta(days=1))
        await worker.run_once()
        assert len(fake.posts) == 3  # a rejection is not retried

    digest = hash_password("correct horse battery")
    async with svc.state.store.transaction() as tx:
        await tx.operators.add_operator(
            account="mataro", name="Anna", login="anna", password_hash=digest
        )
    page = await svc.client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    login = await svc.client.post(
        "/login",
        data={"login": "anna", "password": "correct horse battery", "csrf_token": token[1]},
    )
    assert login.status_code == 303
    shown = await svc.client.get(f"/console/cases/{bad}")
    assert "is not a valid service code." in shown.text
    assert "open311-error" in shown.text


async def test_the_photo_goes_as_a_signed_link_that_the_service_serves(tmp_path: Path):
    async with case_service(tmp_path) as svc:  # a running clock: the media downloader works
        photo = {"id": "4001", "mime_type": "image/jpeg", "caption": "Paperera cremada"}
        await svc.whatsapp(1, "image", photo)
        await svc.whatsapp(2, "text", {"body": "1"})
        await svc.whatsapp(3, "location", {"latitude": 41.5385, "longitude": 2.4447})
        await svc.whatsapp(4, "text", {"body": "sí"})
        services = svc.state.runtime.cases
        case = await services.cases.get("MTR-2026-000001")
        assert case is not None

        async def downloaded() -> object:
            return await services.media_bytes(case, 0)

        await wait_for(downloaded)
        fake, http = _georeport(svc)
        async with http:
            await open311_worker(svc, http).run_once()
        link = fake.posts[0]["media_url"]
        parts = urlsplit(link)
        assert parts.path == "/media/case%2FMTR-2026-000001.0"  # /media/case/{token}
        served = await svc.client.get(f"{parts.path}?{parts.query}")
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
        assert served.content.startswith(b"\xff\xd8")
        forged = parts.query.replace("signature=", "signature=0")
        assert (await svc.client.get(f"{parts.path}?{forged}")).status_code == 403
        other = parts.path.replace("000001", "000002")
        assert (await svc.client.get(f"{other}?{parts.query}")).status_code == 403


async def test_a_case_not_yet_forwarded_is_forwarded_after_a_restart(tmp_path: Path):
    async with case_service(tmp_path, clock=FIXED_CLOCK) as svc:
        ref = await _case(svc)  # the service stops before any worker saw it
    async with case_service(tmp_path, clock=FIXED_CLOCK) as svc:
        fake, http = _georeport(svc)
        async with http:
            assert await open311_worker(svc, http).run_once() == 1
        assert [ref in p["description"] for p in fake.posts] == [True]


async def test_the_services_open311_worker_sends_with_a_provider_client_it_closes(
    svc: CaseService,
) -> None:
    settings = SimpleNamespace(
        open311_url="http://127.0.0.1:9/open311/v2/",  # never reached: no case is due
        open311_api_key="key",
        open311_jurisdiction_id=None,
        poll_minutes=15,
    )
    service = SimpleNamespace(cases=settings)
    services = svc.state.runtime.cases
    worker = service_open311_worker(services, service)
    assert worker is not None
    own = worker.client._client
    assert isinstance(own._transport._pool, LeanPool)  # type: ignore[attr-defined]
    assert own.timeout == PROVIDER_TIMEOUT
    task = asyncio.create_task(worker.run_forever())
    await asyncio.sleep(0)
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert own.is_closed
    # A client given by the caller is used and left open for the caller to close.
    async with httpx.AsyncClient() as given:
        worker = service_open311_worker(services, service, http=given)
        assert worker is not None
        assert worker.client._client is given
        worker.stop()
        await worker.run_forever()
        assert not given.is_closed
    assert service_open311_worker(services, SimpleNamespace(cases=None)) is None
