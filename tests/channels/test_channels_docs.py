import doctest
import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "channels.md"


def test_the_example_in_docs_channels_runs(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    example = next(b for b in blocks if "asyncio.run(main())" in b)
    exec(compile(example, str(DOC), "exec"), {"__name__": "docs_channels"})
    assert capsys.readouterr().out.splitlines() == ["200 mataro bus", "wamid.OUT1", "wamid.OUT1"]


@pytest.mark.parametrize("module", ["base", "degrade", "fake", "whatsapp"])
def test_docstring_examples_run(module: str) -> None:
    imported = importlib.import_module(f"civicchat.channels.{module}")
    failures, tried = doctest.testmod(imported, optionflags=doctest.ELLIPSIS)
    assert tried > 0
    assert failures == 0


def test_the_media_header_example_in_docs_channels_prints_what_it_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    example = next(b for b in blocks if "button_media" in b or "media=plan" in b)
    exec(compile(example, str(DOC), "exec"), {"__name__": "docs_channels"})
    assert capsys.readouterr().out.splitlines() == ["1", "['media', 'buttons']", "1. Tren"]
    # The comments in the example say the same.
    assert "# 1: as it is" in example
    assert "# ['media', 'buttons']" in example
    assert "# 1. Tren" in example
