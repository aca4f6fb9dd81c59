"""Geofences: polygons (assets/quality/geofence.yaml) where GNSS must be coarsened or the
drive excluded altogether."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataloop import rules
from dataloop.rules import schemas as S

ACTIONS = ("coarsen", "exclude")


@dataclass(frozen=True)
class Zone:
    name: str
    action: str
    polygon: np.ndarray  # (n, 2) lat, lon
    precision_m: float = 1000.0

    def contains(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Ray casting, vectorised over points."""
        inside = np.zeros(len(lat), bool)
        ys, xs = self.polygon[:, 0], self.polygon[:, 1]
        j = len(xs) - 1
        for i in range(len(xs)):
            crosses = (ys[i] > lat) != (ys[j] > lat)
            x_at = (xs[j] - xs[i]) * (lat - ys[i]) / np.where(ys[j] == ys[i], 1e-12, ys[j] - ys[i])
            inside ^= crosses & (lon < x_at + xs[i])
            j = i
        return inside


def load_zones(path: Path, data: bytes | None = None) -> list[Zone]:
    """The zones of ``path`` (or of ``data``, its bytes); none when the file is absent.
    Raises ``RulesError`` naming file and line."""
    if data is None and not path.exists():
        return []
    zones = []
    for z in rules.load(path, S.Geofence, data).get("zones", []):
        zones.append(
            Zone(
                z["name"],
                z["action"],
                np.array(z["polygon"], float),
                float(z.get("precision_m", 1000.0)),
            )
        )
    return zones


@dataclass
class GeofenceResult:
    excluded_by: list[str]
    coarsened_points: int
    zones_hit: list[str]


def apply_geofence(
    lat: np.ndarray, lon: np.ndarray, zones: list[Zone]
) -> tuple[np.ndarray, np.ndarray, GeofenceResult]:
    """Coarsened copies of lat/lon (points inside a coarsen zone snapped to a grid of the
    zone's precision) and what happened."""
    lat, lon = lat.astype(float).copy(), lon.astype(float).copy()
    excluded, hit, coarsened = [], [], 0
    for zone in zones:
        inside = zone.contains(lat, lon)
        if not inside.any():
            continue
        hit.append(zone.name)
        if zone.action == "exclude":
            excluded.append(zone.name)
            continue
        step_lat = zone.precision_m / 111_320.0
        step_lon = step_lat / max(np.cos(np.radians(np.mean(lat[inside]))), 1e-6)
        lat[inside] = np.round(lat[inside] / step_lat) * step_lat
        lon[inside] = np.round(lon[inside] / step_lon) * step_lon
        coarsened += int(inside.sum())
    return lat, lon, GeofenceResult(excluded, coarsened, hit)
