"""The case page in the operator's language: history entries, actors and buttons."""

from __future__ import annotations

from pathlib import Path

import pytest
from cases_service_helpers import CaseService, case_service
from console_helpers import PASSWORD, form_token, login

from civicchat.cases.models import CaseLocation, NewCase
from civicchat.service.console import hash_password


@pytest.fixture
async def svc(tmp_path: Path):
    async with case_service(tmp_path) as service:
        async with service.state.store.transaction() as tx:
            await tx.operators.add_operator(
                account="mataro", name="Anna", login="anna", password_hash=hash_password(PASSWORD)
            )
        yield service


async def _case(svc: CaseService) -> str:
    case = await svc.state.runtime.cases.cases.create(
        NewCase(
            category="enllumenat",
            description="La farola del davant no s'encén",
            location=CaseLocation(latitude=41.5385, longitude=2.4447, inside_boundary=True),
            channel="webchat",
            account="mataro-web",
            citizen_id="visitor_0123456789abcdef",
            language="ca",
        ),
        prefix="MTR",
        at=svc.state.clock.now(),
        actor="citizen",
    )
    return case.reference


def _history(html: str) -> str:
    return html.split('<ul class="history">', 1)[1].split("</ul>", 1)[0]


async def test_case_history_names_what_happened_and_who_in_the_operators_language(
    svc: CaseService,
) -> None:
    ref = await _case(svc)
    assert (await login(svc.client, "anna")).status_code == 303
    csrf = form_token((await svc.client.get("/console/cases")).text)
    changed = await svc.client.post(
        f"/console/cases/{ref}/status",
        data={"status": "in_progress", "note": "", "csrf_token": csrf},
    )
    assert changed.status_code == 303

    await svc.client.get("/lang/es")
    page = await svc.client.get(f"/console/cases/{ref}")
    assert page.status_code == 200
    history = _history(page.text)
    assert "registrada · ciudadano" in history
    assert "cambio de estado · Anna" in history
    assert "created" not in history
    assert "operator:" not in history
    assert "Cambiar el estado" in page.text
    assert ">Guardar</button>" in page.text

    await svc.client.get("/lang/en")
    page = await svc.client.get(f"/console/cases/{ref}")
    assert "status changed · Anna" in _history(page.text)
    assert "Change the status" in page.text
    assert "Canvia l'estat" not in page.text
