"""The cases configuration: categories, departments, the boundary, timings and retention.

A city writes it in YAML (see ``examples/mataro/cases.yaml``) and loads it with
:func:`load_cases_config`; every problem is a :class:`~civicchat.exceptions.ConfigError` that
says how to fix it.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from civicchat.cases._text import fold
from civicchat.cases.geo import Boundary
from civicchat.exceptions import ConfigError
from civicchat.keywords.normalize import content_tokens

__all__ = ["CaseCategory", "CasesConfig", "Department", "load_cases_config"]

LANGUAGES = ("ca", "es")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_labels(labels: dict[str, str], what: str) -> None:
    missing = [lang for lang in LANGUAGES if not labels.get(lang, "").strip()]
    if missing:
        raise ValueError(f"{what} needs a name in {', '.join(missing)}")


class Department(_Frozen):
    """A municipal department that cases can be assigned to."""

    id: str = Field(pattern=r"^[a-z0-9_-]+$")
    names: dict[str, str]

    @model_validator(mode="after")
    def _names(self) -> Department:
        _check_labels(self.names, f"department {self.id!r}")
        return self


class CaseCategory(_Frozen):
    """A category the citizen picks, with its Open311 service code and default department."""

    id: str = Field(pattern=r"^[a-z0-9_-]+$", max_length=40)
    labels: dict[str, str]
    service_code: str | None = None
    department: str | None = None

    @model_validator(mode="after")
    def _labels(self) -> CaseCategory:
        _check_labels(self.labels, f"category {self.id!r}")
        return self

    def label(self, language: str) -> str:
        """The label in ``language``, Catalan when there is none."""
        return self.labels.get(language) or self.labels["ca"]

    # Worked out once per category (the flow asks for every message at its category step).
    # ``model_copy(update={"labels": ...})`` would keep them: build a new category instead.
    @cached_property
    def match_names(self) -> tuple[str, ...]:
        """The folded labels and id that a typed answer is compared with, whole."""
        return (*(fold(label) for label in self.labels.values()), fold(self.id))

    @cached_property
    def match_words(self) -> frozenset[str]:
        """The words (3+ letters, stop words aside) of the labels and id an answer may use."""
        return frozenset(
            word for name in self.match_names for word in content_tokens(name) if len(word) >= 3
        )


class CasesConfig(_Frozen):
    """Everything the cases package needs to know about one municipality."""

    reference_prefix: str = Field(default="MTR", pattern=r"^[A-Z]{2,6}$")
    timezone: str = "Europe/Madrid"
    municipality: dict[str, str] = Field(default_factory=lambda: {"ca": "Mataró", "es": "Mataró"})
    categories: tuple[CaseCategory, ...] = Field(min_length=1)
    departments: tuple[Department, ...] = ()
    boundary: Boundary | None = None
    resume_after_minutes: int = Field(default=60, ge=1)
    expiry_hours: int = Field(default=24, ge=1)
    retention_days: int = Field(default=730, ge=1)
    retention_mode: str = Field(default="anonymise", pattern=r"^(anonymise|delete)$")
    status_template: str = "case_status_update"
    description_max_chars: int = Field(default=2000, ge=10, le=4000)

    @model_validator(mode="after")
    def _consistent(self) -> CasesConfig:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {self.timezone!r}; use e.g. Europe/Madrid"
            ) from exc
        ids = [c.id for c in self.categories]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"category ids must be unique; repeated: {', '.join(dupes)}")
        known = {d.id for d in self.departments}
        for category in self.categories:
            if category.department is not None and category.department not in known:
                raise ValueError(
                    f"category {category.id!r} names department {category.department!r}, "
                    f"which is not under departments: (known: {', '.join(sorted(known)) or 'none'})"
                )
        if self.resume_after_minutes >= self.expiry_hours * 60:
            raise ValueError("resume_after_minutes must be shorter than expiry_hours")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def resume_after(self) -> timedelta:
        return timedelta(minutes=self.resume_after_minutes)

    @property
    def expiry(self) -> timedelta:
        return timedelta(hours=self.expiry_hours)

    def category(self, category_id: str) -> CaseCategory | None:
        """The category with this id, or None."""
        return next((c for c in self.categories if c.id == category_id), None)

    def municipality_name(self, language: str) -> str:
        """The municipality's name in ``language`` (as in "sembla fora de Mataró")."""
        return self.municipality.get(language) or next(iter(self.municipality.values()), "")


def load_cases_config(path: str | Path) -> CasesConfig:
    """Read and validate a cases YAML file.

    Raises :class:`~civicchat.exceptions.ConfigError` naming the file and every problem.
    """
    file = Path(path)
    try:
        raw: Any = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the cases configuration: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the cases configuration must be a mapping at the top level")
    data = raw.get("cases", raw)
    try:
        return CasesConfig.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{file}: the cases configuration has problems:\n{problems}") from exc
