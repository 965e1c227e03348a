"""Cases in the console: list, case page, status changes and assignment, account isolation."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cases_service_helpers import CaseService, case_service
from console_helpers import PASSWORD, form_token, login, login_as

from civicchat.cases.models import CaseLocation, CaseStatus, MediaRef, NewCase
from civicchat.messages import MediaKind
from civicchat.service.console import hash_password
from civicchat.storage.base import OperatorRole


async def _operators(svc: CaseService) -> None:
    digest = hash_password(PASSWORD)
    async with svc.state.store.transaction() as tx:
        await tx.operators.add_operator(
            account="mataro", name="Anna", login="anna", password_hash=digest
        )
        await tx.operators.add_operator(
            account="granollers",
            name="Pere",
            login="pere",
            password_hash=digest,
            role=OperatorRole.SUPERVISOR,
        )


async def _case(svc: CaseService, **changes: object) -> str:
    values: dict[str, object] = {
        "category": "enllumenat",
        "description": "La farola del davant no s'encén",
        "media": (MediaRef(media_kind=MediaKind.IMAGE, ref="4001", channel="webchat"),),
        "location": CaseLocation(latitude=41.5385, longitude=2.4447, inside_boundary=True),
        "channel": "webchat",
        "account": "mataro-web",
        "citizen_id": "visitor_0123456789abcdef",
        "language": "ca",
    }
    values.update(changes)
    services = svc.state.runtime.cases
    case = await services.cases.create(
        NewCase(**values), prefix="MTR", at=svc.state.clock.now(), actor="citizen"
    )
    return case.reference


async def _csrf(client: httpx.AsyncClient, user: str) -> str:
    response = await login(client, user)
    assert response.status_code == 303, response.text
    page = await client.get("/console/cases")
    assert page.status_code == 200
    return form_token(page.text)


@pytest.fixture
async def svc(tmp_path: Path):
    async with case_service(tmp_path) as service:
        await _operators(service)
        yield service


async def test_anonymous_visitors_are_sent_to_the_login(svc: CaseService):
    ref = await _case(svc)
    for path in ("/console/cases", f"/console/cases/{ref}", f"/console/cases/{ref}/media/0"):
        response = await svc.client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")
    post = await svc.client.post(f"/console/cases/{ref}/status", data={"status": "resolved"})
    assert post.status_code == 401
    case = await svc.state.runtime.cases.cases.get(ref)
    assert case is not None
    assert case.status is CaseStatus.RECEIVED


async def test_the_list_filters_by_status_and_category_and_the_page_shows_the_case(
    svc: CaseService,
):
    lamp = await _case(svc)
    bin_ = await _case(svc, category="neteja", description="Brutícia a la plaça")
    await svc.state.runtime.cases.change_status(bin_, CaseStatus.IN_PROGRESS, note="", actor="test")
    await _csrf(svc.client, "anna")
    everything = (await svc.client.get("/console/cases")).text
    assert lamp in everything
    assert bin_ in everything
    received = (await svc.client.get("/console/cases", params={"status": "received"})).text
    assert lamp in received
    assert bin_ not in received
    cleaning = (await svc.client.get("/console/cases", params={"category": "neteja"})).text
    assert bin_ in cleaning
    assert lamp not in cleaning
    bad = await svc.client.get("/console/cases", params={"status": "lost"})
    assert bad.status_code == 400

    page = await svc.client.get(f"/console/cases/{lamp}")
    assert page.status_code == 200
    assert "La farola del davant no s&#39;encén" in page.text
    assert "openstreetmap.org" in page.text  # the map link
    assert f'src="/console/cases/{lamp}/media/0"' in page.text  # the photo, access-checked
    assert "Enllumenat públic" in page.text
    photo = await svc.client.get(f"/console/cases/{lamp}/media/0")
    assert photo.status_code == 404  # not downloaded: the web chat has no media of its own


async def test_an_operator_of_another_account_gets_404_everywhere(svc: CaseService):
    ref = await _case(svc)
    csrf = await _csrf(svc.client, "pere")
    assert ref not in (await svc.client.get("/console/cases")).text
    assert (await svc.client.get(f"/console/cases/{ref}")).status_code == 404
    assert (await svc.client.get(f"/console/cases/{ref}/media/0")).status_code == 404
    changed = await svc.client.post(
        f"/console/cases/{ref}/status",
        data={"status": "resolved", "note": "fet", "csrf_token": csrf},
    )
    assert changed.status_code == 404
    assigned = await svc.client.post(
        f"/console/cases/{ref}/assign",
        data={"department": "manteniment", "note": "", "csrf_token": csrf},
    )
    assert assigned.status_code == 404
    case = await svc.state.runtime.cases.cases.get(ref)
    assert case is not None
    assert case.status is CaseStatus.RECEIVED
    assert case.department is None


async def test_a_status_change_is_audited_and_sent_to_the_citizen(svc: CaseService):
    ref = await _case(svc)
    csrf = await _csrf(svc.client, "anna")
    no_token = await svc.client.post(f"/console/cases/{ref}/status", data={"status": "resolved"})
    assert no_token.status_code == 403
    before = len(await svc.outbox())
    response = await svc.client.post(
        f"/console/cases/{ref}/status",
        data={"status": "resolved", "note": "Bombeta canviada", "csrf_token": csrf},
    )
    assert response.status_code == 303
    case = await svc.state.runtime.cases.cases.get(ref)
    assert case is not None
    assert case.status is CaseStatus.RESOLVED
    assert case.history[-1].note == "Bombeta canviada"
    assert case.history[-1].actor.startswith("operator:")
    rows = (await svc.outbox())[before:]
    assert len(rows) == 1
    assert rows[0]["recipient"] == "visitor_0123456789abcdef"
    body = rows[0]["content"]["body"]
    assert f"La teva incidència {ref} ara està resolta." in body
    assert "Bombeta canviada" in body
    async with svc.state.store.transaction() as tx:
        audit = await tx.audit.audit_entries("mataro-web")
    entry = next(a for a in audit if a.action == "case_status")
    assert entry.details["case"] == ref
    assert entry.details["status"] == "resolved"
    page = await svc.client.get(f"/console/cases/{ref}")
    assert "Bombeta canviada" in page.text


async def test_assigning_a_department_is_audited_and_unknown_departments_refused(
    svc: CaseService,
):
    ref = await _case(svc)
    csrf = await _csrf(svc.client, "anna")
    department = svc.state.runtime.cases.config.departments[0].id
    response = await svc.client.post(
        f"/console/cases/{ref}/assign",
        data={"department": department, "note": "", "csrf_token": csrf},
    )
    assert response.status_code == 303
    case = await svc.state.runtime.cases.cases.get(ref)
    assert case is not None
    assert case.department == department
    unknown = await svc.client.post(
        f"/console/cases/{ref}/assign",
        data={"department": "nowhere", "note": "", "csrf_token": csrf},
    )
    assert unknown.status_code == 400
    async with svc.state.store.transaction() as tx:
        audit = await tx.audit.audit_entries("mataro-web")
    assert [a.details["department"] for a in audit if a.action == "case_assign"] == [department]


async def test_on_whatsapp_with_the_window_closed_the_status_goes_as_a_template(
    svc: CaseService,
):
    # The citizen reported on WhatsApp long ago: no message from them in the last 24 hours.
    ref = await _case(
        svc, channel="whatsapp", account="mataro-wa", citizen_id="34600111222", media=()
    )
    services = svc.state.runtime.cases
    before = len(await svc.outbox())
    await services.change_status(ref, CaseStatus.IN_PROGRESS, note="Hi anem", actor="test")
    row = (await svc.outbox())[before]
    assert row["content"]["kind"] == "template"
    assert row["content"]["name"] == "case_status_update"
    params = [p["text"] for p in row["content"]["body_parameters"]]
    assert params == [ref, "en curs", "Hi anem"]

    # Once the citizen writes, the window is open and the next change is free text.
    await svc.whatsapp(1, "text", {"body": "hola"})
    before = len(await svc.outbox())
    await services.change_status(ref, CaseStatus.RESOLVED, note="Fet", actor="test")
    row = (await svc.outbox())[before]
    assert row["content"]["kind"] == "text", json.dumps(row)
    assert ref in row["content"]["body"]


async def test_the_console_navigation_links_to_the_cases(svc: CaseService, world):
    await login(svc.client, "anna")
    queue = await svc.client.get("/console")
    assert 'href="/console/cases"' in queue.text
    # A console whose service keeps no cases shows no such link.
    async with world.client() as client:
        await login_as(client, next(iter(world.ops.values())).login)
        page = await client.get("/console")
        assert page.status_code == 200
        assert 'href="/console/cases"' not in page.text
