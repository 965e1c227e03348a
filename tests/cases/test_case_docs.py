from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cases.md"


def test_the_documented_example_runs_and_prints_what_the_page_says(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DOC.read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S)
    expected = re.search(r"```text\n(.*?)```", text, re.S)
    assert code is not None
    assert expected is not None
    monkeypatch.chdir(ROOT)
    exec(compile(code.group(1), str(DOC), "exec"), {"__name__": "docs_cases"})
    printed = capsys.readouterr().out
    for line in expected.group(1).strip().splitlines():
        assert line in printed, line


def test_the_sql_store_example_runs_and_prints_what_the_page_says(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## On SQLite or PostgreSQL") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    expected = re.search(r"```text\n(.*?)```", section, re.S)
    assert code is not None
    assert expected is not None
    monkeypatch.chdir(ROOT)
    exec(compile(code.group(1), str(DOC), "exec"), {"__name__": "docs_cases_sql"})
    printed = capsys.readouterr().out
    for line in expected.group(1).strip().splitlines():
        assert line in printed, line
