"""IDM car-following and MOBIL lane changes for every vehicle of every scenario at once,
with highway-env's parameters and decision order (``IDMVehicle.act``): follow the road,
decide a lane change once per ``LANE_CHANGE_DELAY`` (or abort one that conflicts), steer to
the target lane with the pursuit controller, and take the smaller IDM acceleration of the
current and the target lane.

State arrays are (B scenarios, N vehicles); vehicle 0 is the ego, padding slots are absent,
a merge's standing obstacle is a slot that never acts or moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataloop.simulation.batched.roads import Road, wrap_to_pi

# highway_env.vehicle.behavior.IDMVehicle / controller.ControlledVehicle
ACC_MAX = 6.0
COMFORT_ACC_MAX = 3.0
COMFORT_ACC_MIN = -5.0
DISTANCE_WANTED = 5.0 + 5.0
TIME_WANTED = 1.5
DELTA = 4.0
"""highway-env randomises DELTA on its own vehicles, but ``World`` copies them into
vehicles of its own classes, which keep the class default."""
LANE_CHANGE_MIN_ACC_GAIN = 0.2
LANE_CHANGE_MAX_BRAKING_IMPOSED = 2.0
LANE_CHANGE_DELAY = 1.0
TAU_PURSUIT = 0.5 * 0.2
KP_LATERAL = 1 / 0.6
KP_HEADING = 1 / 0.2
MAX_STEERING_ANGLE = np.pi / 3
LENGTH, WIDTH = 5.0, 2.0
SQRT_AB = np.sqrt(-COMFORT_ACC_MAX * COMFORT_ACC_MIN)


def not_zero(x: np.ndarray, eps: float = 1e-2) -> np.ndarray:
    return np.where(np.abs(x) > eps, x, np.where(x >= 0, eps, -eps))


@dataclass
class Traffic:
    """Every vehicle's state; highway-env coordinates (y right, heading clockwise)."""

    road: Road
    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    speed: np.ndarray
    target_speed: np.ndarray
    lane: np.ndarray
    target_lane: np.ndarray
    timer: np.ndarray
    present: np.ndarray
    obstacle: np.ndarray
    crashed: np.ndarray
    impact: np.ndarray
    """A collision predicted for the coming step (highway-env's ``impact``): crashed then,
    and pushed by (``impact_x``, ``impact_y``)."""
    impact_x: np.ndarray
    impact_y: np.ndarray
    length: np.ndarray
    width: np.ndarray
    accel: np.ndarray
    steer: np.ndarray
    """The last applied action (highway-env's sign: positive steers right)."""

    @property
    def vehicle(self) -> np.ndarray:
        """Slots that are driving vehicles (not padding, not obstacles)."""
        return self.present & ~self.obstacle

    def select(self, rows: np.ndarray) -> Traffic:
        return Traffic(
            self.road,
            *(getattr(self, f)[rows] for f in _ARRAYS),  # type: ignore[arg-type]
        )


_ARRAYS = tuple(f for f in Traffic.__dataclass_fields__ if f != "road")


class Neighbours:
    """Projections of every vehicle on the lanes of the vehicles asking, and the preceding
    and following vehicle on such a lane (highway-env's ``Road.neighbour_vehicles``)."""

    @staticmethod
    def on_lanes(t: Traffic, rows: tuple[np.ndarray, np.ndarray], lane: np.ndarray):
        """For M asking vehicles (scenario ``rows[0]``, slot ``rows[1]``) and a lane each:
        (front slot, rear slot) or -1, the asking vehicle's longitudinal on that lane and
        every vehicle's, (M,), (M,), (M,), (M, N)."""
        b, i = rows
        s, r = t.road.local(lane[:, None], t.x[b], t.y[b])  # (M, N)
        n = t.x.shape[1]
        own = s[np.arange(len(b)), i]
        on = t.road.on_lane(lane[:, None], s, r, margin=1.0) & t.present[b]
        on &= np.arange(n)[None, :] != i[:, None]
        ahead = on & (own[:, None] <= s)
        behind = on & (s < own[:, None])
        front = np.where(ahead.any(1), np.argmin(np.where(ahead, s, np.inf), axis=1), -1)
        rear = np.where(behind.any(1), np.argmax(np.where(behind, s, -np.inf), axis=1), -1)
        return front, rear, own, s


def idm_free(t: Traffic, v, lane, target_speed) -> np.ndarray:
    """IDM's free-road term."""
    target = np.clip(target_speed, 0, t.road.speed_limit[lane])
    return COMFORT_ACC_MAX * (1 - np.power(np.maximum(v, 0) / np.abs(not_zero(target)), DELTA))


