"""What to tell a citizen when their case changes status, in Catalan or Spanish.

The lead's sender decides how to deliver it: as free text inside WhatsApp's 24-hour window (or
on any other channel), as the approved template outside it::

    note = status_notification(case, config=config)
    content = note.as_text() if window_open else note.as_template()

The template (``status_template`` in the configuration, ``case_status_update`` for Mataró) has
three body parameters: ``{{1}}`` the reference, ``{{2}}`` the new status, ``{{3}}`` the note (or
"-"). Suggested wording to submit for approval, Catalan: "La teva sol·licitud {{1}} ara està
{{2}}. {{3}}"; Spanish: "Tu solicitud {{1}} ahora está {{2}}. {{3}}".
"""

from __future__ import annotations

from dataclasses import dataclass

from civicchat.cases.config import CasesConfig
from civicchat.cases.models import Case, CaseStatus
from civicchat.cases.texts import say, status_label, supported_language
from civicchat.messages import Template, TemplateParameter, Text

__all__ = ["CitizenNotification", "status_notification"]

# Template parameters are single-line and bounded: WhatsApp refuses newlines, tabs and 4+ spaces.
_PARAMETER_MAX = 200


def _one_line(text: str, limit: int = _PARAMETER_MAX) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class CitizenNotification:
    """A status change, ready to send as free text or as a template."""

    reference: str
    status: CaseStatus
    language: str
    text: str
    template_name: str
    template_parameters: tuple[str, ...]

    def as_text(self) -> Text:
        """The free-form message (inside the 24-hour window, and on every other channel)."""
        return Text(body=self.text)

    def as_template(self) -> Template:
        """The template message, with the free text as fallback for channels without templates."""
        return Template(
            name=self.template_name,
            language=self.language,
            body_parameters=tuple(TemplateParameter(text=p) for p in self.template_parameters),
            fallback_text=self.text,
        )


def status_notification(
    case: Case, *, config: CasesConfig, language: str | None = None, note: str | None = None
) -> CitizenNotification:
    """The notification for the case's current status, in the language the citizen used.

    ``note`` defaults to the note of the last status change (the operator's or the back
    office's words); pass ``""`` to send none.
    """
    lang = supported_language(language or case.language)
    if note is None:
        changes = [c for c in case.history if c.status is not None]
        note = changes[-1].note if changes else ""
    status = status_label(case.status, lang, case.kind)
    text = say("status_changed", lang, kind=case.kind, reference=case.reference, status=status)
    if note:
        text = f"{text}\n{say('status_note', lang, note=note)}"
    return CitizenNotification(
        reference=case.reference,
        status=case.status,
        language=lang,
        text=text,
        template_name=config.status_template,
        template_parameters=(case.reference, status, _one_line(note) if note else "-"),
    )
