"""Location sense: is a point inside the municipality, and a map link for it.

Pure functions; the boundary is a polygon of ``(latitude, longitude)`` vertices from the
configuration::

    >>> square = Boundary(points=((0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0)))
    >>> square.contains(0.5, 0.5), square.contains(1.5, 0.5)
    (True, False)
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Boundary", "map_link", "point_in_polygon"]

Point = tuple[float, float]


def point_in_polygon(lat: float, lon: float, polygon: Sequence[Point]) -> bool:
    """True when ``(lat, lon)`` is inside ``polygon`` (ray casting, even-odd rule).

    The polygon is a ring of ``(lat, lon)`` vertices, closed implicitly. Fine for a town-sized
    polygon, where the curvature of the Earth does not matter. A point exactly on an edge may
    land on either side.
    """
    inside = False
    count = len(polygon)
    if count < 3:
        return False
    j = count - 1
    for i in range(count):
        lat_i, lon_i = polygon[i]
        lat_j, lon_j = polygon[j]
        # Cast a ray towards growing longitude and count the edges it crosses.
        if (lat_i > lat) != (lat_j > lat):
            crossing = lon_i + (lat - lat_i) * (lon_j - lon_i) / (lat_j - lat_i)
            if lon < crossing:
                inside = not inside
        j = i
    return inside


def map_link(lat: float, lon: float, zoom: int = 18) -> str:
    """An OpenStreetMap link centred on the point, with a marker."""
    return (
        f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}"
        f"#map={zoom}/{lat:.6f}/{lon:.6f}"
    )


class Boundary(BaseModel):
    """The municipality's boundary: a polygon of at least 3 ``(lat, lon)`` vertices."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    points: tuple[tuple[float, float], ...] = Field(min_length=3)
    approximate: bool = True

    @field_validator("points")
    @classmethod
    def _valid_points(cls, points: tuple[Point, ...]) -> tuple[Point, ...]:
        for lat, lon in points:
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(
                    f"boundary point ({lat}, {lon}) is not a (latitude, longitude) pair"
                )
        if len(set(points)) < 3:
            raise ValueError("a boundary needs at least 3 distinct points")
        return points

    def contains(self, lat: float, lon: float) -> bool:
        """True when the point is inside the boundary."""
        return point_in_polygon(lat, lon, self.points)
