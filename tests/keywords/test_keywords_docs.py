"""The Python examples of docs/keywords.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL)


def test_the_keywords_page_example_runs() -> None:
    blocks = python_blocks(DOCS / "keywords.md")
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/keywords.md", "exec"), {})
