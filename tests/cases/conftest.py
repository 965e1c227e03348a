from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from civicchat.cases.config import CasesConfig, load_cases_config
from civicchat.cases.flow import CaseFlow
from civicchat.cases.memory import MemoryCaseStore
from civicchat.clock import ManualClock
from civicchat.messages import InboundContent, InboundMessage, Sender
from pg_helpers import (
    create_pg_schema,
    drop_pg_schema,
    migrate_file,
    pg_unreachable,
)

MATARO_CASES = Path(__file__).resolve().parents[2] / "examples" / "mataro" / "cases.yaml"
START = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)

MessageFactory = Callable[..., InboundMessage]
T = TypeVar("T")


class FakeGeocoder:
    """Knows two streets of Mataró and one of Barcelona."""

    PLACES: ClassVar[dict[str, tuple[float, float]]] = {
        "la riera 48": (41.5381, 2.4445),
        "carrer de sant josep 12": (41.5410, 2.4420),
        "passeig de gràcia 1": (41.3917, 2.1649),
    }

    def __init__(self) -> None:
        self.reverse_calls: list[tuple[float, float]] = []

    async def reverse(self, lat: float, lon: float) -> str | None:
        self.reverse_calls.append((lat, lon))
        return "Plaça de l'Ajuntament, Mataró" if abs(lat - 41.5385) < 0.001 else None

    async def forward(self, address: str) -> tuple[float, float] | None:
        key = address.lower().replace(",", "").replace("c/", "carrer de").strip()
        return self.PLACES.get(key)


@pytest.fixture
def mataro_config() -> CasesConfig:
    return load_cases_config(MATARO_CASES)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def store() -> MemoryCaseStore:
    return MemoryCaseStore()


@pytest.fixture
def geocoder() -> FakeGeocoder:
    return FakeGeocoder()


@pytest.fixture
def flow(
    mataro_config: CasesConfig, store: MemoryCaseStore, geocoder: FakeGeocoder, clock: ManualClock
) -> CaseFlow:
    return CaseFlow(mataro_config, store, geocoder, clock)


@pytest.fixture
def msg(clock: ManualClock) -> MessageFactory:
    counter = iter(range(1, 10_000))

    def make(
        content: InboundContent, *, sender: str = "34600000001", channel: str = "whatsapp"
    ) -> InboundMessage:
        return InboundMessage(
            channel=channel,
            account="mataro",
            provider_message_id=f"m{next(counter)}",
            sender=Sender(id=sender),
            timestamp=clock.now(),
            content=content,
        )

    return make


# -- SQL case store targets (tests/cases/test_case_store_contract.py) -------------------------


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end, also when a loop is running (fixtures requested lazily)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="session")
def cases_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test."""
    path = tmp_path_factory.mktemp("cases-template") / "civicchat.db"
    _run(migrate_file(str(path)))
    return path


@pytest.fixture(scope="session")
def cases_pg_schema() -> Iterator[str | None]:
    """A migrated PostgreSQL schema of this test process, or None when the server is down."""
    if _run(pg_unreachable()) is not None:
        yield None
        return
    schema = _run(create_pg_schema())
    try:
        yield schema
    finally:
        _run(drop_pg_schema(schema))
