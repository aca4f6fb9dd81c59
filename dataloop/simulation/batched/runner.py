"""Closed-loop episodes for thousands of scenarios at once: all scenarios of a road are
one set of arrays, stepped together; the candidate policy sees every scenario's observation
in one batch and answers with one forward pass per step.

The loop is ``dataloop.simulation.episode.run_episode``'s, step for step (what is measured
before and after the move, when an episode ends), so the rows feed ``score.subscores`` and
``gate.decide`` unchanged.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataloop.fleet.simulator.traffic import DT, SIM_HZ
from dataloop.policy.observation import BASELINE, BaselineExpert, Control, Observation
from dataloop.processes import process_pool
from dataloop.simulation.batched import agents, ego, metrics
from dataloop.simulation.batched.agents import Traffic
from dataloop.simulation.batched.initial import heading_of, initial
from dataloop.simulation.batched.roads import BATCHED_ROADS, ROADS
from dataloop.simulation.episode import (
    MAX_ACCEL,
    MAX_BRAKE,
    MAX_STEER,
    OFFROAD_MARGIN_M,
    TAKEOVER_TTC_S,
    Episode,
)
from dataloop.simulation.scenario import FOG_RANGE_M, Scenario
from dataloop.simulation.score import COMFORT, score, subscores

CHUNK = 2048
"""Scenarios per batch: large enough that NumPy's per-call overhead vanishes, small enough
to stay in cache-friendly sizes and to spread over worker processes."""


@dataclass
class BatchObservation:
    """What the policies of a batch see: ``Observation``'s fields with a leading scenario
    axis; ``objects`` is built only for policies that read it."""

    ego: np.ndarray
    """(B, HISTORY, 5)"""
    expert_acceleration: np.ndarray
    expert_steering: np.ndarray
    """ISO sign (left positive), as ``Observation.expert``."""
    category: np.ndarray
    """(B,) each scenario's category (what ``reset(scenario)`` tells per-scenario policies)."""
    _objects: Callable[[], np.ndarray] = field(repr=False)

    @property
    def objects(self) -> np.ndarray:
        """(B, HISTORY, MAX_OBJECTS, 7)"""
        return self._objects()


class _Expert:
    """``BaselineExpert`` in batch."""

    model_version = BASELINE
    reads_objects = False

    def act_batch(self, obs: BatchObservation):
        return obs.expert_acceleration, obs.expert_steering


class _PerScenario:
    """Any ``DrivingPolicy`` without a batched form: one copy per scenario, called one by
    one (slow; rule-based policies here all have ``act_batch``)."""

    reads_objects = True

    def __init__(self, policy, scenarios: Sequence[Scenario]):
        self.model_version = policy.model_version
        self.copies = [copy.deepcopy(policy) for _ in scenarios]
        for p, s in zip(self.copies, scenarios, strict=True):
            if hasattr(p, "reset"):
                p.reset(s)
        self.rows = np.arange(len(scenarios))

    def select(self, rows: np.ndarray) -> None:
        self.rows = self.rows[rows]

    def act_batch(self, obs: BatchObservation):
        objects = obs.objects
        out = [
            self.copies[r].act(
                Observation(
                    obs.ego[k],
                    objects[k],
                    Control(float(obs.expert_acceleration[k]), float(obs.expert_steering[k])),
                )
            )
            for k, r in enumerate(self.rows)
        ]
        return np.array([c.acceleration for c in out]), np.array([c.steering for c in out])


def batched(policy, scenarios: Sequence[Scenario]):
    """The batched form of a driving policy: its own ``act_batch`` where it has one."""
    if policy.model_version == BASELINE or isinstance(policy, BaselineExpert):
        return _Expert()
    if hasattr(policy, "act_batch"):
        return policy
    return _PerScenario(policy, scenarios)


