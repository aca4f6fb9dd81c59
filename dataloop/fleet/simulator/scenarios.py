"""Corner cases injected into highway-env traffic: a neighbour cuts in, the lead vehicle
brakes hard, a vehicle ahead stalls, a pedestrian crosses."""

from __future__ import annotations

import math

import numpy as np

from dataloop.fleet.simulator.traffic import Pedestrian, World


def _ahead(world: World, lo: float, hi: float, lateral: float) -> list:
    """Other vehicles between lo and hi metres ahead whose lateral offset is near ``lateral``."""
    found = []
    for v in world.others:
        x, y, _, _ = world.ego_frame(v.position[0], v.position[1], 0.0, 0.0)
        if lo < x < hi and abs(y - lateral) < 1.2:
            found.append((x, v))
    return [v for _, v in sorted(found, key=lambda p: p[0])]


def _merge_in(world: World, rng, ahead: tuple, slower: tuple, brake: tuple, seconds: float):
    """A neighbour ``ahead`` metres in front in an adjacent lane steers into the ego's lane,
    ``slower`` m/s slower, braking ``brake`` m/s^2 for ``seconds``. With no one there, one
    arrives there first (scenario-based testing does the same)."""
    _, _, width = world.lane_offset()
    side_lanes = world.road.network.side_lanes(world.ego.lane_index)
    candidates = [v for side in (1.0, -1.0) for v in _ahead(world, *ahead, side * width)]
    if not candidates and side_lanes:
        lane = side_lanes[int(rng.integers(len(side_lanes)))]
        speed = max(world.ego.speed - float(rng.uniform(*slower)), 3.0)
        candidates = [world.spawn(lane, float(rng.uniform(*ahead)), speed)]
    for v in candidates[:1]:
        v.target_lane_index = world.ego.lane_index
        v.enable_lane_change = False
        v.forced_acceleration = -float(rng.uniform(*brake))
        v.forced_until = world.t + seconds
        return world.ids.get(id(v))
    return None


def cut_in(world: World, rng: np.random.Generator) -> int | None:
    """A neighbour 8-16 m ahead cuts in, 1.5-4.5 m/s slower, and eases off in front of us."""
    return _merge_in(world, rng, (8.0, 16.0), (1.5, 4.5), (0.5, 2.5), 3.0)


def near_miss(world: World, rng: np.random.Generator) -> int | None:
    """A close call: a neighbour cuts in 4-8 m ahead, 2-4 m/s slower, and brakes briefly."""
    return _merge_in(world, rng, (4.0, 8.0), (2.0, 4.0), (2.0, 3.5), 1.5)


def _lead(world: World, lo: float, hi: float, rng: np.random.Generator, speed: float):
    leads = _ahead(world, lo, hi, 0.0)
    if leads:
        return leads[0]
    return world.spawn(world.ego.lane_index, float(rng.uniform(lo + 0.3 * (hi - lo), hi)), speed)


def hard_brake(world: World, rng: np.random.Generator) -> int | None:
    """The vehicle ahead in the ego's lane, 8-50 m away, brakes at 6-8 m/s^2 for 2-3 s."""
    v = _lead(world, 8.0, 50.0, rng, world.ego.speed)
    v.forced_acceleration = -float(rng.uniform(6.0, 8.0))
    v.forced_until = world.t + float(rng.uniform(2.0, 3.0))
    return world.ids.get(id(v))


def stalled_vehicle(world: World, rng: np.random.Generator) -> int | None:
    """A vehicle 60-150 m ahead in the ego's lane stops and stays."""
    v = _lead(world, 60.0, 150.0, rng, min(world.ego.speed, 10.0))
    v.forced_acceleration = -4.0
    v.forced_until = world.t + 3600.0
    v.enable_lane_change = False
    return world.ids.get(id(v))


def pedestrian_crossing(world: World, rng: np.random.Generator) -> int | None:
    """A pedestrian steps onto the road 35-55 m ahead and walks across it."""
    lateral, _, width = world.lane_offset()
    distance = float(rng.uniform(35.0, 55.0))
    side = float(rng.choice([-1.0, 1.0]))
    start_y = side * (1.5 * width + 1.5)  # ego frame, beyond the next lane
    speed = float(rng.uniform(1.1, 1.7))
    # ego frame -> world (highway-env coordinates)
    ex, ey, h = world.ego_pose()
    c, s = math.cos(h), math.sin(h)
    east, north = ex + c * distance - s * start_y, ey + s * distance + c * start_y
    walk = -side * speed  # towards the other side, in the ego frame's y
    vel_east, vel_north = -s * walk, c * walk
    pid = 10_000 + len(world.ids) + len(world.pedestrians)
    crossing_time = 2 * abs(start_y) / speed
    world.pedestrians.append(
        Pedestrian(east, -north, vel_east, -vel_north, until=world.t + crossing_time, id=pid)
    )
    return pid


INJECT = {
    "cut_in": cut_in,
    "near_miss": near_miss,
    "hard_brake": hard_brake,
    "stalled_vehicle": stalled_vehicle,
    "pedestrian_crossing": pedestrian_crossing,
}
