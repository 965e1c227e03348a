from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from civicchat.cases.config import CasesConfig
from civicchat.cases.geo import Boundary, map_link, point_in_polygon

coordinate = st.floats(min_value=-10, max_value=10, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    lat=coordinate,
    lon=coordinate,
    south=coordinate,
    west=coordinate,
    height=st.floats(min_value=0.01, max_value=5),
    width=st.floats(min_value=0.01, max_value=5),
)
def test_rectangles_agree_with_the_obvious_check(
    lat: float, lon: float, south: float, west: float, height: float, width: float
) -> None:
    north, east = south + height, west + width
    polygon = [(south, west), (north, west), (north, east), (south, east)]
    on_edge = lat in (south, north) or lon in (west, east)
    if not on_edge:
        expected = south < lat < north and west < lon < east
        assert point_in_polygon(lat, lon, polygon) is expected
        assert point_in_polygon(lat, lon, list(reversed(polygon))) is expected


def test_a_concave_polygon() -> None:
    # A "U": the notch between the arms is outside.
    u = [(0, 0), (3, 0), (3, 1), (1, 1), (1, 2), (3, 2), (3, 3), (0, 3)]
    assert point_in_polygon(0.5, 1.5, u)
    assert point_in_polygon(2, 0.5, u)
    assert not point_in_polygon(2, 1.5, u)
    assert not point_in_polygon(4, 1.5, u)


def test_degenerate_polygons_contain_nothing() -> None:
    assert not point_in_polygon(0, 0, [])
    assert not point_in_polygon(0, 0, [(1, 1), (2, 2)])


@pytest.mark.parametrize(
    ("place", "lat", "lon", "inside"),
    [
        ("town hall", 41.5385, 2.4447, True),
        ("La Riera", 41.5381, 2.4445, True),
        ("Cerdanyola", 41.5480, 2.4330, True),
        ("Barcelona", 41.3874, 2.1686, False),
        ("out at sea off the port", 41.5250, 2.4600, False),
        ("Argentona", 41.5540, 2.4010, False),
    ],
)
def test_mataro_boundary(
    mataro_config: CasesConfig, place: str, lat: float, lon: float, inside: bool
) -> None:
    assert mataro_config.boundary is not None
    assert mataro_config.boundary.contains(lat, lon) is inside, place


def test_map_link() -> None:
    assert map_link(41.5385, 2.4447) == (
        "https://www.openstreetmap.org/?mlat=41.538500&mlon=2.444700#map=18/41.538500/2.444700"
    )


def test_boundary_validation() -> None:
    with pytest.raises(ValidationError, match="latitude, longitude"):
        Boundary(points=((2.44, 141.5), (0, 0), (1, 1), (95, 1)))
    with pytest.raises(ValidationError, match="3 distinct"):
        Boundary(points=((1, 1), (1, 1), (2, 2)))
    with pytest.raises(ValidationError):
        Boundary(points=((1, 1), (2, 2)))