def idm_gap(v, he, vf, hf, d) -> np.ndarray:
    """IDM's interaction term behind a vehicle ``d`` metres ahead (``desired_gap``: the
    closing speed projected on the follower's heading)."""
    ce, se = np.cos(he), np.sin(he)
    dv = (v * ce - vf * np.cos(hf)) * ce + (v * se - vf * np.sin(hf)) * se
    d_star = DISTANCE_WANTED + v * TIME_WANTED + v * dv / (2 * SQRT_AB)
    return COMFORT_ACC_MAX * np.power(d_star / not_zero(d), 2)


def idm(
    t: Traffic,
    s_own: np.ndarray,
    b: np.ndarray,
    ego: np.ndarray,
    front: np.ndarray,
) -> np.ndarray:
    """IDM acceleration of vehicles ``ego`` (-1: none -> 0) behind ``front`` (-1: free
    road), for scenarios ``b``; gaps along the ego's own lane (``s_own[b, ego, :]`` holds
    every vehicle's longitudinal on it)."""
    e = np.maximum(ego, 0)
    f = np.maximum(front, 0)
    v = t.speed[b, e]
    acc = idm_free(t, v, t.lane[b, e], t.target_speed[b, e])
    d = s_own[b, e, f] - s_own[b, e, e]
    gap = idm_gap(v, t.heading[b, e], t.speed[b, f], t.heading[b, f], d)
    acc = acc - np.where(front >= 0, gap, 0.0)
    is_vehicle = (ego >= 0) & ~t.obstacle[b, e]
    return np.where(is_vehicle, acc, 0.0)


def idm_all(t: Traffic, s_own: np.ndarray, own_s: np.ndarray, front: np.ndarray) -> np.ndarray:
    """``idm`` for every slot behind its (B, N) ``front`` at once (no fancy indexing)."""
    f = np.maximum(front, 0)
    acc = idm_free(t, t.speed, t.lane, t.target_speed)
    d = np.take_along_axis(s_own, f[..., None], axis=2)[..., 0] - own_s
    vf = np.take_along_axis(t.speed, f, axis=1)
    hf = np.take_along_axis(t.heading, f, axis=1)
    acc = acc - np.where(front >= 0, idm_gap(t.speed, t.heading, vf, hf, d), 0.0)
    return np.where(t.vehicle, acc, 0.0)


def desired_gap(t: Traffic, b, e, f) -> np.ndarray:
    v, he, hf, vf = t.speed[b, e], t.heading[b, e], t.heading[b, f], t.speed[b, f]
    dv = (v * np.cos(he) - vf * np.cos(hf)) * np.cos(he) + (
        v * np.sin(he) - vf * np.sin(hf)
    ) * np.sin(he)
    return DISTANCE_WANTED + v * TIME_WANTED + v * dv / (2 * SQRT_AB)


def steering(t: Traffic) -> np.ndarray:
    """The pursuit controller towards each vehicle's target lane (``steering_control``)."""
    road, lane = t.road, t.target_lane
    s, r = road.local(lane, t.x, t.y)
    future = road.heading_at(lane, s + t.speed * TAU_PURSUIT)
    speed = not_zero(t.speed)
    heading_cmd = np.arcsin(np.clip(-KP_LATERAL * r / speed, -1, 1))
    heading_ref = future + np.clip(heading_cmd, -np.pi / 4, np.pi / 4)
    rate = KP_HEADING * wrap_to_pi(heading_ref - t.heading)
    slip = np.arcsin(np.clip(LENGTH / 2 / speed * rate, -1, 1))
    steer = np.arctan(2 * np.tan(slip))
    return np.clip(steer, -MAX_STEERING_ANGLE, MAX_STEERING_ANGLE)


