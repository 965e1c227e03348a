"""Cases in the console: the list by status and category, a case page, assign, change status.

Operators see the cases of their accounts only (another account's case answers 404, as its
conversations do). Every change goes through :class:`~civicchat.service.cases_worker.CaseServices`:
one transaction with the audit entry and the citizen's notification in the outbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from civicchat.cases.errors import CaseNotFoundError
from civicchat.cases.models import Case, CaseKind, CaseStatus
from civicchat.cases.texts import kind_label, status_label
from civicchat.exceptions import ConfigError
from civicchat.service.console.web import Console, Denied, Principal, field
from civicchat.storage.assignment_sql import assignment_queries

if TYPE_CHECKING:
    from civicchat.service.cases_worker import CaseServices

__all__ = ["CaseViews", "case_routes"]

_LABELS: Mapping[str, Mapping[str, str]] = {
    "ca": {
        "cases": "Incidències",
        "reference": "Número",
        "status": "Estat",
        "all": "Totes",
        "category": "Categoria",
        "department": "Departament",
        "created": "Creada",
        "updated": "Canviada",
        "filter": "Filtrar",
        "none": "Cap incidència.",
        "description": "Descripció",
        "location": "Ubicació",
        "map": "Mapa",
        "outside": "fora del terme municipal",
        "photo": "Foto o vídeo",
        "pending": "encara no descarregat",
        "channel": "Canal",
        "conversation": "Conversa",
        "open311": "Open311",
        "not_forwarded": "no enviada",
        "error": "Error",
        "history": "Historial",
        "note": "Nota per al ciutadà",
        "change_status": "Canviar l'estat",
        "assign": "Assignar",
        "save": "Desar",
        "notified": "Es notifica al ciutadà pel canal que va fer servir.",
        "kind_created": "registrada",
        "kind_status": "canvi d'estat",
        "kind_assigned": "assignada",
        "kind_forwarded": "enviada al back office",
        "kind_forward_failed": "error en enviar-la",
        "kind_anonymised": "anonimitzada",
        "actor_citizen": "ciutadà",
        "actor_retention": "conservació de dades",
        "actor_system": "sistema",
    },
    "es": {
        "cases": "Incidencias",
        "reference": "Número",
        "status": "Estado",
        "all": "Todas",
        "category": "Categoría",
        "department": "Departamento",
        "created": "Creada",
        "updated": "Cambiada",
        "filter": "Filtrar",
        "none": "Ninguna incidencia.",
        "description": "Descripción",
        "location": "Ubicación",
        "map": "Mapa",
        "outside": "fuera del término municipal",
        "photo": "Foto o vídeo",
        "pending": "aún no descargado",
        "channel": "Canal",
        "conversation": "Conversación",
        "open311": "Open311",
        "not_forwarded": "no enviada",
        "error": "Error",
        "history": "Historial",
        "note": "Nota para el ciudadano",
        "change_status": "Cambiar el estado",
        "assign": "Asignar",
        "save": "Guardar",
        "notified": "Se notifica al ciudadano por el canal que usó.",
        "kind_created": "registrada",
        "kind_status": "cambio de estado",
        "kind_assigned": "asignada",
        "kind_forwarded": "enviada al back office",
        "kind_forward_failed": "error al enviarla",
        "kind_anonymised": "anonimizada",
        "actor_citizen": "ciudadano",
        "actor_retention": "conservación de datos",
        "actor_system": "sistema",
    },
    "en": {
        "cases": "Cases",
        "reference": "Reference",
        "status": "Status",
        "all": "All",
        "category": "Category",
        "department": "Department",
        "created": "Created",
        "updated": "Changed",
        "filter": "Filter",
        "none": "No cases.",
        "description": "Description",
        "location": "Location",
        "map": "Map",
        "outside": "outside the municipality",
        "photo": "Photo or video",
        "pending": "not downloaded yet",
        "channel": "Channel",
        "conversation": "Conversation",
        "open311": "Open311",
        "not_forwarded": "not sent",
        "error": "Error",
        "history": "History",
        "note": "Note for the citizen",
        "change_status": "Change the status",
        "assign": "Assign",
        "save": "Save",
        "notified": "The citizen is told on the channel they used.",
        "kind_created": "created",
        "kind_status": "status changed",
        "kind_assigned": "assigned",
        "kind_forwarded": "sent to the back office",
        "kind_forward_failed": "sending failed",
        "kind_anonymised": "anonymised",
        "actor_citizen": "citizen",
        "actor_retention": "retention",
        "actor_system": "system",
    },
}


_EN_STATUS = {
    CaseStatus.RECEIVED: "received",
    CaseStatus.IN_PROGRESS: "in progress",
    CaseStatus.RESOLVED: "resolved",
    CaseStatus.REJECTED: "rejected",
}
_EN_KIND = {
    CaseKind.INCIDENT: "incident",
    CaseKind.COMPLAINT: "complaint",
    CaseKind.SUGGESTION: "suggestion",
}


class CaseViews:
    """The case pages; ``services`` is the service's ``CaseServices``."""

    def __init__(self, console: Console, services: CaseServices) -> None:
        self.c = console
        self.services = services

    def _values(self, request: Request) -> dict[str, Any]:
        lang = self.c.language(request)
        lang = lang if lang in _LABELS else "ca"
        config = self.services.config

        # The city's own names: in the console's language when its cases configuration gives
        # them (an English console needs ``en:`` labels there), else in Catalan.
        fallback = (lang, "ca")

        def category(case_or_id: Case | str) -> str:
            cid = case_or_id if isinstance(case_or_id, str) else case_or_id.category
            found = config.category(cid)
            if found is None:
                return cid
            return next((str(found.labels[x]) for x in fallback if found.labels.get(x)), cid)

        def department(did: str | None) -> str:
            for dep in config.departments:
                if dep.id == did:
                    return next((str(dep.names[x]) for x in fallback if dep.names.get(x)), did)
            return did or "–"

        def status_name(status: CaseStatus | str, kind: CaseKind | None = None) -> str:
            if lang == "en":  # the cases package speaks to citizens: ca and es only
                return _EN_STATUS[CaseStatus(status)]
            return status_label(CaseStatus(status), lang, *((kind,) if kind is not None else ()))

        def kind_name(kind: CaseKind) -> str:
            return _EN_KIND[CaseKind(kind)] if lang == "en" else kind_label(kind, lang)

        return {
            "L": _LABELS[lang],
            "statuses": list(CaseStatus),
            "status_name": status_name,
            "kind_name": kind_name,
            "category_name": category,
            "department_name": department,
            "categories": config.categories,
            "departments": config.departments,
        }

    async def _case(self, request: Request, me: Principal) -> Case:
        case = await self.services.cases.get(request.path_params["reference"])
        if case is None or case.account not in me.account_names:
            raise Denied(404)  # another account's case does not exist for this operator
        return case

    async def list(self, request: Request, me: Principal) -> Response:
        status_raw = request.query_params.get("status", "")
        category = request.query_params.get("category", "") or None
        try:
            status = CaseStatus(status_raw) if status_raw else None
        except ValueError:
            raise Denied(400, "invalid") from None
        found: list[Case] = []
        for account in sorted(me.account_names):
            found.extend(
                await self.services.cases.list_cases(
                    status=status, category=category, account=account, limit=200
                )
            )
        found.sort(key=lambda c: (c.created_at, c.reference), reverse=True)
        return self.c.render(
            request,
            "cases.html",
            me,
            cases=found[:200],
            status_filter=status_raw,
            category_filter=category or "",
            **self._values(request),
        )

    async def page(self, request: Request, me: Principal) -> Response:
        case = await self._case(request, me)
        values = self._values(request)
        labels: Mapping[str, str] = values["L"]
        names: dict[str, str] = {}
        async with self.c.ctx.store.read_transaction() as tx:
            conversation = (
                await assignment_queries(tx).citizen_conversation(
                    case.channel, case.account, case.citizen_id
                )
                if case.citizen_id
                else None
            )
            for change in case.history:
                actor = change.actor
                if actor in names:
                    continue
                if actor.startswith("operator:") and actor[9:].isdigit():
                    operator = await tx.operators.get_operator(int(actor[9:]))
                    # Only a colleague of this operator's accounts is named; others stay a number.
                    if operator is not None and any(
                        a.member_of(operator.account) for a in me.accounts
                    ):
                        names[actor] = operator.name
                        continue
                names[actor] = labels.get(f"actor_{actor}", actor)

        def history_kind(kind: str) -> str:
            return labels.get(f"kind_{kind}", kind)

        return self.c.render(
            request,
            "cases_case.html",
            me,
            case=case,
            conversation=conversation,
            actor_name=names,
            history_kind=history_kind,
            **values,
        )

    async def change_status(self, request: Request, me: Principal) -> Response:
        case = await self._case(request, me)
        form = await self.c.form(request)
        try:
            status = CaseStatus(field(form, "status", max_length=32))
        except ValueError:
            raise Denied(400, "invalid") from None
        note = field(form, "note", max_length=1000)
        try:
            await self.services.change_status(
                case.reference, status, note=note, actor=f"operator:{me.id}"
            )
        except CaseNotFoundError:
            raise Denied(404) from None
        return RedirectResponse(f"/console/cases/{case.reference}", 303)

    async def assign(self, request: Request, me: Principal) -> Response:
        case = await self._case(request, me)
        form = await self.c.form(request)
        department = field(form, "department", max_length=64)
        note = field(form, "note", max_length=1000)
        try:
            await self.services.assign(
                case.reference, department, note=note, actor=f"operator:{me.id}"
            )
        except ConfigError:
            raise Denied(400, "invalid") from None
        except CaseNotFoundError:
            raise Denied(404) from None
        return RedirectResponse(f"/console/cases/{case.reference}", 303)

    async def media(self, request: Request, me: Principal) -> Response:
        case = await self._case(request, me)
        found = await self.services.media_bytes(case, request.path_params["index"])
        if found is None:
            raise Denied(404, "media_pending")
        data, mime = found
        inline = mime.startswith(("image/", "video/"))
        headers = {
            "Content-Disposition": "inline" if inline else "attachment",
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        }
        return Response(
            data, media_type=mime if inline else "application/octet-stream", headers=headers
        )


def case_routes(console: Console) -> list[BaseRoute]:
    """The case routes, or none when the service keeps no cases (``ctx.cases`` is None)."""
    services = getattr(console.ctx, "cases", None)
    if services is None:
        return []
    views = CaseViews(console, services)
    g = console.guard
    one = "/console/cases/{reference}"
    return [
        Route("/console/cases", g(views.list), methods=["GET"]),
        Route(one, g(views.page), methods=["GET"]),
        Route(f"{one}/status", g(views.change_status), methods=["POST"]),
        Route(f"{one}/assign", g(views.assign), methods=["POST"]),
        Route(f"{one}/media/{{index:int}}", g(views.media), methods=["GET"]),
    ]
