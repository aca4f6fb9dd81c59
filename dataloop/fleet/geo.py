"""Local metric coordinates around a city origin, projected to WGS84."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_378_137.0
DEFAULT_ORIGIN = (48.1372, 11.5756)  # Munich


def local_to_latlon(x: float, y: float, origin: tuple[float, float]) -> tuple[float, float]:
    """Equirectangular projection of local east/north metres around ``origin`` (exact enough
    over the few kilometres of a drive segment)."""
    lat0, lon0 = origin
    lat = lat0 + math.degrees(y / EARTH_RADIUS_M)
    lon = lon0 + math.degrees(x / (EARTH_RADIUS_M * math.cos(math.radians(lat0))))
    return lat, lon
