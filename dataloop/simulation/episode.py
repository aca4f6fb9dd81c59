"""One closed-loop episode: the policy drives the ego among reactive IDM/MOBIL agents in
highway-env; no safety driver takes over, but the moments it would have are counted.

At-fault collision: the ego collides and is the mover. It is not at fault when it was
rear-ended (the other vehicle's centre is behind the ego's, in the ego frame) or when it was
standing still (below 0.5 m/s); every other collision is the ego's fault (it drove into a
vehicle ahead or beside it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from dataloop.fleet.simulator.drive import _observe, _yaw_rate
from dataloop.fleet.simulator.traffic import DT, SIM_HZ, World, time_to_collision
from dataloop.policy.features import History
from dataloop.policy.observation import Control, DrivingPolicy
from dataloop.simulation.scenario import CONDITIONS, FOG_RANGE_M, Scenario

TAKEOVER_TTC_S = 1.5
"""Where the fleet's safety driver would take over (counted, never applied)."""
MAX_ACCEL, MAX_BRAKE, MAX_STEER = 6.0, -10.0, 0.6
"""Physical limits the vehicle applies to any command."""
OFFROAD_MARGIN_M = 0.5
"""The ego's centre this far beyond the outer lane edge is off the drivable area."""


@dataclass
class Episode:
    scenario_id: str
    category: str
    model_version: str
    steps: int
    distance_m: float
    """progress along the road (speed times cos of the heading error, integrated)."""
    collided: bool
    at_fault: bool
    offroad_steps: int
    min_ttc_s: float
    comfort: float
    """fraction of steps within the comfort limits (see ``score.COMFORT``)."""
    max_jerk: float
    max_lon_accel: float
    max_lat_accel: float
    would_take_over: int
    ended: str
    """time | collision | map_end"""

    def to_dict(self) -> dict:
        return asdict(self)


def build_world(scenario: Scenario) -> World:
    """The scenario's initial state in highway-env."""
    world = World(scenario.road, scenario.seed)
    factor = CONDITIONS[scenario.condition]
    if scenario.ego_speed is not None:
        world.ego.speed = scenario.ego_speed
        world.ego.target_speed = max(scenario.ego_speed, 15.0) + 2.0
    if scenario.agents is not None:
        world.road.vehicles[:] = [world.ego]
        a, b, lane = world.ego.lane_index
        lanes = len(world.road.network.graph[a][b])
        for agent in scenario.agents:
            target = lane - agent.lane  # highway-env numbers lanes from the left
            if 0 <= target < lanes:
                world.spawn((a, b, target), agent.dx, agent.speed * factor)
    for v in world.others:
        v.target_speed = v.target_speed * factor
    return world


def _clip(c: Control) -> Control:
    return Control(
        min(max(c.acceleration, MAX_BRAKE), MAX_ACCEL), min(max(c.steering, -MAX_STEER), MAX_STEER)
    )


def _at_fault(world: World) -> bool:
    if world.ego.speed < 0.5:
        return False
    partners = [v for v in world.others if v.crashed] or world.others
    ex, ey = world.ego.position
    other = min(partners, key=lambda v: math.hypot(v.position[0] - ex, v.position[1] - ey))
    x, *_ = world.ego_frame(other.position[0], other.position[1], 0.0, 0.0)
    return x >= 0.0


def run_episode(scenario: Scenario, policy: DrivingPolicy) -> Episode:
    """Drive ``scenario`` with ``policy`` and measure it (deterministic for the scenario)."""
    from dataloop.simulation.score import within_comfort

    reset = getattr(policy, "reset", None)
    if reset is not None:
        reset(scenario)
    world = build_world(scenario)
    history = History()
    state = {"accel": 0.0, "yaw": 0.0, "objects": []}

    def decide(expert_action: dict) -> dict:
        expert = Control(float(expert_action["acceleration"]), -float(expert_action["steering"]))
        lat, heading_error, _ = world.lane_offset()
        lane = {"lateral_offset_m": lat, "heading_error_rad": heading_error}
        obs = _observe(
            history, lane, state["objects"], world.ego.speed, state["accel"], state["yaw"], expert
        )
        control = _clip(policy.act(obs))
        return {"acceleration": control.acceleration, "steering": -control.steering}

    world.ego.decide = decide
    steps = int(round(scenario.seconds * SIM_HZ))
    distance, offroad, takeovers, comfy = 0.0, 0, 0, 0
    min_ttc, max_jerk, max_lon, max_lat = math.inf, 0.0, 0.0, 0.0
    prev_speed, prev_accel, in_danger = world.ego.speed, None, False
    ended, collided, at_fault, n = "time", False, False, 0
    for _ in range(steps):
        n += 1
        objects = world.objects()
        if scenario.condition == "fog":
            objects = [o for o in objects if math.hypot(o["x"], o["y"]) < FOG_RANGE_M]
        state["objects"] = objects
        ttc = time_to_collision(objects, world.ego.speed)
        min_ttc = min(min_ttc, ttc)
        danger = ttc < TAKEOVER_TTC_S
        takeovers += danger and not in_danger
        in_danger = danger
        world.step()
        speed = world.ego.speed
        accel = (speed - prev_speed) / DT
        jerk = 0.0 if prev_accel is None else (accel - prev_accel) / DT
        yaw = _yaw_rate(world)
        lat_accel = speed * yaw
        state["accel"], state["yaw"] = accel, yaw
        max_jerk, max_lon = max(max_jerk, abs(jerk)), max(max_lon, abs(accel))
        max_lat = max(max_lat, abs(lat_accel))
        comfy += within_comfort(accel, jerk, lat_accel)
        lat, heading_error, width = world.lane_offset()
        distance += (prev_speed + speed) / 2 * DT * math.cos(heading_error)
        prev_speed, prev_accel = speed, accel
        outside = abs(lat) > width / 2 + OFFROAD_MARGIN_M
        if world.ego.crashed:
            ended, collided, at_fault = "collision", True, _at_fault(world)
            break
        if not world.ego.on_road and not outside and scenario.road != "highway":
            ended = "map_end"  # the merge, roundabout and intersection maps end
            break
        offroad += outside
    return Episode(
        scenario.id,
        scenario.category,
        policy.model_version,
        n,
        float(distance),
        bool(collided),
        bool(at_fault),
        int(offroad),
        float(min_ttc),
        comfy / n,
        float(max_jerk),
        float(max_lon),
        float(max_lat),
        int(takeovers),
        ended,
    )
