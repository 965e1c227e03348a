"""The Python examples of docs/keywords.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

from civicchat.keywords import parse_catalog

DOCS = Path(__file__).resolve().parents[2] / "docs"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL)


def test_the_keywords_page_example_runs() -> None:
    blocks = python_blocks(DOCS / "keywords.md")
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/keywords.md", "exec"), {})


def test_the_catalog_page_base_shape_is_a_valid_catalog() -> None:
    page = (DOCS / "catalog.md").read_text(encoding="utf-8")
    first_yaml = re.findall(r"```yaml\n(.*?)```", page, re.DOTALL)[0]
    catalog = parse_catalog(first_yaml, source="docs/catalog.md")
    assert [kw.id for kw in catalog.keywords] == ["bus"]