def build_traffic(scenarios: Sequence[Scenario]) -> Traffic:
    """The initial state of scenarios on one road, padded to the largest vehicle count."""
    road = ROADS[scenarios[0].road]
    inits = [initial(s) for s in scenarios]
    has_obstacle = any(i.obstacle is not None for i in inits)
    n = max(len(i.x) for i in inits) + has_obstacle
    B = len(scenarios)
    z = np.zeros((B, n))
    t = Traffic(
        road=road,
        **{f: z.copy() for f in ("x", "y", "heading", "speed", "target_speed", "timer")},
        **{f: np.zeros((B, n), np.int64) for f in ("lane", "target_lane")},
        **{f: np.zeros((B, n), bool) for f in ("present", "obstacle", "crashed", "impact")},
        **{f: z.copy() for f in ("impact_x", "impact_y", "accel", "steer")},
        length=np.full((B, n), agents.LENGTH),
        width=np.full((B, n), agents.WIDTH),
    )
    for b, ini in enumerate(inits):
        k = len(ini.x)
        t.x[b, :k], t.y[b, :k] = ini.x, ini.y
        t.speed[b, :k], t.target_speed[b, :k] = ini.speed, ini.target_speed
        t.timer[b, :k] = ini.timer
        t.heading[b, :k] = [
            heading_of(road.name, ln, x, y) for ln, x, y in zip(ini.lane, ini.x, ini.y, strict=True)
        ]
        t.present[b, :k] = True
        if ini.obstacle is not None:
            t.x[b, -1], t.y[b, -1] = ini.obstacle
            t.present[b, -1] = t.obstacle[b, -1] = True
            t.length[b, -1] = t.width[b, -1] = 2.0
    t.lane = road.closest_lane(t.x, t.y, t.heading)
    # listed agents are placed on their lane (``World.spawn`` sets it); the closest lane
    # agrees except at a segment's very end
    for b, ini in enumerate(inits):
        t.lane[b, : len(ini.lane)] = ini.lane
    t.target_lane = t.lane.copy()
    return t


def _within_comfort(accel, jerk, lat_accel) -> np.ndarray:
    lo, hi = COMFORT["lon_accel"]
    return (
        (lo <= accel)
        & (accel <= hi)
        & (np.abs(lat_accel) <= COMFORT["lat_accel"])
        & (np.abs(jerk) <= COMFORT["jerk"])
    )


def _at_fault(t: Traffic) -> np.ndarray:
    """``episode._at_fault`` per scenario: the nearest crashed other vehicle (any other
    vehicle if none crashed) is ahead of the ego; never when the ego stood still."""
    others = t.vehicle.copy()
    others[:, 0] = False
    crashed = others & t.crashed
    partners = np.where(crashed.any(1, keepdims=True), crashed, others)
    d = np.where(partners, np.hypot(t.x - t.x[:, :1], t.y - t.y[:, :1]), np.inf)
    k = np.argmin(d, axis=1)
    rows = np.arange(len(k))
    obj = ego.objects(t, np.full(len(k), np.inf))
    return (t.speed[:, 0] >= 0.5) & (obj["x"][rows, k] >= 0.0) & partners.any(1)


