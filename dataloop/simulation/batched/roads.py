"""Road geometry as lane tables: every lane of a road is one row of arrays, so a lane
lookup for thousands of vehicles is one gather.

The geometry is highway-env's own (``highway-v0`` with our 3 lanes, ``merge-v0``), in its
coordinates (x along the road, y to the right of it, headings clockwise-positive), with the
lanes in the order highway-env's road graph iterates them: the closest-lane search breaks ties
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

LANE_WIDTH = 4.0
VEHICLE_LENGTH = 5.0
"""highway-env's ``AbstractLane.VEHICLE_LENGTH``: lanes are 'on' this far past their ends."""
BATCHED_ROADS = ("highway", "merge")
"""Roads the batched backend drives; roundabout and intersection are highway-env only."""


@dataclass(frozen=True)
class Road:
    """Straight and sinusoidal lanes (highway-env's ``StraightLane``/``SineLane``)."""

    name: str
    start: np.ndarray  # (L, 2)
    direction: np.ndarray  # (L, 2) unit
    length: np.ndarray  # (L,)
    heading: np.ndarray  # (L,)
    width: np.ndarray
    speed_limit: np.ndarray
    forbidden: np.ndarray  # bool: no lane change into it
    amplitude: np.ndarray  # sine lanes; 0 for straight ones
    pulsation: np.ndarray
    phase: np.ndarray
    side: np.ndarray  # (L, 2): the lane to the left (id - 1) and right (id + 1), -1 if none
    next: np.ndarray  # (L,): the lane a vehicle continues on past the end (itself if none)
    ends: bool
    """The map ends (episodes stop there); a highway is long enough never to."""

    @property
    def lanes(self) -> int:
        return len(self.length)

    @cached_property
    def segment(self) -> np.ndarray:
        """A road segment id per lane: lanes side by side share one."""
        seg = np.arange(self.lanes)
        for _ in range(self.lanes):
            for k in range(self.lanes):
                for side in self.side[k]:
                    if side >= 0:
                        seg[k] = seg[side] = min(seg[k], seg[side])
        return seg

    # -- lane coordinates, for any shapes of lane indices and positions that broadcast ----
    @cached_property
    def aligned(self) -> bool:
        """Every lane runs along +x (both roads here): lane coordinates need no rotation."""
        return bool(np.all(self.direction == (1.0, 0.0)))

    @cached_property
    def curved(self) -> bool:
        return bool(self.amplitude.any())

    def local(self, lane: np.ndarray, x: np.ndarray, y: np.ndarray):
        """(longitudinal, lateral) of world positions in the given lanes."""
        dx = x - self.start[lane, 0]
        dy = y - self.start[lane, 1]
        if self.aligned:
            s, r = dx, dy
        else:
            cx, cy = self.direction[lane, 0], self.direction[lane, 1]
            s = dx * cx + dy * cy
            r = -dx * cy + dy * cx
        if self.curved:
            r = r - self.amplitude[lane] * np.sin(self.pulsation[lane] * s + self.phase[lane])
        return s, r

    def heading_at(self, lane: np.ndarray, s: np.ndarray) -> np.ndarray:
        h = self.heading[lane]
        if self.curved:
            amp, w = self.amplitude[lane], self.pulsation[lane]
            h = h + np.arctan(amp * w * np.cos(w * s + self.phase[lane]))
        return h

    def position(self, lane: np.ndarray, s: np.ndarray, r: np.ndarray):
        if self.curved:
            r = r + self.amplitude[lane] * np.sin(self.pulsation[lane] * s + self.phase[lane])
        cx, cy = self.direction[lane, 0], self.direction[lane, 1]
        return self.start[lane, 0] + s * cx - r * cy, self.start[lane, 1] + s * cy + r * cx

    def closest_lane(self, x: np.ndarray, y: np.ndarray, heading: np.ndarray) -> np.ndarray:
        """highway-env's ``get_closest_lane_index`` (distance plus heading difference)."""
        lanes = np.arange(self.lanes)
        s, r = self.local(lanes, x[..., None], y[..., None])
        angle = np.abs(wrap_to_pi(heading[..., None] - self.heading_at(lanes, s)))
        d = np.abs(r) + np.maximum(s - self.length, 0) + np.maximum(-s, 0) + angle
        return np.argmin(d, axis=-1)

    def on_lane(self, lane, s, r, margin: float = 0.0):
        return (np.abs(r) <= self.width[lane] / 2 + margin) & (
            (s >= -VEHICLE_LENGTH) & (s < self.length[lane] + VEHICLE_LENGTH)
        )

    def reachable(self, lane, s, r):
        return (
            ~self.forbidden[lane]
            & (np.abs(r) <= 2 * self.width[lane])
            & (s >= 0)
            & (s < self.length[lane] + VEHICLE_LENGTH)
        )


