"""The citizen-facing sentences of the cases package, in Catalan and Spanish.

Each text is a :meth:`str.format` pattern. :func:`say` picks the language (Catalan when the
language is neither ``ca`` nor ``es``).
"""

from __future__ import annotations

from civicchat.cases.models import CaseKind, CaseStatus

__all__ = ["TEXTS", "kind_label", "say", "status_label", "supported_language"]

TEXTS: dict[str, dict[str, str]] = {
    "ask_category": {
        "ca": "D'acord, registrem {a_kind}. Quin tipus de problema és?",
        "es": "De acuerdo, registramos {a_kind}. ¿Qué tipo de problema es?",
    },
    "ask_category_again": {
        "ca": "No he entès la categoria. Tria una de les opcions o escriu-ne el número:",
        "es": "No he entendido la categoría. Elige una de las opciones o escribe su número:",
    },
    "got_location": {
        "ca": "Tinc la ubicació. Ara, quin tipus de problema és?",
        "es": "Tengo la ubicación. Ahora, ¿qué tipo de problema es?",
    },
    "list_button": {"ca": "Categories", "es": "Categorías"},
    "ask_description": {
        "ca": "Explica'ns breument què passa.",
        "es": "Explícanos brevemente qué ocurre.",
    },
    "ask_description_again": {
        "ca": "Necessito una descripció escrita, encara que sigui curta. Què passa?",
        "es": "Necesito una descripción escrita, aunque sea corta. ¿Qué ocurre?",
    },
    "ask_media": {
        "ca": "Si vols, envia una foto o un vídeo del problema. Si no en tens, respon «no».",
        "es": "Si quieres, envía una foto o un vídeo del problema. Si no tienes, responde «no».",
    },
    "ask_media_again": {
        "ca": "Només puc afegir una foto o un vídeo en aquest pas; l'adreça te la demano després. Envia'n un o respon «no» per continuar sense foto.",
        "es": "Solo puedo añadir una foto o un vídeo en este paso; la dirección te la pido después. Envía uno o responde «no» para seguir sin foto.",
    },
    "skip_media": {"ca": "Sense foto", "es": "Sin foto"},
    "ask_location": {
        "ca": "On és? Comparteix la ubicació o escriu l'adreça. Si no ho saps, respon «no ho sé».",
        "es": "¿Dónde está? Comparte la ubicación o escribe la dirección. Si no lo sabes, responde «no lo sé».",
    },
    "ask_location_again": {
        "ca": "No he entès la ubicació. Comparteix-la amb el clip 📎, escriu l'adreça o respon «no ho sé».",
        "es": "No he entendido la ubicación. Compártela con el clip 📎, escribe la dirección o responde «no lo sé».",
    },
    "ask_outside": {
        "ca": "Aquest punt sembla fora de {town}. És correcte?",
        "es": "Este punto parece fuera de {town}. ¿Es correcto?",
    },
    "ask_outside_again": {
        "ca": "Respon «sí» si el punt és correcte o «no» per indicar-ne un altre.",
        "es": "Responde «sí» si el punto es correcto o «no» para indicar otro.",
    },
    "outside_retry": {
        "ca": "D'acord. Envia'ns la ubicació correcta o escriu l'adreça.",
        "es": "De acuerdo. Envíanos la ubicación correcta o escribe la dirección.",
    },
    "confirm": {
        "ca": "Revisa-ho, si us plau:\n{summary}\n\nL'enviem?",
        "es": "Revísalo, por favor:\n{summary}\n\n¿Lo enviamos?",
    },
    "confirm_again": {
        "ca": "Respon «sí» per enviar-ho o «no» per descartar-ho.",
        "es": "Responde «sí» para enviarlo o «no» para descartarlo.",
    },
    "summary": {
        "ca": "• Categoria: {category}\n• Descripció: {description}\n• Foto o vídeo: {media}\n• Ubicació: {location}",
        "es": "• Categoría: {category}\n• Descripción: {description}\n• Foto o vídeo: {media}\n• Ubicación: {location}",
    },
    "media_yes": {"ca": "sí ({count})", "es": "sí ({count})"},
    "media_no": {"ca": "no", "es": "no"},
    "location_unknown": {"ca": "no indicada", "es": "no indicada"},
    "yes": {"ca": "Sí", "es": "Sí"},
    "no": {"ca": "No", "es": "No"},
    "created": {
        "ca": "Gràcies! Hem registrat {your_kind} amb el número {reference}. Per saber-ne l'estat, escriu «estat {reference}».",
        "es": "¡Gracias! Hemos registrado {your_kind} con el número {reference}. Para saber su estado, escribe «estado {reference}».",
    },
    "cancelled": {
        "ca": "D'acord, he cancel·lat {the_kind}. Si vols, pots tornar a començar quan vulguis.",
        "es": "De acuerdo, he cancelado {the_kind}. Puedes volver a empezar cuando quieras.",
    },
    "discarded": {
        "ca": "D'acord, no l'enviem. Si vols, pots tornar a començar quan vulguis.",
        "es": "De acuerdo, no la enviamos. Puedes volver a empezar cuando quieras.",
    },
    "cancel_hint": {
        "ca": "Per deixar-ho, escriu «cancel·lar».",
        "es": "Para dejarlo, escribe «cancelar».",
    },
    "left": {
        "ca": "D'acord, deixem {the_kind} aquí. Per tornar a començar, escriu «{kind}».",
        "es": "De acuerdo, dejamos {the_kind} aquí. Para volver a empezar, escribe «{kind}».",
    },
    "paused": {
        "ca": "D'acord, deixem {the_kind} en pausa: guardem el que ja ens has enviat. Per continuar, escriu «{kind}»; per deixar-ho, «cancel·lar».",
        "es": "De acuerdo, dejamos {the_kind} en pausa: guardamos lo que ya nos has enviado. Para seguir, escribe «{kind}»; para dejarlo, «cancelar».",
    },
    "nothing_to_cancel": {
        "ca": "No hi ha cap {kind} en curs.",
        "es": "No hay ninguna {kind} en curso.",
    },
    "resume": {
        "ca": "Continuem amb {your_kind}.",
        "es": "Seguimos con {your_kind}.",
    },
    "expired": {
        "ca": "{The_kind} que havies començat ha caducat i no s'ha enviat. Si encara cal, torna a començar escrivint «incidència».",
        "es": "{The_kind} que habías empezado ha caducado y no se ha enviado. Si aún es necesario, vuelve a empezar escribiendo «incidencia».",
    },
    "status": {
        "ca": "{The_kind} {reference} ({category}) està {status}.",
        "es": "{The_kind} {reference} ({category}) está {status}.",
    },
    "status_note": {"ca": "Nota: {note}", "es": "Nota: {note}"},
    "status_unknown": {
        "ca": "No trobo cap cas amb el número {reference}. Revisa'l, si us plau.",
        "es": "No encuentro ningún caso con el número {reference}. Revísalo, por favor.",
    },
    "status_bad_reference": {
        "ca": "Per consultar un cas, escriu «estat» i el número, per exemple «estat {example}».",
        "es": "Para consultar un caso, escribe «estado» y el número, por ejemplo «estado {example}».",
    },
    "status_changed": {
        "ca": "{Your_kind} {reference} ara està {status}.",
        "es": "{Your_kind} {reference} ahora está {status}.",
    },
}