def simulate(scenarios: Sequence[Scenario], policy) -> list[Episode]:
    """Episodes of ``policy`` (a ``DrivingPolicy``; batched when it has ``act_batch``) on
    scenarios of one road, in order."""
    roads = {s.road for s in scenarios}
    if len(roads) != 1 or not roads <= set(BATCHED_ROADS):
        raise ValueError(f"one batched road per call ({BATCHED_ROADS}), got {sorted(roads)}")
    road = ROADS[roads.pop()]
    drive = batched(policy, scenarios)
    t = build_traffic(scenarios)
    B = len(scenarios)
    rows = np.arange(B)  # which scenario each live row of ``t`` is
    steps = np.array([int(round(s.seconds * SIM_HZ)) for s in scenarios])
    fog_all = np.array([FOG_RANGE_M if s.condition == "fog" else np.inf for s in scenarios])
    category_all = np.array([s.category for s in scenarios])
    # accumulators, indexed by scenario
    n = np.zeros(B, np.int64)
    distance = np.zeros(B)
    offroad = np.zeros(B, np.int64)
    takeovers = np.zeros(B, np.int64)
    comfy = np.zeros(B, np.int64)
    min_ttc = np.full(B, np.inf)
    max_jerk, max_lon, max_lat = np.zeros(B), np.zeros(B), np.zeros(B)
    collided, at_fault = np.zeros(B, bool), np.zeros(B, bool)
    ended = np.array(["time"] * B, dtype=object)
    # per live row
    prev_speed = t.speed[:, 0].copy()
    prev_accel = np.zeros(B)
    state_accel, state_yaw = np.zeros(B), np.zeros(B)
    in_danger = np.zeros(B, bool)
    ego_hist, obj_hist = ego.History(), ego.History()
    reads_objects = getattr(drive, "reads_objects", True)
    for k in range(int(steps.max(initial=0))):
        live = k < steps[rows]
        if not live.all():
            keep = np.nonzero(live)[0]
            if not len(keep):
                break
            t = t.select(keep)
            rows = rows[keep]
            prev_speed, prev_accel = prev_speed[keep], prev_accel[keep]
            state_accel, state_yaw, in_danger = state_accel[keep], state_yaw[keep], in_danger[keep]
            ego_hist.frames = [f[keep] for f in ego_hist.frames]
            obj_hist.frames = [f[keep] for f in obj_hist.frames]
            if hasattr(drive, "select"):
                drive.select(keep)
        n[rows] += 1
        fog = fog_all[rows]
        obj = ego.objects(t, fog)
        ttc = ego.time_to_collision(obj, t.speed[:, 0])
        min_ttc[rows] = np.minimum(min_ttc[rows], ttc)
        danger = ttc < TAKEOVER_TTC_S
        takeovers[rows] += danger & ~in_danger
        in_danger = danger

        accel, steer = agents.act(t)
        lat, heading_error, _, _ = ego.lane_offset(t)
        frame = np.stack([t.speed[:, 0], state_accel, state_yaw, lat, heading_error], axis=1)
        ego_seen = ego_hist.append(frame)
        objects_seen = obj_hist.append(ego.object_frame(obj)) if reads_objects else None
        obs = BatchObservation(
            ego_seen,
            accel[:, 0].copy(),
            -steer[:, 0],
            category_all[rows],
            lambda o=objects_seen: o,
        )
        a, s = drive.act_batch(obs)
        accel[:, 0] = np.clip(np.asarray(a, float), MAX_BRAKE, MAX_ACCEL)
        steer[:, 0] = -np.clip(np.asarray(s, float), -MAX_STEER, MAX_STEER)
        ego.bicycle_step(t, accel, steer, DT)
        metrics.collide(t, DT)

        speed = t.speed[:, 0]
        acc = (speed - prev_speed) / DT
        jerk = np.zeros_like(acc) if k == 0 else (acc - prev_accel) / DT
        yaw = ego.yaw_rate(t)
        lat_accel = speed * yaw
        state_accel, state_yaw = acc, yaw
        max_jerk[rows] = np.maximum(max_jerk[rows], np.abs(jerk))
        max_lon[rows] = np.maximum(max_lon[rows], np.abs(acc))
        max_lat[rows] = np.maximum(max_lat[rows], np.abs(lat_accel))
        comfy[rows] += _within_comfort(acc, jerk, lat_accel)
        lat, heading_error, width, on = ego.lane_offset(t)
        distance[rows] += (prev_speed + speed) / 2 * DT * np.cos(heading_error)
        prev_speed, prev_accel = speed, acc
        outside = np.abs(lat) > width / 2 + OFFROAD_MARGIN_M
        crash = t.crashed[:, 0]
        map_end = ~crash & ~on & ~outside & road.ends
        offroad[rows] += ~crash & ~map_end & outside
        if crash.any():
            collided[rows[crash]] = True
            at_fault[rows[crash]] = _at_fault(t)[crash]
            ended[rows[crash]] = "collision"
        ended[rows[map_end]] = "map_end"
        done = crash | map_end
        if done.any():
            steps[rows[done]] = k + 1  # ends now: dropped from the batch next step
    return [
        Episode(
            s.id,
            s.category,
            drive.model_version,
            int(n[b]),
            float(distance[b]),
            bool(collided[b]),
            bool(at_fault[b]),
            int(offroad[b]),
            float(min_ttc[b]),
            float(comfy[b] / max(n[b], 1)),
            float(max_jerk[b]),
            float(max_lon[b]),
            float(max_lat[b]),
            int(takeovers[b]),
            str(ended[b]),
        )
        for b, s in enumerate(scenarios)
    ]


