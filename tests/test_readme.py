"""The README's library example runs as written and prints the Spanish bus reply."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", readme, re.DOTALL | re.MULTILINE)


def test_the_readme_has_one_python_example() -> None:
    assert len(_python_blocks()) == 1


def test_the_readme_example_prints_the_spanish_bus_reply(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (code,) = _python_blocks()
    monkeypatch.chdir(ROOT)  # the example names examples/mataro/catalog.yaml from the root
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    # The expected text is read from the catalog, not copied here: the 010 may reword it.
    catalog = yaml.safe_load((ROOT / "examples/mataro/catalog.yaml").read_text(encoding="utf-8"))
    (bus,) = [kw for kw in catalog["keywords"] if kw["id"] == "bus"]
    # Every keyword answer ends with the catalog's hint that a person answers other questions.
    hint = catalog["texts"]["human_hint"]["es"]
    assert printed == f"es {bus['reply']['es']}\n\n{hint}\n"
    assert "autobús urbano" in printed  # Spanish, not the Catalan "bus urbà"
