from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicchat.cases.errors import CaseError, CaseReferenceError
from civicchat.cases.memory import MemoryCaseStore
from civicchat.cases.models import Case, CaseLocation, CaseReference, CaseStatus, NewCase
from civicchat.exceptions import CivicchatError


def test_reference_format_and_parse() -> None:
    ref = CaseReference("MTR", 2026, 123)
    assert str(ref) == "MTR-2026-000123"
    assert CaseReference.parse(" mtr-2026-000123 ") == ref
    assert str(CaseReference("MTR", 2026, 1_234_567)) == "MTR-2026-1234567"


@pytest.mark.parametrize(
    "text",
    ["", "MTR-26-000123", "MTR2026000123", "M-2026-000001", "MTR-2026-12", "MTR-2026-000000"],
)
def test_bad_references_are_refused_clearly(text: str) -> None:
    with pytest.raises(CaseReferenceError, match="reference"):
        CaseReference.parse(text)


def test_reference_errors_belong_to_the_tree() -> None:
    assert issubclass(CaseReferenceError, CaseError)
    assert issubclass(CaseError, CivicchatError)
    with pytest.raises(CaseReferenceError):
        CaseReference("mtr", 2026, 1)


@settings(max_examples=100, deadline=None)
@given(
    prefix=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=6),
    year=st.integers(min_value=1000, max_value=9999),
    sequence=st.integers(min_value=1, max_value=10**9),
)
def test_reference_round_trips(prefix: str, year: int, sequence: int) -> None:
    ref = CaseReference(prefix, year, sequence)
    assert CaseReference.parse(str(ref)) == ref


async def test_a_case_round_trips_through_json() -> None:
    store = MemoryCaseStore()
    case = await store.create(
        NewCase(
            category="parcs",
            description="Banc trencat",
            location=CaseLocation(latitude=41.54, longitude=2.44, inside_boundary=True),
            channel="webchat",
            account="web",
            citizen_id="w-1",
        ),
        prefix="MTR",
        at=datetime(2026, 6, 1, tzinfo=UTC),
        actor="citizen",
    )
    assert Case.model_validate_json(case.model_dump_json()) == case
    assert case.map_url is not None
    assert case.map_url.startswith("https://www.openstreetmap.org/?mlat=41.540000")
    assert case.parsed_reference.sequence == 1


def test_final_statuses() -> None:
    assert {s for s in CaseStatus if s.is_final} == {CaseStatus.RESOLVED, CaseStatus.REJECTED}


def test_location_without_point_has_no_map() -> None:
    assert CaseLocation(address="La Riera 1", source="typed").map_url is None


def test_public_api_is_sorted_and_importable() -> None:
    import civicchat.cases as cases

    assert cases.__all__ == sorted(cases.__all__, key=lambda n: (not n.isupper(), n))
    for name in cases.__all__:
        assert getattr(cases, name) is not None, name
