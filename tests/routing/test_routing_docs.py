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
    assert len(blocks) == 1
    out = io.StringIO()
    monkeypatch.chdir(ROOT)
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "docs/routing.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "queued"
    assert "Tornem a obrir dilluns a les 8:00" in lines[1]
    assert lines[2] == "assigned anna"
    assert lines[3] == "template True"
