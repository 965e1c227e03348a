from __future__ import annotations

from pathlib import Path

import pytest

from civicchat.cases.config import CasesConfig, load_cases_config
from civicchat.exceptions import ConfigError


def test_the_mataro_example_loads(mataro_config: CasesConfig) -> None:
    assert mataro_config.reference_prefix == "MTR"
    assert len(mataro_config.categories) == 9
    assert all(c.service_code for c in mataro_config.categories)
    assert mataro_config.boundary is not None
    assert mataro_config.boundary.approximate
    assert 8 <= len(mataro_config.boundary.points) <= 12
    assert mataro_config.expiry.total_seconds() == 24 * 3600
    assert mataro_config.category("parcs") is not None
    assert mataro_config.category("nope") is None
    # Every label fits a WhatsApp list row (at most 24 characters) and a list holds them all.
    assert len(mataro_config.categories) <= 10
    for category in mataro_config.categories:
        for label in category.labels.values():
            assert len(label) <= 24, label


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cases.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        ("categories: [{id: a, labels: {ca: A}}]", "needs a name in es"),
        (
            "categories: [{id: a, labels: {ca: A, es: A}, department: obres}]",
            "names department 'obres'",
        ),
        (
            "categories: [{id: a, labels: {ca: A, es: A}}, {id: a, labels: {ca: B, es: B}}]",
            "repeated: a",
        ),
        ("categories: []", "categories"),
        (
            "reference_prefix: mtr\ncategories: [{id: a, labels: {ca: A, es: A}}]",
            "reference_prefix",
        ),
        ("timezone: Mars/Base\ncategories: [{id: a, labels: {ca: A, es: A}}]", "unknown time zone"),
        (
            "resume_after_minutes: 1500\ncategories: [{id: a, labels: {ca: A, es: A}}]",
            "shorter than expiry_hours",
        ),
        (
            "categories: [{id: a, labels: {ca: A, es: A}}]\nboundary: {points: [[1, 1], [2, 2]]}",
            "boundary",
        ),
        ("- just\n- a list", "mapping at the top level"),
        ("categories: [unclosed", "not valid YAML"),
    ],
)
def test_config_problems_say_how_to_fix_them(tmp_path: Path, yaml_text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"cases\.yaml") as caught:
        load_cases_config(write(tmp_path, yaml_text))
    assert problem in str(caught.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_cases_config(tmp_path / "missing.yaml")
