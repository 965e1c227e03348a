from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cases.md"


@pytest.mark.parametrize(
    "section",
    [
        "## A complete run",
        "### Another question instead of a category",
        "### Which category an answer names",
        "## On SQLite or PostgreSQL",
    ],
)
def test_the_documented_example_runs_and_prints_what_the_page_says(
    section: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The first ```python block after the heading, and the ```text block of what it prints.
    text = DOC.read_text(encoding="utf-8")
    rest = text[text.index(section) :]
    code = re.search(r"```python\n(.*?)```", rest, re.S)
    expected = re.search(r"```text\n(.*?)```", rest, re.S)
    assert code is not None
    assert expected is not None
    assert code.start() < expected.start()
    monkeypatch.chdir(ROOT)
    exec(compile(code.group(1), str(DOC), "exec"), {"__name__": "docs_cases"})
    printed = capsys.readouterr().out
    for line in expected.group(1).strip().splitlines():
        assert line in printed, line
