"""How the Mataró content speaks to one citizen: as «tu», the same in every message.

The web chat showed the closed-office message («una persona us respondrà», «le responderá...
envíe») next to keyword answers that say «envia», «te responderemos»: one conversation, two
registers. It also told web chat citizens to tap a paper clip the web chat does not have.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

MATARO = Path(__file__).resolve().parents[2] / "examples" / "mataro"
# Forms that address the citizen as «vós»/«vostè» (ca) or «usted» (es) in a one-to-one message.
FORMAL = {
    "ca": re.compile(r"\bus (?:respondrà|atendrà|trucarem|escriurà)\b"),
    "es": re.compile(r"\b(?:le (?:responderá|atenderá)|envíe|escriba|consulte)\b"),
}


def _texts(node: Any) -> list[tuple[str, str]]:
    """Every (language, text) under ``node``, found by the ca/es keys that hold them."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("ca", "es") and isinstance(value, str):
                found.append((key, value))
            else:
                found.extend(_texts(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_texts(item))
    return found


def _load(name: str) -> Any:
    with (MATARO / name).open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def test_messages_to_the_citizen_use_one_register() -> None:
    texts = [
        t
        for name in ("templates.yaml", "catalog.yaml", "canned_responses.yaml")
        for t in _texts(_load(name))
    ]
    assert len(texts) > 200
    formal = [(lang, text[:80]) for lang, text in texts if FORMAL[lang].search(text)]
    assert formal == []


def test_the_closed_office_message_speaks_as_the_keyword_answers_do() -> None:
    closed = _load("templates.yaml")["templates"]["out_of_hours"]["text"]
    assert "et respondrà" in closed["ca"]
    assert "te responderá" in closed["es"]
    assert "envía PALABRAS CLAVE" in closed["es"]


def test_no_answer_points_at_a_paper_clip_only_some_channels_have() -> None:
    texts = _texts(_load("catalog.yaml"))
    assert [t[:60] for _, t in texts if "📎" in t] == []