# (feminine, masculine): Catalan "la incidència rebuda" but "el suggeriment rebut".
_STATUS = {
    CaseStatus.RECEIVED: {"ca": ("rebuda", "rebut"), "es": ("recibida", "recibido")},
    CaseStatus.IN_PROGRESS: {"ca": ("en curs", "en curs"), "es": ("en curso", "en curso")},
    CaseStatus.RESOLVED: {"ca": ("resolta", "resolt"), "es": ("resuelta", "resuelto")},
    CaseStatus.REJECTED: {"ca": ("rebutjada", "rebutjat"), "es": ("rechazada", "rechazado")},
}

# Forms of each kind: bare noun, "a ...", "the ...", "your ...", and whether it is masculine.
_KIND: dict[CaseKind, dict[str, tuple[str, str, str, str, bool]]] = {
    CaseKind.INCIDENT: {
        "ca": ("incidència", "una incidència", "la incidència", "la teva incidència", False),
        "es": ("incidencia", "una incidencia", "la incidencia", "tu incidencia", False),
    },
    CaseKind.COMPLAINT: {
        "ca": ("queixa", "una queixa", "la queixa", "la teva queixa", False),
        "es": ("queja", "una queja", "la queja", "tu queja", False),
    },
    CaseKind.SUGGESTION: {
        "ca": ("suggeriment", "un suggeriment", "el suggeriment", "el teu suggeriment", True),
        "es": ("sugerencia", "una sugerencia", "la sugerencia", "tu sugerencia", False),
    },
}

_FORM = {"noun": 0, "a": 1, "the": 2, "your": 3}


def supported_language(language: str | None) -> str:
    """``ca`` or ``es``; anything else (or None) falls back to Catalan."""
    code = (language or "").lower()[:2]
    return code if code in ("ca", "es") else "ca"


def say(key: str, language: str | None, *, kind: CaseKind | None = None, **values: object) -> str:
    """The text ``key`` in ``language`` with ``values`` filled in.

    With ``kind``, the placeholders ``{kind}`` (the bare noun, "incidència"), ``{a_kind}``,
    ``{the_kind}``, ``{your_kind}`` (and their capitalised ``{The_kind}``, ``{Your_kind}``) are
    filled with the right article and gender.

    >>> say("left", "es", kind=CaseKind.COMPLAINT)
    'De acuerdo, dejamos la queja aquí. Para volver a empezar, escribe «queja».'
    """
    if kind is not None:
        values.setdefault("kind", kind_label(kind, language))
        for form in ("a", "the", "your"):
            text = kind_label(kind, language, form)
            values.setdefault(f"{form}_kind", text)
            values.setdefault(f"{form.capitalize()}_kind", text[:1].upper() + text[1:])
    return TEXTS[key][supported_language(language)].format(**values)


def status_label(
    status: CaseStatus, language: str | None, kind: CaseKind = CaseKind.INCIDENT
) -> str:
    """The status as an adjective agreeing with the kind (``rebuda``, ``rebut``...)."""
    lang = supported_language(language)
    feminine, masculine = _STATUS[status][lang]
    return masculine if _KIND[kind][lang][4] else feminine


def kind_label(kind: CaseKind, language: str | None, form: str = "noun") -> str:
    """The kind as a noun; ``form`` is ``noun``, ``a``, ``the`` or ``your``."""
    value = _KIND[kind][supported_language(language)][_FORM[form]]
    assert isinstance(value, str)
    return value
