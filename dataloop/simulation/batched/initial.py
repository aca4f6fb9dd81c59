"""A scenario's initial traffic, as highway-env's ``reset(seed)`` would place it, without
highway-env: the same random draws from the same generator in the same order
(``HighwayEnv._create_vehicles``, ``MergeEnv._make_vehicles``), then the same edits
``dataloop.simulation.episode.build_world`` makes (listed agents, ego speed, condition).

``tests/test_batched_sim.py`` checks the result against highway-env vehicle by vehicle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dataloop.simulation.batched.roads import LANE_WIDTH, MERGE_OBSTACLE, ROADS
from dataloop.simulation.scenario import CONDITIONS, Scenario

HIGHWAY = {"lanes_count": 3, "vehicles_count": 18, "vehicles_density": 1.2, "ego_spacing": 2}
"""``dataloop.fleet.simulator.traffic._ROAD_CONFIG`` for highway-v0 (plus its default
ego spacing)."""


@dataclass
class Initial:
    """One scenario's vehicles, the ego first; highway-env coordinates."""

    x: list[float]
    y: list[float]
    speed: list[float]
    target_speed: list[float]
    lane: list[int]
    timer: list[float]
    obstacle: tuple[float, float] | None = None


def _generator(seed: int) -> np.random.Generator:
    # gymnasium.utils.seeding.np_random
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))


def _timer(x: float, y: float) -> float:
    # IDMVehicle.__init__: a lane-change phase from the position (np.sum of two floats)
    return float(((float(x) + float(y)) * np.pi) % 1.0)


def _highway(seed: int) -> Initial:
    rng = _generator(seed)
    lanes = HIGHWAY["lanes_count"]
    decay = float(np.exp(-5 / 40 * lanes))
    out = Initial([], [], [], [], [], [])

    def create_random(speed: float | None, spacing: float) -> None:
        # Vehicle.create_random; its choices of the graph's single origin and destination
        # node draw nothing, and ``choice(n)`` is ``integers(0, n)``
        lane = int(rng.integers(0, lanes))
        if speed is None:
            speed = float(rng.uniform(0.7 * 30.0, 0.8 * 30.0))
        offset = spacing * (12 + 1.0 * speed) * decay
        x0 = max(out.x) if out.x else 3 * offset
        x0 += offset * rng.uniform(0.9, 1.1)
        y0 = lane * LANE_WIDTH
        out.x.append(float(x0))
        out.y.append(float(y0))
        out.speed.append(float(speed))
        out.target_speed.append(float(speed))
        out.lane.append(lane)
        out.timer.append(_timer(x0, y0))

    create_random(25.0, HIGHWAY["ego_spacing"])
    out.target_speed[0] = max(out.speed[0], 15.0) + 2.0  # World: the ego's cruise speed
    for _ in range(HIGHWAY["vehicles_count"]):
        create_random(None, 1 / HIGHWAY["vehicles_density"])
        rng.uniform(low=3.5, high=4.5)  # randomize_behavior (World's copies keep DELTA=4)
    return out


def _merge(seed: int) -> Initial:
    rng = _generator(seed)
    out = Initial([30.0], [4.0], [30.0], [32.0], [1], [_timer(30.0, 4.0)])
    for s, speed in [(90.0, 29.0), (70.0, 31.0), (5.0, 31.5)]:
        lane = int(rng.integers(2))
        x = s + rng.uniform(-5.0, 5.0)
        speed += rng.uniform(-1.0, 1.0)
        out.x.append(float(x))
        out.y.append(lane * LANE_WIDTH)
        out.speed.append(float(speed))
        out.target_speed.append(float(speed))
        out.lane.append(lane)
        out.timer.append(_timer(x, lane * LANE_WIDTH))
    ramp = ROADS["merge"]
    x, y = 110.0, float(ramp.start[7, 1])
    out.x.append(x)
    out.y.append(y)
    out.speed.append(20.0)
    out.target_speed.append(30.0)
    out.lane.append(7)
    out.timer.append(_timer(x, y))
    out.obstacle = MERGE_OBSTACLE
    return out


def initial(scenario: Scenario) -> Initial:
    """The scenario's first state (what ``episode.build_world`` gives highway-env)."""
    if scenario.road == "highway":
        out = _highway(scenario.seed)
    elif scenario.road == "merge":
        out = _merge(scenario.seed)
    else:
        raise ValueError(f"the batched backend has no {scenario.road!r} road (highway-env only)")
    factor = CONDITIONS[scenario.condition]
    if scenario.ego_speed is not None:
        out.speed[0] = scenario.ego_speed
        out.target_speed[0] = max(scenario.ego_speed, 15.0) + 2.0
    if scenario.agents is not None:
        road = ROADS[scenario.road]
        ego_lane = out.lane[0]
        keep = Initial(
            *(v[:1] for v in (out.x, out.y, out.speed, out.target_speed, out.lane, out.timer)),
            obstacle=out.obstacle,
        )
        # highway-env numbers lanes from the left: agent.lane (lanes to the left) subtracts
        first, count = _segment(road.name, ego_lane)
        for agent in scenario.agents:
            target = ego_lane - first - agent.lane
            if 0 <= target < count:
                lane = first + target
                s, _ = road.local(np.array(lane), np.array(out.x[0]), np.array(out.y[0]))
                x, y = road.position(np.array(lane), s + agent.dx, np.array(0.0))
                speed = agent.speed * factor
                keep.x.append(float(x))
                keep.y.append(float(y))
                keep.speed.append(speed)
                keep.target_speed.append(speed)
                keep.lane.append(lane)
                keep.timer.append(_timer(float(x), float(y)))
        out = keep
    for i in range(1, len(out.x)):
        out.target_speed[i] *= factor
    return out


def _segment(road: str, lane: int) -> tuple[int, int]:
    """(first lane row, lane count) of the road segment that holds ``lane``."""
    if road == "highway":
        return 0, ROADS["highway"].lanes
    segments = [(0, 2), (2, 3), (5, 2), (7, 1), (8, 1)]
    return next((a, n) for a, n in segments if a <= lane < a + n)


def heading_of(road: str, lane: int, x: float, y: float) -> float:
    r = ROADS[road]
    s, _ = r.local(np.array(lane), np.array(x), np.array(y))
    return float(r.heading_at(np.array(lane), s))


__all__ = ["Initial", "initial", "heading_of", "math"]
