"""One simulated drive segment: traffic, policy, safety driver, sensors, faults -> one MCAP."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from dataloop.fleet import contract
from dataloop.fleet.geo import local_to_latlon
from dataloop.fleet.logwriter import DriveLogWriter
from dataloop.fleet.ros2_log import Ros2DriveLogWriter
from dataloop.fleet.simulator import faults as F
from dataloop.fleet.simulator.camera import Camera, render_frame
from dataloop.fleet.simulator.config import CORNER_CASES, SimConfig
from dataloop.fleet.simulator.scenarios import INJECT
from dataloop.fleet.simulator.sensors import Sensors
from dataloop.fleet.simulator.traffic import (
    DT,
    SEGMENT_SECONDS,
    SIM_HZ,
    World,
    time_to_collision,
)
from dataloop.fleet.simulator.witness import Witness
from dataloop.policy.features import History, ego_row, object_frame
from dataloop.policy.observation import Control, DrivingPolicy, Observation

GROUND_TRUTH = "dataloop.ground_truth"
"""MCAP metadata record with what the simulator injected, for scoring later stages."""


def ground_truth_parquet(rows: list[dict], vehicle: str, drive: str) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = ("frame", "t", "id", "object_class", "x", "y", "vx", "vy", "length", "width", "heading")
    table = pa.table({c: [r[c] for r in rows] for c in cols})
    table = table.append_column("vehicle_id", pa.array([vehicle] * len(rows), pa.string()))
    table = table.append_column("drive_id", pa.array([drive] * len(rows), pa.string()))
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


TAKEOVER_MIN_S = 3.0
EMERGENCY_BRAKE = -8.0
NS = 1_000_000_000


@dataclass
class DriveResult:
    path: Path
    vehicle: str
    drive: str
    road: str
    condition: str
    start_ns: int
    end_ns: int
    km: float
    truth: dict = field(default_factory=dict)

    @property
    def disengagements(self) -> int:
        return len(self.truth.get("disengagements", []))


class SafetyDriver:
    """Takes over when the policy is about to fail: time to collision below a threshold, or
    leaving the road; hands back after a few calm seconds. Every takeover is a
    disengagement."""

    def __init__(self, ttc_threshold: float):
        self.ttc_threshold = ttc_threshold
        self.active_since: float | None = None
        self.events: list[dict] = []

    def review(self, t: float, ttc: float, on_road: bool, control: Control, expert: Control):
        danger = ttc < self.ttc_threshold or not on_road
        if danger and self.active_since is None:
            self.active_since = t
            reason = "low_ttc" if ttc < self.ttc_threshold else "off_road"
            self.events.append({"t": t, "reason": reason, "ttc": round(ttc, 3)})
        elif (
            self.active_since is not None
            and t - self.active_since >= TAKEOVER_MIN_S
            and ttc > 2 * self.ttc_threshold
            and on_road
        ):
            self.active_since = None
        if self.active_since is None:
            return control, False
        brake = EMERGENCY_BRAKE if ttc < self.ttc_threshold else expert.acceleration
        return Control(min(expert.acceleration, brake), expert.steering), True


class Crosswind:
    """Crosswind and road camber as an equivalent road-wheel angle: an Ornstein-Uhlenbeck
    process (rad) that turns the car without moving the steering (``SimConfig.crosswind_rad``)."""

    def __init__(self, rng: np.random.Generator, std: float, tau_s: float = 1.0):
        self.rng, self.value = rng, 0.0
        self.keep = math.exp(-DT / tau_s)
        self.kick = std * math.sqrt(1 - self.keep**2)

    def step(self) -> float:
        self.value = self.keep * self.value + self.kick * float(self.rng.normal())
        return self.value


def _observe(
    history: History,
    lane: dict,
    objects: list[dict],
    speed: float,
    accel: float,
    yaw_rate: float,
    expert: Control,
) -> Observation:
    """The observation from what the car perceives now (the logged lane estimate and object
    list, CAN speed, the last step's acceleration and yaw rate): training rebuilds exactly
    this from the log (dataloop/training/samples.py)."""
    ego = ego_row(speed, accel, yaw_rate, lane["lateral_offset_m"], lane["heading_error_rad"])
    history.append(ego, object_frame(objects))
    ego_hist, objects_hist = history.latest()
    return Observation(ego=ego_hist, objects=objects_hist, expert=expert)


def _yaw_rate(world: World, steer: float | None = None) -> float:
    """Kinematic bicycle: beta = atan(tan(steer)/2); yaw rate = v sin(beta) / (L/2); ISO
    sign. ``steer`` in highway-env's sign; default the car's own steering plus the wind."""
    if steer is None:
        steer = float(world.ego.action.get("steering", 0.0)) + world.crosswind
    beta = math.atan(0.5 * math.tan(steer))
    return -world.ego.speed * math.sin(beta) / (world.ego.LENGTH / 2)


def _lane_changed(before: tuple, after: tuple) -> bool:
    """A lane change is a move to another lane of the same road segment (a new segment at a
    junction is not one)."""
    return before[:2] == after[:2] and before[2] != after[2]


def _turn_signal(world: World) -> str:
    """The indicator the driver sets while changing lanes (highway-env numbers lanes from the
    left)."""
    lane, target = world.ego.lane_index, world.ego.target_lane_index
    if target is None or lane[:2] != target[:2] or lane[2] == target[2]:
        return "off"
    return "right" if target[2] > lane[2] else "left"


def _yield_to_pedestrians(objects: list[dict], speed: float, accel: float) -> float:
    for o in objects:
        if o["object_class"] == "pedestrian" and 0 < o["x"] < 60 and abs(o["y"]) < 4.0:
            gap = max(o["x"] - 8.0, 0.5)
            accel = min(accel, -(speed**2) / (2 * gap))
    return accel


def _schedule(rng, rates: dict[str, float], seconds: float, carry: dict[str, float]):
    """Event times for each kind: the expected count per segment, with the fraction carried
    to the next segment, so long runs reproduce the requested rate closely."""
    plan = []
    for kind, per_hour in rates.items():
        # A random phase to start with: a single segment gets the right count on average.
        budget = carry.get(kind, rng.uniform()) + per_hour * seconds / 3600.0
        n = int(budget)
        carry[kind] = budget - n
        for t in np.sort(rng.uniform(3.0, max(3.5, seconds - 3.0), n)):
            plan.append([float(t), kind])
    return sorted(plan)


def simulate_drive(
    path: Path,
    *,
    vehicle: str,
    drive: str,
    seed: int,
    rng: np.random.Generator,
    start_ns: int,
    policy: DrivingPolicy,
    config: SimConfig,
    carry: dict[str, float],
    max_seconds: float | None = None,
) -> DriveResult:
    """Drive one segment and write its log; ``carry`` holds rate remainders across segments."""
    road = str(rng.choice(list(config.roads), p=_p(config.roads)))
    condition = str(rng.choice(list(config.conditions), p=_p(config.conditions)))
    seconds = min(SEGMENT_SECONDS[road], max_seconds or math.inf)
    world = World(road, seed)
    camera = Camera(*config.camera_size)
    corner_plan = _schedule(rng, config.corner_cases_per_hour, seconds, carry)
    fault_plan = F.plan_faults(rng, config, seconds, carry)
    channels = [c for c in contract.CHANNELS if c.topic != fault_plan.missing_topic]
    safety = SafetyDriver(config.ttc_takeover_s)
    injected: list[dict] = []
    ground_truth: list[dict] = []
    near_misses: list[dict] = []
    lane_changes: list[dict] = []
    witness = Witness()
    history = History()
    state = {"accel": 0.0, "yaw_rate": 0.0, "objects": [], "ttc": math.inf, "takeover": False}
    wind = Crosswind(np.random.default_rng(seed), config.crosswind_rad)

    def decide(expert_action: dict) -> dict:
        # highway-env steers right-positive; the contract and policies use ISO (left positive)
        expert = Control(
            _yield_to_pedestrians(state["objects"], world.ego.speed, expert_action["acceleration"]),
            -float(expert_action["steering"]),
        )
        obs = _observe(
            history,
            state["lane"],
            state["perceived"],
            world.ego.speed,
            state["accel"],
            state["yaw_rate"],
            expert,
        )
        control, takeover = safety.review(
            world.t, state["ttc"], world.ego.on_road, policy.act(obs), expert
        )
        state["takeover"] = takeover
        # The wind turns the car over this step (its yaw, not the steering wheel's angle).
        world.crosswind = wind.step()
        world.ego.heading -= _yaw_rate(world, world.crosswind) * DT
        return {"acceleration": control.acceleration, "steering": -control.steering}

    world.ego.decide = decide
    extra = {
        "road": road,
        "conditions": condition,
        "simulator": "highway-env",
        "seed": str(seed),
        "model_version": policy.model_version,
    }
    km = 0.0
    t_ns = start_ns
    writer = Ros2DriveLogWriter if config.log_format == "ros2" else DriveLogWriter
    with writer(
        path,
        vehicle=vehicle,
        drive=drive,
        model_version=policy.model_version,
        extra_metadata=extra,
        channels=channels,
    ) as log:
        sensors = Sensors(log, rng, fault_plan, start_ns, condition)
        steps = int(round(seconds * SIM_HZ))
        prev_speed = world.ego.speed
        for k in range(steps):
            t = world.t
            while corner_plan and corner_plan[0][0] <= t:
                when, kind = corner_plan.pop(0)
                target = INJECT[kind](world, rng)
                if target is None and t - when < 10.0:  # not applicable yet: retry soon
                    corner_plan.insert(0, [when, kind])
                    break
                injected.append(
                    {
                        "type": kind,
                        "t": round(t, 2),
                        "object_id": target,
                        "applied": target is not None,
                    }
                )
            truth_objects = world.objects()
            state["objects"] = truth_objects
            state["perceived"] = sensors.perceive(truth_objects)
            state["ttc"] = time_to_collision(truth_objects, world.ego.speed)
            if state["ttc"] < config.near_miss_ttc_s and (
                not near_misses or t - near_misses[-1]["t"] > 5.0
            ):
                near_misses.append({"t": round(t, 2), "ttc": round(state["ttc"], 3)})
            t_ns = start_ns + int(round(t * NS))
            east, north, heading = world.ego_pose()
            lat, lon = local_to_latlon(east, north, config.origin)
            lateral, heading_error, width = world.lane_offset()
            state["lane"] = sensors.lane(t_ns, lateral, heading_error, width)
            lane_lines = (
                [lateral + width * (i - 1.5) for i in range(4)]
                if road == "highway"
                else [
                    lateral - width / 2 - width,
                    lateral - width / 2,
                    lateral + width / 2,
                    lateral + width / 2 + width,
                ]
            )
            sensors.frame(
                t_ns, partial(render_frame, truth_objects, lane_lines, condition, rng, camera)
            )
            sensors.gnss(t_ns, lat, lon)
            logged_at = sensors.objects(t_ns, state["perceived"])
            ground_truth.extend({**o, "t": logged_at, "frame": k} for o in truth_objects)
            n_disengagements = len(safety.events)
            lane_before = world.ego.lane_index
            world.step()
            witness.observe(world)
            if _lane_changed(lane_before, world.ego.lane_index):
                lane_changes.append({"t": round(t, 2), "to_lane": world.ego.lane_index[2]})
            if len(safety.events) > n_disengagements:
                ev = safety.events[-1]
                sensors.event(t_ns, "disengagement", f"{ev['reason']} ttc={ev['ttc']}")
            speed = world.ego.speed
            accel = (speed - prev_speed) / DT
            state["accel"] = accel
            state["yaw_rate"] = _yaw_rate(world)
            sensors.high_rate(
                t_ns,
                prev_speed,
                speed,
                accel,
                _yaw_rate(world),
                -float(world.ego.action.get("steering", 0.0)),
                _turn_signal(world),
            )
            if accel < -4.0 and (not sensors.last_hard_brake or t - sensors.last_hard_brake > 3):
                sensors.last_hard_brake = t
                sensors.event(t_ns, "hard_brake", f"decel {-accel:.1f} m/s^2")
            km += (prev_speed + speed) / 2 * DT / 1000
            prev_speed = speed
            if world.ego.crashed or (k > 20 and not world.ego.on_road and road != "highway"):
                break  # the segment ends at a crash or where the map ends
        end_ns = start_ns + int(round(world.t * NS))
        truth = {
            "road": road,
            "conditions": condition,
            "corner_cases": injected,
            "near_misses": near_misses,
            "disengagements": safety.events,
            "lane_changes": lane_changes,
            "witnessed": witness.events,
            "faults": fault_plan.applied,
            "crashed": bool(world.ego.crashed),
        }
        log.add_metadata(GROUND_TRUTH, {"json": json.dumps(truth)})
        log.add_attachment(
            contract.GROUND_TRUTH_OBJECTS,
            "application/vnd.apache.parquet",
            ground_truth_parquet(ground_truth, vehicle, drive),
        )
    if fault_plan.truncate_at is not None:
        F.truncate(path, fault_plan.truncate_at)
        truth["faults"].append({"type": "truncated_file", "keep_fraction": fault_plan.truncate_at})
    if fault_plan.missing_topic:
        truth["faults"].append({"type": "missing_channel", "topic": fault_plan.missing_topic})
    return DriveResult(path, vehicle, drive, road, condition, start_ns, end_ns, km, truth)


def _p(weights: dict[str, float]) -> list[float]:
    total = sum(weights.values())
    return [w / total for w in weights.values()]


__all__ = ["CORNER_CASES", "DriveResult", "GROUND_TRUTH", "simulate_drive"]
