"""The report flow through the running service: web chat and WhatsApp, Catalan and Spanish."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from cases_service_helpers import CASES_EXTRA, FIXED_CLOCK, CaseService, case_service, describe
from service_fakes import wait_for

from civicchat.cases.models import CaseKind, CaseStatus
from pg_helpers import PG_URL, fresh_pg_schema


async def test_a_citizen_reports_an_incident_on_the_web_chat_in_catalan(tmp_path: Path):
    async with case_service(tmp_path) as svc:
        first = await svc.web(1, text="incidència")
        assert any("Quin tipus de problema és?" in r for r in first)
        assert "Explica'ns breument" in " ".join(await svc.web(2, text="1"))
        assert "foto o un vídeo" in " ".join(await svc.web(3, text="La farola no s'encén"))
        assert "On és?" in " ".join(await svc.web(4, text="no"))
        confirm = " ".join(await svc.web(5, location={"latitude": 41.5385, "longitude": 2.4447}))
        assert "L'enviem?" in confirm
        done = " ".join(await svc.web(6, text="sí"))
        assert "MTR-2026-000001" in done
        assert "Gràcies!" in done

        case = await svc.state.runtime.cases.cases.get("MTR-2026-000001")  # durable, in SQL
        assert case is not None
        assert case.channel == "webchat"
        assert case.account == "mataro-web"
        assert case.description == "La farola no s'encén"
        assert case.location is not None
        assert case.location.inside_boundary is True
        assert case.map_url is not None
        assert case.language == "ca"
        conv_data = await _flow_data(svc)
        assert "case_flow" not in conv_data  # the flow is over

        misses = svc.state.metrics.keywords.labels("mataro-web", "miss")._value.get()
        assert misses == 0  # the flow's answers are not keyword misses

        status = " ".join(await svc.web(7, text="estat MTR-2026-000001"))
        assert "MTR-2026-000001" in status
        assert "rebuda" in status


async def test_spanish_report_can_be_cancelled_and_the_bot_answers_normally_again(tmp_path: Path):
    async with case_service(tmp_path) as svc:
        first = " ".join(await svc.web(1, text="quiero poner una queja"))
        assert "registramos una queja" in first
        assert "case_flow" in await _flow_data(svc)
        cancelled = " ".join(await svc.web(2, text="cancelar"))
        assert "he cancelado la queja" in cancelled
        assert "case_flow" not in await _flow_data(svc)
        after = " ".join(await svc.web(3, text="horario bus"))
        assert "cancelado" not in after
        assert after
        assert await svc.state.runtime.cases.cases.list_cases() == []


async def test_a_wrong_category_is_asked_again_and_a_point_outside_mataro_is_questioned(
    tmp_path: Path,
):
    async with case_service(tmp_path) as svc:
        await svc.web(1, text="tengo una incidencia")
        again = " ".join(await svc.web(2, text="xyz qwerty"))
        assert "No he entendido la categoría" in again
        await svc.web(3, text="1")
        await svc.web(4, text="La farola de la esquina no funciona")
        await svc.web(5, text="no")
        barcelona = " ".join(await svc.web(6, location={"latitude": 41.3917, "longitude": 2.1649}))
        assert "parece fuera de Mataró" in barcelona
        retry = " ".join(await svc.web(7, text="no"))
        assert "ubicación correcta" in retry
        await svc.web(8, location={"latitude": 41.5385, "longitude": 2.4447})
        done = " ".join(await svc.web(9, text="sí"))
        assert "MTR-2026-000001" in done
        assert "¡Gracias!" in done
        case = await svc.state.runtime.cases.cases.get("MTR-2026-000001")
        assert case is not None
        assert case.language == "es"
        assert case.location is not None
        assert case.location.inside_boundary is True


async def test_a_photo_out_of_the_blue_on_whatsapp_starts_a_report_without_a_location(
    tmp_path: Path,
):
    async with case_service(tmp_path) as svc:
        photo = {"id": "4001", "mime_type": "image/jpeg", "caption": "Paperera cremada"}
        started = " ".join(await svc.whatsapp(1, "image", photo))
        assert "Quin tipus de problema és?" in started
        await svc.whatsapp(2, "text", {"body": "1"})
        unknown = " ".join(await svc.whatsapp(3, "text", {"body": "no ho sé"}))
        assert "L'enviem?" in unknown
        assert "no indicada" in unknown
        done = " ".join(await svc.whatsapp(4, "text", {"body": "sí"}))
        assert "MTR-2026-000001" in done
        case = await svc.state.runtime.cases.cases.get("MTR-2026-000001")
        assert case is not None
        assert case.location is None
        assert case.kind is CaseKind.INCIDENT
        assert case.status is CaseStatus.RECEIVED
        assert [(m.ref, m.channel) for m in case.media] == [("4001", "whatsapp")]
        assert case.description == "Paperera cremada"
        # The photo itself is fetched by the service's media downloader, like any other.
        services = svc.state.runtime.cases

        async def stored() -> object:
            return await services.media_bytes(case, 0)

        data, mime = await wait_for(stored)
        assert mime == "image/jpeg"
        assert data.startswith(b"\xff\xd8")


async def _flow_data(svc) -> dict:
    async with svc.state.store.transaction() as tx:
        rows = await tx.conversations.list(account="mataro-web")
    return dict(rows[0].data or {}) if rows else {}


async def test_an_interrupted_report_resumes_politely_and_expires_after_a_day(tmp_path: Path):
    async with case_service(tmp_path, clock=FIXED_CLOCK) as svc:
        clock = svc.state.clock
        await svc.web(1, text="vull posar una queixa")
        await svc.web(2, text="1")
        clock.advance(timedelta(hours=2))
        resumed = await svc.web(3, text="Fa una setmana que no passa l'escombradora")
        assert resumed[0] == "Continuem amb la teva queixa. Per deixar-ho, escriu «cancel·lar»."
        assert any("foto o un vídeo" in r for r in resumed)
        clock.advance(timedelta(hours=25))
        expired = await svc.web(4, text="horari bus")
        assert expired[0].startswith("La queixa que havies començat ha caducat")
        assert len(expired) > 1  # and routing answered the question itself
        assert "case_flow" not in await _flow_data(svc)
        assert await svc.state.runtime.cases.cases.list_cases() == []


# ------------------------------------------------ while the conversation waits for a person

SATURDAY = "fixed: 2026-11-28T11:00:00+01:00"  # the office is closed until Monday 8:00
LOCATION = {"latitude": 41.5385, "longitude": 2.4447}


async def _conversation(svc, account: str = "mataro-web"):
    async with svc.state.store.transaction() as tx:
        (conv,) = await tx.conversations.list(account=account)
    return conv


@asynccontextmanager
async def saturday_service(tmp_path: Path, backend: str) -> AsyncIterator[CaseService]:
    """The service on Saturday, on SQLite or on a fresh PostgreSQL schema."""
    if backend == "sqlite":
        async with case_service(tmp_path, clock=SATURDAY) as svc:
            yield svc
        return
    async with fresh_pg_schema() as schema:
        extra = f"{CASES_EXTRA}\ndatabase_schema: {schema}\nlive: memory"
        async with case_service(tmp_path, extra=extra, clock=SATURDAY, database=PG_URL) as svc:
            yield svc


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_after_hola_out_of_hours_an_incident_can_still_be_reported_in_catalan(
    tmp_path: Path, backend: str
):
    async with saturday_service(tmp_path, backend) as svc:
        hello = " ".join(await svc.web(1, text="hola"))
        assert "Ara l'oficina del 010 és tancada" in hello
        assert (await _conversation(svc)).state == "queued"

        first = " ".join(await svc.web(2, text="incidència"))
        assert "Quin tipus de problema és?" in first
        assert "Per deixar-ho, escriu «cancel·lar»." in first
        assert "Explica'ns breument" in " ".join(await svc.web(3, text="1"))
        assert "foto o un vídeo" in " ".join(await svc.web(4, text="La farola no s'encén"))
        assert "On és?" in " ".join(await svc.web(5, text="no"))
        assert "L'enviem?" in " ".join(await svc.web(6, location=LOCATION))
        done = " ".join(await svc.web(7, text="sí"))
        assert "Gràcies! Hem registrat la teva incidència amb el número MTR-2026-000001" in done

        case = await svc.state.runtime.cases.cases.get("MTR-2026-000001")
        assert case is not None
        assert case.description == "La farola no s'encén"
        assert case.language == "ca"
        # The citizen's "hola" still waits for a person: the report answered only itself.
        conv = await _conversation(svc)
        assert conv.state == "queued"
        assert conv.assigned_operator is None
        assert "case_flow" not in (conv.data or {})
        # And the closed-office reply is not repeated for the report's messages.
        rows = await svc.outbox()
        assert sum("oficina del 010 és tancada" in describe(r["content"]) for r in rows) == 1


async def test_queued_spanish_citizen_cancels_asks_something_else_and_the_report_expires(
    tmp_path: Path,
):
    async with case_service(tmp_path, clock=SATURDAY) as svc:
        clock = svc.state.clock
        assert "la oficina del 010 está cerrada" in " ".join(await svc.web(1, text="buenos días"))
        first = " ".join(await svc.web(2, text="quiero comunicar una incidencia"))
        assert "registramos una incidencia" in first
        assert "Para dejarlo, escribe «cancelar»." in first
        cancelled = " ".join(await svc.web(3, text="cancelar"))
        assert "he cancelado la incidencia" in cancelled
        assert "case_flow" not in await _flow_data(svc)

        # Another keyword instead of a category: the flow steps aside, the keyword answers.
        await svc.web(4, text="incidencia")
        weather = await svc.web(5, text="el tiempo")
        assert weather[0] == (
            "De acuerdo, dejamos la incidencia aquí. Para volver a empezar, escribe «incidencia»."
        )
        assert "meteo.cat" in " ".join(weather[1:])
        assert "case_flow" not in await _flow_data(svc)

        # A report left half-way while queued expires politely on the next message.
        await svc.web(6, text="incidencia")
        await svc.web(7, text="2")
        clock.advance(timedelta(hours=25))  # Sunday: still closed, already told
        expired = await svc.web(8, text="hola")
        # The expiry notice first; then routing's short out-of-hours note (not the whole
        # closed-office reply again) for the "hola" the flow did not take.
        assert expired == [
            "La incidencia que habías empezado ha caducado y no se ha enviado. Si aún es "
            "necesario, vuelve a empezar escribiendo «incidencia».",
            "Hemos recibido tu mensaje. Una persona de la oficina del 010 te responderá "
            "mañana a las 8:00.",
        ]
        conv = await _conversation(svc)
        assert conv.state == "queued"
        assert "case_flow" not in (conv.data or {})
        assert await svc.state.runtime.cases.cases.list_cases() == []


async def test_a_photo_sent_while_queued_on_whatsapp_starts_a_report_in_spanish(tmp_path: Path):
    async with case_service(tmp_path, clock=SATURDAY) as svc:
        await svc.whatsapp(1, "text", {"body": "buenas tardes"})
        assert (await _conversation(svc, "mataro-wa")).state == "queued"
        photo = {"id": "4002", "mime_type": "image/jpeg", "caption": "Contenedor quemado"}
        started = " ".join(await svc.whatsapp(2, "image", photo))
        assert "¿Qué tipo de problema es?" in started
        await svc.whatsapp(3, "text", {"body": "4"})
        await svc.whatsapp(4, "text", {"body": "no lo sé"})
        done = " ".join(await svc.whatsapp(5, "text", {"body": "sí"}))
        assert "¡Gracias! Hemos registrado tu incidencia con el número MTR-2026-000001" in done
        case = await svc.state.runtime.cases.cases.get("MTR-2026-000001")
        assert case is not None
        assert case.category == "residus"
        assert [m.ref for m in case.media] == ["4002"]
        assert (await _conversation(svc, "mataro-wa")).state == "queued"


async def test_while_an_operator_attends_the_conversation_the_flow_stays_out(tmp_path: Path):
    async with case_service(tmp_path, clock=SATURDAY) as svc:
        await svc.web(1, text="hola")
        async with svc.state.store.transaction() as tx:
            operator = await tx.operators.add_operator(
                account="mataro-web", name="Anna", login="anna", password_hash="x"
            )
            (conv,) = await tx.conversations.list(account="mataro-web")
            await tx.conversations.save(
                dataclasses.replace(conv, state="assigned", assigned_operator=operator.id)
            )
        # The location goes to the operator; the bot does not start a report.
        assert await svc.web(2, location=LOCATION) == []
        # The report word is an exact keyword, answered as keywords are while a person attends
        # (routing's rule 1), not the start of a report.
        (answer,) = await svc.web(3, text="incidència")
        assert answer.startswith("📸 Per comunicar una incidència")
        assert "case_flow" not in await _flow_data(svc)
        assert (await _conversation(svc)).state == "assigned"


async def test_the_web_chat_language_choice_starts_the_report_in_spanish(tmp_path: Path):
    async with case_service(tmp_path) as svc:
        # "incidencia" alone says no language: the selector's choice does.
        first = " ".join(await svc.web(1, text="incidencia", language="es"))
        assert "De acuerdo, registramos una incidencia. ¿Qué tipo de problema es?" in first
        assert "Para dejarlo, escribe «cancelar»." in first
        assert "Explícanos brevemente" in " ".join(await svc.web(2, text="1", language="es"))
        await svc.web(3, text="La farola no funciona", language="es")
        await svc.web(4, text="no", language="es")
        await svc.web(5, location=LOCATION, language="es")
        done = " ".join(await svc.web(6, text="sí", language="es"))
        assert "¡Gracias! Hemos registrado tu incidencia con el número MTR-2026-000001" in done
        case = await svc.state.runtime.cases.cases.get("MTR-2026-000001")
        assert case is not None
        assert case.language == "es"


async def test_the_web_chat_language_choice_wins_over_the_conversation_language(
    tmp_path: Path,
):
    async with case_service(tmp_path) as svc:
        await svc.web(1, text="buenos días", language="es")
        assert (await _conversation(svc)).language == "es"
        # The citizen switches the selector to Catalan: the report is in Catalan.
        first = " ".join(await svc.web(2, text="incidencia", language="ca"))
        assert "D'acord, registrem una incidència. Quin tipus de problema és?" in first
        assert "Per deixar-ho, escriu «cancel·lar»." in first
        assert "case_flow" in await _flow_data(svc)
        assert "Explica'ns breument" in " ".join(await svc.web(3, text="1", language="ca"))


async def test_a_location_from_a_spanish_web_chat_starts_the_report_in_spanish(tmp_path: Path):
    async with case_service(tmp_path) as svc:
        started = " ".join(await svc.web(1, location=LOCATION, language="es"))
        assert "registramos una incidencia" in started
        assert "¿Qué tipo de problema es?" in started
        cancelled = " ".join(await svc.web(2, text="cancelar", language="es"))
        assert "he cancelado la incidencia" in cancelled


async def test_asking_for_a_person_in_the_middle_of_a_report_leaves_it_for_a_person(
    tmp_path: Path,
):
    async with case_service(tmp_path, clock=SATURDAY) as svc:
        await svc.web(1, text="bon dia")  # closed: queued for Monday, told so
        assert "registrem una incidència" in " ".join(await svc.web(2, text="incidència"))
        person = await svc.web(3, text="prefereixo parlar amb una persona")
        assert person[0] == (
            "D'acord, deixem la incidència aquí. Per tornar a començar, escriu «incidència»."
        )
        assert "case_flow" not in await _flow_data(svc)
        conv = await _conversation(svc)
        assert conv.state == "queued"  # still waiting for the person it asked for


async def test_a_keyword_at_the_category_step_keeps_the_photo_and_the_place_sent(tmp_path: Path):
    async with case_service(tmp_path, clock=SATURDAY) as svc:
        await svc.whatsapp(1, "text", {"body": "hola"})
        await svc.whatsapp(2, "text", {"body": "Quiero avisar de una farola rota"})
        photo = {"id": "4003", "mime_type": "image/jpeg"}
        assert "¿Qué tipo de problema es?" in " ".join(await svc.whatsapp(3, "image", photo))
        place = await svc.whatsapp(4, "location", {"latitude": 41.5385, "longitude": 2.4447})
        assert place[0].startswith("Tengo la ubicación. Ahora, ¿qué tipo de problema es?")
        assert "No he entendido" not in " ".join(place)
        bus = await svc.whatsapp(5, "text", {"body": "bus"})
        assert bus[0].startswith("De acuerdo, dejamos la incidencia en pausa")
        assert len(bus) > 1  # and the keyword engine answered "bus"
        assert "case_flow" in ((await _conversation(svc, "mataro-wa")).data or {})
        menu = " ".join(await svc.whatsapp(6, "text", {"body": "incidencia"}))
        assert "¿Qué tipo de problema es?" in menu
        await svc.whatsapp(7, "text", {"body": "1"})
        confirm = " ".join(await svc.whatsapp(8, "text", {"body": "La farola no se enciende"}))
        assert "¿Lo enviamos?" in confirm  # the photo and the place were kept
        assert "sí (1)" in confirm
        await svc.whatsapp(9, "text", {"body": "sí"})
        case = await svc.state.runtime.cases.cases.get("MTR-2026-000001")
        assert case is not None
        assert [m.ref for m in case.media] == ["4003"]
        assert case.location is not None
        assert case.location.inside_boundary is True


async def test_cancel_after_the_report_was_dropped_says_there_is_none_not_routing(
    tmp_path: Path,
):
    async with case_service(tmp_path, clock=SATURDAY) as svc:
        clock = svc.state.clock
        await svc.web(1, text="buenos días")  # closed: queued for Monday, told so
        await svc.web(2, text="incidencia")
        assert "dejamos la incidencia aquí" in " ".join(await svc.web(3, text="el tiempo"))
        assert await svc.web(4, text="cancelar") == ["No hay ninguna incidencia en curso."]
        assert (await _conversation(svc)).state == "queued"  # still waiting for the person
        # A day later the report is long gone: "cancelar" is routing's again.
        clock.advance(timedelta(hours=25))
        later = " ".join(await svc.web(5, text="cancelar"))
        assert "No hay ninguna incidencia" not in later
        assert "Hemos recibido tu mensaje" in later
