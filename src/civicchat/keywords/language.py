"""Catalan or Spanish? Decided from the message, then the conversation, then a default.

Routing and the operator console use :func:`detect_language` too, so it only needs the text::

    >>> detect_language("On és la deixalleria?")
    'ca'
    >>> detect_language("¿Dónde está el ayuntamiento?")
    'es'
    >>> detect_language("ok", previous="es")
    'es'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from civicchat.keywords.normalize import normalize

__all__ = ["decide_language", "detect_language", "language_evidence", "typical_words"]

# Normalised words that (almost) only one of the two languages uses. Words both use ("de",
# "la", "que", "hola", "bus") say nothing and are absent.
_CA_TEXT = """
    amb als dels pel pels els les meu meva seu seva aquest aquesta aquests aquestes aqui
    avui dema dilluns dimarts dimecres dijous divendres dissabte diumenge quin quina quins quines
    quan on com perque vull voldria volia puc pots podeu tinc teniu bon bona bones
    nit tarda mati gracies merci sisplau plau siusplau tambe molt fins obert oberta tancat
    tancada horari horaris hi ho fa fara pot cal aixo allo alguna algun
    cap gaire ara ahir dir saber informacio ajuntament carrer cotxe platja escola deixalleria
    recollida escombraries brossa mobles vehicle grua cita previa padro empadronament certificat
    tramit tramits oficina ciutadana ciutada feina llum aigua biblioteca biblioteques casal festa
    festes major temps qui uns unes doncs pagar rebut impost impostos multa multes
    voreres vorera fanal soroll queixa via publica neteja parc parcs sortida arribada bitllet
    paraules paraula clau
"""
_ES_TEXT = """
    los las con por para mi mis su sus este estos estas aqui hoy manana lunes martes
    miercoles jueves viernes sabado domingo cual cuales cuando donde como porque quiero queria
    quisiera puedo puede pueden tengo tienen buenos buenas dias noche noches tardes
    gracias favor porfa tambien muy hasta abierto abierta cerrado cerrada horario horarios hay
    eso algo algun alguna ningun ayer decir saber informacion ayuntamiento calle
    coche playa escuela basura recogida muebles grua cita previa padron empadronamiento
    certificado tramite tramites oficina ciudadana ciudadano trabajo luz agua biblioteca
    bibliotecas fiesta fiestas mayor tiempo quien y entonces pagar recibo impuesto multa
    multas aceras acera farola ruido queja via publica limpieza parque parques salida llegada
    billete palabras palabra clave
"""
_CA_WORDS = frozenset(_CA_TEXT.split())
_ES_WORDS = frozenset(_ES_TEXT.split())
# Words both lists hold (after accent folding) are ambiguous: drop them from both.
_SHARED = _CA_WORDS & _ES_WORDS
_CA_ONLY = _CA_WORDS - _SHARED
_ES_ONLY = _ES_WORDS - _SHARED


def typical_words(language: str) -> frozenset[str]:
    """The normalised words that (almost) only ``language`` uses ("ca", "es"; empty for others).

    >>> "quin" in typical_words("ca"), "quin" in typical_words("es")
    (True, False)
    """
    return {"ca": _CA_ONLY, "es": _ES_ONLY}.get(language, frozenset())


def language_evidence(text: str, *, words: Iterable[str] | None = None) -> dict[str, float]:
    """Evidence for ``ca`` and ``es`` in ``text``: higher means more likely.

    Letters only one language writes weigh most (``ç``, ``l·l``, ``à`` ``è`` ``ò``, ``ï`` in
    Catalan; ``ñ``, ``¿``, ``¡`` in Spanish), then words only one language uses, then word
    endings (``-ció`` / ``-ción``). ``words`` are the normalised words, if already computed.
    """
    ca = 0.0
    es = 0.0
    raw = text[:2000].casefold()
    if not raw.isascii():
        ca += 2.0 * sum(raw.count(c) for c in "çàèòï·•")
        es += 2.0 * sum(raw.count(c) for c in "ñ¿¡")
    tokens = list(words) if words is not None else normalize(raw).split()
    for token in tokens[:200]:
        if token in _CA_ONLY:
            ca += 1.0
        elif token in _ES_ONLY:
            es += 1.0
        elif len(token) > 4:
            if token.endswith(("cion", "ciones")):
                es += 0.5
            elif token.endswith(("cio", "cions")):
                ca += 0.5
            elif token.endswith(("ny", "tx", "ig")) or "ix" in token or "ny" in token:
                ca += 0.25
    return {"ca": ca, "es": es}


def _base_language(code: str | None) -> str | None:
    if not code:
        return None
    return code.replace("_", "-").split("-", 1)[0].strip().lower() or None


def decide_language(
    scores: Mapping[str, float],
    *,
    previous: str | None = None,
    default: str = "ca",
    hint: str | None = None,
    languages: Iterable[str] = ("ca", "es"),
) -> str:
    """Pick a language from evidence ``scores``, else ``previous``, ``hint``, ``default``."""
    allowed = tuple(languages)
    if scores:
        best = max(scores, key=lambda lang: scores[lang])
        decisive = all(scores[best] > scores[other] for other in scores if other != best)
        if scores[best] > 0 and decisive and best in allowed:
            return best
    for candidate in (_base_language(previous), _base_language(hint), _base_language(default)):
        if candidate and (not allowed or candidate in allowed):
            return candidate
    return allowed[0] if allowed else default


def detect_language(
    text: str,
    *,
    previous: str | None = None,
    default: str = "ca",
    hint: str | None = None,
    languages: Iterable[str] = ("ca", "es"),
) -> str:
    """The language to answer ``text`` in: ``"ca"`` or ``"es"`` (or one of ``languages``).

    The message decides when it holds evidence (see :func:`language_evidence`); otherwise the
    conversation's ``previous`` language, then ``hint`` (a client's language such as Telegram's
    ``language_code`` ``"es-ES"``), then ``default``. Never raises.
    """
    value: object = text
    scores = language_evidence(value) if isinstance(value, str) else {}
    return decide_language(
        scores, previous=previous, default=default, hint=hint, languages=languages
    )
