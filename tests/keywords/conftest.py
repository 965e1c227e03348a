from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from civicchat.clock import ManualClock
from civicchat.keywords import Catalog, KeywordEngine, load_catalog

HERE = Path(__file__).parent
SMALL_CATALOG = HERE / "small_catalog.yaml"


@pytest.fixture(scope="session")
def small_catalog() -> Catalog:
    return load_catalog(SMALL_CATALOG)


@pytest.fixture
def clock() -> ManualClock:
    # A Friday afternoon in Mataró (16:30 local time).
    return ManualClock(datetime(2026, 3, 27, 15, 30, tzinfo=UTC))


@pytest.fixture
def engine(small_catalog: Catalog, clock: ManualClock) -> KeywordEngine:
    return KeywordEngine(small_catalog, clock=clock)


@pytest.fixture(scope="session")
def shared_engine(small_catalog: Catalog) -> KeywordEngine:
    """One engine for property tests (hypothesis runs many examples per test function)."""
    return KeywordEngine(small_catalog)
