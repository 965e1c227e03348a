"""Fixtures of the routing tests."""

from __future__ import annotations

import pytest
from routing_support import MATARO_HOURS, FakeResponder

from civicchat.routing import OfficeHours, load_office_hours


@pytest.fixture(scope="session")
def mataro() -> OfficeHours:
    return load_office_hours(MATARO_HOURS)


@pytest.fixture
def responder() -> FakeResponder:
    return FakeResponder()
