"""The example in docs/routing.md runs and prints what it says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_docs_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "routing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 2
    out = io.StringIO()
    monkeypatch.chdir(ROOT)
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[1], "docs/routing.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "queued"
    assert "Tornem a obrir dilluns a les 8:00" in lines[1]
    assert lines[2] == "assigned anna"
    assert lines[3] == "template True"


def test_the_known_language_example_prints_what_it_says() -> None:
    text = (ROOT / "docs" / "routing.md").read_text(encoding="utf-8")
    block = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "docs/routing.md", "exec"), {})
    printed = out.getvalue().splitlines()
    said = re.findall(r"# (\w+):", block)
    assert printed == said == ["es", "ca", "None"]
