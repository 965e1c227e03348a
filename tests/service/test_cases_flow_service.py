"""The report flow through the running service: web chat and WhatsApp, Catalan and Spanish."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from cases_service_helpers import FIXED_CLOCK, case_service
from service_fakes import wait_for

from civicchat.cases.models import CaseKind, CaseStatus


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