def act(t: Traffic) -> tuple[np.ndarray, np.ndarray]:
    """Every vehicle's IDM/MOBIL decision: updates target lanes and lane-change timers in
    place and returns (acceleration, steering) for all slots (the ego's is the expert's)."""
    road = t.road
    B, N = t.x.shape
    live = t.vehicle & ~t.crashed
    # Every vehicle's longitudinal on every vehicle's own lane, (B, asking, other), and
    # whether it is on that lane (within a metre of it).
    if road.aligned and road.lanes <= 62:
        # Lanes along +x: the longitudinal is x less the lane's start, and the lanes a
        # vehicle is on form a bit mask per vehicle: no (B, N, N) gathers.
        s_own = t.x[:, None, :] - road.start[t.lane, 0][:, :, None]
        lanes = np.arange(road.lanes)[None, :, None]
        s_lane, r_lane = road.local(lanes, t.x[:, None, :], t.y[:, None, :])
        bits = road.on_lane(lanes, s_lane, r_lane, margin=1.0).astype(np.int64)
        mask = (bits << lanes).sum(axis=1)
        on = ((mask[:, None, :] >> t.lane[:, :, None]) & 1).astype(bool)
    else:
        s_own, r_own = road.local(t.lane[:, :, None], t.x[:, None, :], t.y[:, None, :])
        on = road.on_lane(t.lane[:, :, None], s_own, r_own, margin=1.0)

    # follow_road: past the end of the target lane, continue on the next one.
    ts, _ = road.local(t.target_lane, t.x, t.y)
    past = live & (ts > road.length[t.target_lane] - 2.5)
    t.target_lane = np.where(past, road.next[t.target_lane], t.target_lane)

    changing = live & (t.lane != t.target_lane)
    # A lane change under way: abort it when another vehicle is changing into the same lane
    # just ahead (within its desired gap), on the same road segment.
    same_segment = road.segment[t.lane] == road.segment[t.target_lane]
    asking = changing & same_segment
    if asking.any():
        b, i = np.nonzero(asking)
        others = t.vehicle[b] & (t.target_lane[b] == t.target_lane[b, i][:, None])
        others &= t.lane[b] != t.target_lane[b, i][:, None]
        others &= np.arange(N)[None, :] != i[:, None]
        d = s_own[b, i, :] - s_own[b, i, i][:, None]
        bb = np.repeat(b, N).reshape(-1, N)
        ii = np.repeat(i, N).reshape(-1, N)
        jj = np.broadcast_to(np.arange(N), (len(b), N))
        d_star = desired_gap(t, bb, ii, jj)
        abort = (others & (d > 0) & (d < d_star)).any(1)
        t.target_lane[b[abort], i[abort]] = t.lane[b[abort], i[abort]]

    # Current-lane neighbours of everybody.
    own_s = np.diagonal(s_own, axis1=1, axis2=2)
    on &= t.present[:, None, :] & _not_self(N)
    ahead = np.where(on & (own_s[:, :, None] <= s_own), s_own, np.inf)
    front = np.argmin(ahead, axis=2)
    front = np.where(np.take_along_axis(ahead, front[..., None], 2)[..., 0] < np.inf, front, -1)

    # MOBIL, once per LANE_CHANGE_DELAY, for vehicles keeping their lane.
    due = live & (t.lane == t.target_lane) & (t.timer > LANE_CHANGE_DELAY)
    t.timer = np.where(due, 0.0, t.timer)
    if due.any():
        b, i = np.nonzero(due)
        self_a = idm(t, s_own, b, i, front[b, i])
        for k in (0, 1):  # left then right: the right one wins when both qualify
            cand = road.side[t.lane[b, i], k]
            ok = cand >= 0
            lane = np.maximum(cand, 0)
            s_c, r_c = road.local(lane, t.x[b, i], t.y[b, i])
            ok &= road.reachable(lane, s_c, r_c) & (np.abs(t.speed[b, i]) >= 1)
            if not ok.any():
                continue
            new_front, new_rear, _, _ = Neighbours.on_lanes(t, (b, i), lane)
            # The new follower must not brake harder than allowed behind us...
            pred_following = idm(t, s_own, b, new_rear, np.where(new_rear >= 0, i, -1))
            ok &= ~(pred_following < -LANE_CHANGE_MAX_BRAKING_IMPOSED)
            # ... and we must gain enough (politeness 0: our own gain only).
            self_pred = idm(t, s_own, b, i, new_front)
            ok &= ~(self_pred - self_a < LANE_CHANGE_MIN_ACC_GAIN)
            t.target_lane[b[ok], i[ok]] = cand[ok]

    steer = steering(t)
    accel = idm_all(t, s_own, own_s, front)
    changing = live & (t.lane != t.target_lane)
    if changing.any():
        b, i = np.nonzero(changing)
        tf, _, _, _ = Neighbours.on_lanes(t, (b, i), t.target_lane[b, i])
        accel[b, i] = np.minimum(accel[b, i], idm(t, s_own, b, i, tf))
    accel = np.clip(accel, -ACC_MAX, ACC_MAX)
    # Crashed vehicles keep their last command (the kinematics brake them to a stop).
    accel = np.where(live, accel, t.accel)
    steer = np.where(live, steer, t.steer)
    return accel, steer


_NOT_SELF: dict[int, np.ndarray] = {}


def _not_self(n: int) -> np.ndarray:
    if n not in _NOT_SELF:
        _NOT_SELF[n] = ~np.eye(n, dtype=bool)[None]
    return _NOT_SELF[n]
