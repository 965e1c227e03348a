from __future__ import annotations

from datetime import UTC, datetime

import pytest

from civicchat.cases.config import CasesConfig
from civicchat.cases.memory import MemoryCaseStore
from civicchat.cases.models import CaseKind, CaseStatus, NewCase
from civicchat.cases.notify import status_notification
from civicchat.messages import Template, Text

AT = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


async def make(kind: CaseKind, language: str, status: CaseStatus, note: str):
    store = MemoryCaseStore()
    case = await store.create(
        NewCase(
            kind=kind,
            category="parcs",
            description="Banc trencat",
            channel="whatsapp",
            account="mataro",
            citizen_id="34600000001",
            language=language,
        ),
        prefix="MTR",
        at=AT,
        actor="citizen",
    )
    return await store.update_status(case.reference, status, note=note, actor="op:anna", at=AT)


@pytest.mark.parametrize(
    ("kind", "language", "status", "expected"),
    [
        (
            CaseKind.INCIDENT,
            "ca",
            CaseStatus.RESOLVED,
            "La teva incidència MTR-2026-000001 ara està resolta.",
        ),
        (
            CaseKind.SUGGESTION,
            "ca",
            CaseStatus.REJECTED,
            "El teu suggeriment MTR-2026-000001 ara està rebutjat.",
        ),
        (
            CaseKind.COMPLAINT,
            "es",
            CaseStatus.IN_PROGRESS,
            "Tu queja MTR-2026-000001 ahora está en curso.",
        ),
        (
            CaseKind.SUGGESTION,
            "es",
            CaseStatus.RESOLVED,
            "Tu sugerencia MTR-2026-000001 ahora está resuelta.",
        ),
    ],
)
async def test_status_change_texts(
    mataro_config: CasesConfig, kind: CaseKind, language: str, status: CaseStatus, expected: str
) -> None:
    case = await make(kind, language, status, note="")
    note = status_notification(case, config=mataro_config)
    assert note.text == expected
    assert note.as_text() == Text(body=expected)
    assert note.template_parameters[2] == "-"


async def test_the_note_goes_in_the_text_and_the_template(mataro_config: CasesConfig) -> None:
    case = await make(
        CaseKind.INCIDENT, "es", CaseStatus.RESOLVED, note="Bombeta\n\ncanviada    avui"
    )
    note = status_notification(case, config=mataro_config)
    assert note.text == (
        "Tu incidencia MTR-2026-000001 ahora está resuelta.\nNota: Bombeta\n\ncanviada    avui"
    )
    template = note.as_template()
    assert isinstance(template, Template)
    assert template.name == "case_status_update"
    assert template.language == "es"
    assert [p.text for p in template.body_parameters] == [
        "MTR-2026-000001",
        "resuelta",
        "Bombeta canviada avui",  # one line: templates refuse newlines and runs of spaces
    ]
    assert template.fallback_text == note.text


async def test_language_can_be_overridden_and_notes_suppressed(mataro_config: CasesConfig) -> None:
    case = await make(CaseKind.INCIDENT, "es", CaseStatus.RESOLVED, note="Fet")
    note = status_notification(case, config=mataro_config, language="ca", note="")
    assert note.text == "La teva incidència MTR-2026-000001 ara està resolta."
    assert note.language == "ca"
    long = status_notification(case, config=mataro_config, note="x" * 500)
    assert len(long.template_parameters[2]) == 200