def wrap_to_pi(x):
    return ((x + np.pi) % (2 * np.pi)) - np.pi


def _table(name: str, lanes: list[dict], ends: bool) -> Road:
    start = np.array([ln["start"] for ln in lanes], dtype=float)
    end = np.array([ln["end"] for ln in lanes], dtype=float)
    delta = end - start
    length = np.linalg.norm(delta, axis=1)
    return Road(
        name=name,
        start=start,
        direction=delta / length[:, None],
        length=length,
        heading=np.arctan2(delta[:, 1], delta[:, 0]),
        width=np.full(len(lanes), LANE_WIDTH),
        speed_limit=np.array([ln.get("speed_limit", 20.0) for ln in lanes]),
        forbidden=np.array([ln.get("forbidden", False) for ln in lanes]),
        amplitude=np.array([ln.get("amplitude", 0.0) for ln in lanes]),
        pulsation=np.array([ln.get("pulsation", 0.0) for ln in lanes]),
        phase=np.array([ln.get("phase", 0.0) for ln in lanes]),
        side=np.array([ln["side"] for ln in lanes], dtype=np.int64),
        next=np.array([ln["next"] for ln in lanes], dtype=np.int64),
        ends=ends,
    )


def highway(lanes: int = 3) -> Road:
    """``RoadNetwork.straight_road_network``: parallel 10 km lanes, 30 m/s limit."""
    return _table(
        "highway",
        [
            {
                "start": (0.0, i * LANE_WIDTH),
                "end": (10000.0, i * LANE_WIDTH),
                "speed_limit": 30.0,
                "side": (i - 1 if i > 0 else -1, i + 1 if i < lanes - 1 else -1),
                "next": i,
            }
            for i in range(lanes)
        ],
        ends=False,
    )


def merge() -> Road:
    """``merge-v0``: two lanes a-b (150 + 80 m), b-c (80 m) with the ramp's acceleration
    lane beside them, c-d (150 m); the ramp j-k (150 m) and the sine bend k-b; an obstacle
    closes the acceleration lane at its end (see ``MERGE_OBSTACLE``). Lanes default to
    highway-env's 20 m/s limit. Rows: ab0 ab1 bc0 bc1 bc2 cd0 cd1 jk0 kb0."""
    ends = [150.0, 80.0, 80.0, 150.0]
    x1, x2, x3 = sum(ends[:2]), sum(ends[:3]), sum(ends)
    amp = 3.25
    y_ramp = 6.5 + 4 + 4
    return _table(
        "merge",
        [
            {"start": (0, 0), "end": (x1, 0), "side": (-1, 1), "next": 2},
            {"start": (0, 4), "end": (x1, 4), "side": (0, -1), "next": 3},
            {"start": (x1, 0), "end": (x2, 0), "side": (-1, 3), "next": 5},
            {"start": (x1, 4), "end": (x2, 4), "side": (2, 4), "next": 6},
            {"start": (x1, 8), "end": (x2, 8), "side": (3, -1), "next": 6, "forbidden": True},
            {"start": (x2, 0), "end": (x3, 0), "side": (-1, 6), "next": 5},
            {"start": (x2, 4), "end": (x3, 4), "side": (5, -1), "next": 6},
            {
                "start": (0, y_ramp),
                "end": (ends[0], y_ramp),
                "side": (-1, -1),
                "next": 8,
                "forbidden": True,
            },
            {
                "start": (ends[0], y_ramp - amp),
                "end": (x1, y_ramp - amp),
                "side": (-1, -1),
                "next": 4,
                "forbidden": True,
                "amplitude": amp,
                "pulsation": 2 * np.pi / (2 * ends[1]),
                "phase": np.pi / 2,
            },
        ],
        ends=True,
    )


MERGE_OBSTACLE = (310.0, 8.0)
"""The end of the acceleration lane: a 2 x 2 m standing obstacle."""
ROADS = {"highway": highway(), "merge": merge()}
