from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from civicchat.cli import main
from civicchat.cli.keywords import chat, match_lines
from civicchat.keywords import KeywordEngine

SMALL_CATALOG = Path(__file__).parent / "small_catalog.yaml"


def test_check_summarises_a_valid_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keywords", "check", str(SMALL_CATALOG)]) == 0
    out = capsys.readouterr().out
    assert "keywords: 9" in out
    assert "aliases [ca]: 26" in out
    assert "aliases [es]: 22" in out
    assert "transport (Transport): 3" in out


def test_check_fails_with_the_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("languages: [ca]\nkeywords:\n  - id: x\n    topic: t\n", encoding="utf-8")
    assert main(["keywords", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3 [keyword x]: 'aliases' is missing" in err
    assert main(["keywords", "check", str(tmp_path / "missing.yaml")]) == 1


def test_match_lines_writes_one_json_object_per_line(engine: KeywordEngine) -> None:
    out = io.StringIO()
    count = match_lines(engine, ["horari del bus\n", "hola\n", "autobuses\r\n", "\n"], out, None)
    assert count == 4
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert records[0] == {
        "text": "horari del bus",
        "keyword": "bus",
        "language": "ca",
        "score": 100.0,
        "alias": "horari del bus",
    }
    assert records[1] == {
        "text": "hola",
        "keyword": None,
        "language": None,
        "score": 0,
        "alias": None,
    }
    assert records[2]["keyword"] == "bus"
    assert records[2]["language"] == "es"
    assert records[3]["keyword"] is None


def test_match_command_reads_stdin_in_order() -> None:
    lines = ["bus", "tres", "on és la deixalleria?", "\udcff broken", "palabras clave"] * 2000
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "civicchat", "keywords", "match", str(SMALL_CATALOG)],
        input=data,
        capture_output=True,
        check=True,
    )
    elapsed = time.perf_counter() - start
    records = [json.loads(line) for line in done.stdout.decode("utf-8").splitlines()]
    assert len(records) == 10_000
    assert [r["keyword"] for r in records[:5]] == ["bus", None, "deixalleria", None, None]
    assert elapsed < 10  # "a couple of seconds", with generous room for a loaded CI machine


def test_chat_answers_offers_buttons_and_hands_over(engine: KeywordEngine) -> None:
    out = io.StringIO()
    chat(
        engine,
        ["autobuses\n", "1\n", "vull parlar amb algú\n", "¿y el tren?\n", "", "bus\n"],
        out,
    )
    text = out.getvalue()
    assert "Líneas y horarios del bus urbano" in text
    assert "[1] Bus nocturno" in text
    assert "El bus nocturno sale cada hora" in text  # the button was pressed
    assert "(→ una persona del 010 respondria aquest missatge)" in text
    assert "Horarios de Cercanías R1" in text
    assert text.count("Línies i horaris") == 0  # the empty line ended the chat


def test_chat_hands_over_in_the_detected_language(engine: KeywordEngine) -> None:
    out = io.StringIO()
    chat(engine, ["quiero hablar con alguien\n"], out)
    assert "(→ una persona del 010 respondería este mensaje)" in out.getvalue()


def test_chat_command_ends_on_eof() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "civicchat", "keywords", "chat", str(SMALL_CATALOG)],
        input=b"paraules clau transport\ngrua\n",
        capture_output=True,
        check=True,
        timeout=60,
    )
    out = done.stdout.decode("utf-8")
    assert "*Transport*" in out
    assert "📍 Dipòsit municipal" in out
