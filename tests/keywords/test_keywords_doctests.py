"""The examples in the keyword modules' docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    ["catalog", "engine", "language", "matcher", "normalize", "replies", "to_person"],
)
def test_module_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"civicchat.keywords.{module}"))
    assert result.attempted > 0
    assert result.failed == 0
