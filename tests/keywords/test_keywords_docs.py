"""The Python examples of docs/keywords.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from civicchat.keywords import KeywordEngine, parse_catalog

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


def test_the_catalog_page_python_example_runs_and_prints_what_it_says(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(DOCS.parent)
    blocks = python_blocks(DOCS / "catalog.md")
    assert len(blocks) == 1
    exec(compile(blocks[0], "docs/catalog.md", "exec"), {})
    assert capsys.readouterr().out.split() == ["buttons", "document", "3"]


def test_the_catalog_page_texts_example_is_a_valid_catalog_part() -> None:
    page = (DOCS / "catalog.md").read_text(encoding="utf-8")
    (texts,) = [b for b in re.findall(r"```yaml\n(.*?)```", page, re.DOTALL) if "texts:" in b]
    base = re.findall(r"```yaml\n(.*?)```", page, re.DOTALL)[0]
    catalog = parse_catalog(texts + base, source="docs/catalog.md")
    assert catalog.text("did_you_mean", "es") == "¿Querías decir...?"


def test_the_catalog_page_to_person_example_is_a_valid_catalog_part() -> None:
    page = (DOCS / "catalog.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", page, re.DOTALL)
    (to_person,) = [b for b in blocks if b.startswith("to_person:")]
    catalog = parse_catalog(to_person + blocks[0], source="docs/catalog.md")
    assert catalog.to_person["es"] == ("quiero al gestor", "hablar con el 010")
    engine = KeywordEngine(catalog)
    assert engine.answer("Quiero al gestor del autobús") is None
    assert engine.answer("autobús") is not None