def _chunk_task(args: tuple[list[dict], list, str | None]) -> list[dict[str, Any]]:
    from dataloop.simulation.runner import resolve

    scenario_dicts, specs, lake = args
    scenarios = [Scenario.from_dict(d) for d in scenario_dicts]
    expert = simulate(scenarios, BaselineExpert())
    per_policy = []
    for spec in specs:
        policy = resolve(spec, lake)
        per_policy.append(
            expert if policy.model_version == BASELINE else simulate(scenarios, policy)
        )
    rows = []
    for k, scenario in enumerate(scenarios):
        for episodes in per_policy:
            ep = episodes[k]
            sub = subscores(ep, expert[k].distance_m)
            rows.append(
                {
                    **ep.to_dict(),
                    "source": scenario.source,
                    "expert_distance_m": expert[k].distance_m,
                    **sub,
                    "score": score(sub),
                }
            )
    return rows


def chunks(scenarios: Sequence[Scenario], size: int, parts: int = 1) -> list[list[Scenario]]:
    """Scenarios grouped by road (one batch drives one road), each group cut into at least
    ``parts`` pieces of at most ``size``; in suite order within each piece."""
    out = []
    for road in dict.fromkeys(s.road for s in scenarios):
        group = [s for s in scenarios if s.road == road]
        pieces = max(parts, -(-len(group) // size))
        step = -(-len(group) // pieces)
        out += [group[i : i + step] for i in range(0, len(group), step)]
    return out


def run_suite(
    scenarios: Sequence[Scenario],
    policies: list,
    *,
    lake: str | None = None,
    workers: int | None = None,
    chunk: int = CHUNK,
) -> list[dict[str, Any]]:
    """``dataloop.simulation.runner.run_suite`` on the batched backend: one row per
    (scenario, policy) in suite order, the same fields. Scenarios shard by road and into
    chunks over ``workers`` processes (default every core; 1 runs in this process); each
    chunk runs the expert (the progress reference) and every policy on its scenarios."""
    unsupported = sorted({s.road for s in scenarios} - set(BATCHED_ROADS))
    if unsupported:
        raise ValueError(f"roads {unsupported} are highway-env only")
    workers = workers or os.cpu_count() or 1
    order = {id(s): k for k, s in enumerate(scenarios)}
    parts = chunks(scenarios, chunk, workers if workers > 1 else 1)
    tasks = [([s.to_dict() for s in part], list(policies), lake) for part in parts]
    if workers == 1 or len(tasks) == 1:
        results = [_chunk_task(t) for t in tasks]
    else:
        with process_pool(min(workers, len(tasks))) as pool:
            results = list(pool.map(_chunk_task, tasks))
    per_scenario: list[list[dict]] = [[] for _ in scenarios]
    width = len(policies)
    for part, rows in zip(parts, results, strict=True):
        for k, s in enumerate(part):
            per_scenario[order[id(s)]] = rows[k * width : (k + 1) * width]
    return [row for rows in per_scenario for row in rows]
