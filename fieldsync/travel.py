"""Travel time between job sites. Replaceable: anything with `minutes(a, b)` will do, so a
road-distance service can stand in for the great-circle estimate later."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

EARTH_RADIUS_KM = 6371.0088


class TravelModel(Protocol):
    def minutes(self, a: tuple[float, float] | None, b: tuple[float, float] | None) -> float: ...


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


@dataclass(frozen=True)
class GreatCircleTravel:
    """Straight-line distance stretched by a detour factor, driven at an average road speed."""

    speed_kmh: float = 40.0
    detour_factor: float = 1.3

    def minutes(self, a: tuple[float, float] | None, b: tuple[float, float] | None) -> float:
        if a is None or b is None:
            return 0.0  # unknown location: no basis for a travel estimate
        return haversine_km(a, b) * self.detour_factor / self.speed_kmh * 60.0
