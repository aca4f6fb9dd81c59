"""Traffic from highway-env: IDM/MOBIL agents on highway, merge, roundabout and intersection
roads, a fleet ego car that a driving policy controls, and pedestrians.

highway-env's coordinates have y pointing right of the road's direction (screen convention);
``ego_frame`` converts to the contract's ego frame (x forward, y left).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SIM_HZ = 10
DT = 1.0 / SIM_HZ
ROADS = ("highway", "merge", "roundabout", "intersection")
_ENV_IDS = {
    "highway": "highway-v0",
    "merge": "merge-v0",
    "roundabout": "roundabout-v0",
    "intersection": "intersection-v0",
}
_ROAD_CONFIG = {
    "highway": {"lanes_count": 3, "vehicles_count": 18, "vehicles_density": 1.2},
    "merge": {},
    "roundabout": {},
    "intersection": {"initial_vehicle_count": 8, "spawn_probability": 0.0},
}
SEGMENT_SECONDS = {"highway": 60.0, "merge": 30.0, "roundabout": 30.0, "intersection": 20.0}
"""Longest drive segment per road: the maps of merge, roundabout and intersection end."""


def _idm_classes():
    # highway-env (and pygame under it) load lazily: the code location never imports them.
    from highway_env.vehicle.behavior import IDMVehicle
    from highway_env.vehicle.kinematics import Vehicle

    class ScriptedVehicle(IDMVehicle):
        """IDM/MOBIL traffic that a corner case can script for a while."""

        forced_acceleration: float | None = None
        forced_until: float = -1.0
        clock: Callable[[], float] = staticmethod(lambda: 0.0)

        def act(self, action=None):
            super().act(action)
            if self.forced_acceleration is not None and self.clock() < self.forced_until:
                accel = max(self.forced_acceleration, -self.speed / DT)  # stop, never reverse
                self.action = {**self.action, "acceleration": accel}
            elif self.forced_acceleration is not None:
                self.forced_acceleration = None
                self.enable_lane_change = True

    class EgoVehicle(IDMVehicle):
        """The fleet car. The expert (IDM + MOBIL + pursuit steering) proposes; ``decide``
        (the driving policy under a safety driver) disposes."""

        decide: Callable[[dict], dict] = staticmethod(lambda expert: expert)

        def act(self, action=None):
            if self.crashed:
                return
            IDMVehicle.act(self)  # leaves the expert's command in self.action
            Vehicle.act(self, self.decide(dict(self.action)))

    return ScriptedVehicle, EgoVehicle


@dataclass
class Pedestrian:
    x: float
    y: float
    vx: float
    vy: float
    until: float
    """Leaves the scene at this time."""
    length: float = 0.5
    width: float = 0.6
    id: int = 0


class World:
    """One road of traffic, stepped at SIM_HZ."""

    def __init__(self, road: str, seed: int):
        import gymnasium as gym
        import highway_env  # noqa: F401  (registers the environments)

        scripted, ego_cls = _idm_classes()
        self._scripted = scripted
        config = {
            "simulation_frequency": SIM_HZ,
            "policy_frequency": SIM_HZ,
            "offroad_terminal": False,
            **_ROAD_CONFIG[road],
        }
        with warnings.catch_warnings():  # "merge-v0 is out of date": we use its road only
            warnings.simplefilter("ignore", DeprecationWarning)
            env = gym.make(_ENV_IDS[road], render_mode=None, config=config)
        env.reset(seed=seed)
        self.road_type = road
        self.road = env.unwrapped.road
        self.t = 0.0
        self.crosswind = 0.0
        """Road-wheel angle the wind adds to the car's turning this step (highway-env sign)."""
        template = env.unwrapped.vehicle
        self.ego = ego_cls.create_from(template)
        self.ego.route = getattr(template, "route", None)
        self.ego.target_speed = max(template.speed, 15.0) + 2.0
        vehicles = self.road.vehicles
        vehicles[vehicles.index(template)] = self.ego
        for i, v in enumerate(vehicles):
            if v is not self.ego:
                others = scripted.create_from(v)
                others.route = getattr(v, "route", None)
                others.clock = lambda: self.t
                vehicles[i] = others
        self.ids = {id(v): n + 1 for n, v in enumerate(vehicles)}
        self.pedestrians: list[Pedestrian] = []

    def spawn(self, lane_index, ahead_m: float, speed: float):
        """Put a new traffic vehicle on ``lane_index``, ``ahead_m`` metres ahead of the ego."""
        lane = self.road.network.get_lane(lane_index)
        s, _ = lane.local_coordinates(self.ego.position)
        v = self._scripted(
            self.road, lane.position(s + ahead_m, 0.0), lane.heading_at(s + ahead_m), speed
        )
        v.lane_index = v.target_lane_index = lane_index
        v.target_speed = speed
        v.clock = lambda: self.t
        self.road.vehicles.append(v)
        self.ids[id(v)] = len(self.ids) + 1
        return v

    @property
    def others(self):
        return [v for v in self.road.vehicles if v is not self.ego]

    def step(self) -> None:
        self.road.act()
        self.road.step(DT)
        for p in self.pedestrians:
            p.x += p.vx * DT
            p.y += p.vy * DT
        self.pedestrians = [p for p in self.pedestrians if p.until > self.t]
        self.t += DT

    # -- geometry in the contract's frames -----------------------------------------------
    def ego_pose(self) -> tuple[float, float, float]:
        """(east m, north m, heading rad counter-clockwise from east)."""
        x, y = self.ego.position
        return float(x), float(-y), float(-self.ego.heading)

    def ego_frame(self, x: float, y: float, vx: float, vy: float) -> tuple[float, ...]:
        """A world position/velocity (highway-env coordinates) in the ego frame."""
        ex, ey, h = self.ego_pose()
        dx, dy = x - ex, -y - ey
        c, s = math.cos(h), math.sin(h)
        return (c * dx + s * dy, -s * dx + c * dy, c * vx - s * vy, -s * vx - c * vy)

    def lane_offset(self) -> tuple[float, float, float]:
        """(lateral offset m, left positive; heading error rad; lane width m)."""
        lane = self.road.network.get_lane(self.ego.lane_index)
        s, lat = lane.local_coordinates(self.ego.position)
        heading_error = lane.heading_at(s) - self.ego.heading
        return (
            -float(lat),
            float(math.remainder(heading_error, 2 * math.pi)),
            float(lane.width_at(s)),
        )

    def objects(self) -> list[dict]:
        """Ground truth of every vehicle and pedestrian near the ego, in the ego frame."""
        out = []
        for v in self.others:
            vx, vy = v.speed * math.cos(v.heading), v.speed * math.sin(v.heading)
            x, y, rvx, rvy = self.ego_frame(v.position[0], v.position[1], vx, vy)
            if -40 < x < 100 and abs(y) < 30:
                heading = math.remainder(-v.heading + self.ego.heading, 2 * math.pi)
                out.append(
                    {
                        "id": self.ids.setdefault(id(v), len(self.ids) + 1),
                        "object_class": "truck" if v.LENGTH > 6 else "car",
                        "x": x,
                        "y": y,
                        "vx": rvx,
                        "vy": rvy,
                        "length": float(v.LENGTH),
                        "width": float(v.WIDTH),
                        "height": 1.5,
                        "heading": heading,
                        "stopped": v.speed < 0.5,
                    }
                )
        for p in self.pedestrians:
            x, y, rvx, rvy = self.ego_frame(p.x, p.y, p.vx, p.vy)
            if -20 < x < 100:
                out.append(
                    {
                        "id": p.id,
                        "object_class": "pedestrian",
                        "x": x,
                        "y": y,
                        "vx": rvx,
                        "vy": rvy,
                        "length": p.length,
                        "width": p.width,
                        "height": 1.75,
                        "heading": 0.0,
                        "stopped": False,
                    }
                )
        return out


def time_to_collision(objects: list[dict], ego_speed: float, ego_width: float = 2.0) -> float:
    """Smallest time to collision with anything ahead in the ego's corridor (inf if none)."""
    ttc = math.inf
    for o in objects:
        gap = o["x"] - o["length"] / 2 - 2.5  # ego front bumper ~2.5 m ahead of its centre
        if gap <= 0 or abs(o["y"]) > (ego_width + o["width"]) / 2 + 0.3:
            continue
        closing = ego_speed - o["vx"]
        if closing > 0.1:
            ttc = min(ttc, gap / closing)
    return ttc


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent, reproducible random stream per (seed, keys)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))
