"""The kinematic bicycle every vehicle moves by (highway-env's ``Vehicle.step``: a
bicycle with the centre of gravity mid-wheelbase, steering and acceleration applied for one
step), and what the ego perceives: its lane offset and the objects around it, in the
contract's ego frame (x forward, y left), as ``World.lane_offset``/``World.objects`` give it.
"""

from __future__ import annotations

import numpy as np

from dataloop.policy.observation import HISTORY, MAX_OBJECTS, OBJECT_FEATURES
from dataloop.simulation.batched.agents import LENGTH, Traffic

MAX_SPEED = 40.0


def bicycle_step(t: Traffic, accel: np.ndarray, steer: np.ndarray, dt: float) -> None:
    """Move every vehicle one step (in place); obstacles and padding stay."""
    moving = t.vehicle
    accel = np.where(t.crashed, -t.speed, accel)  # crashed: brake to a stop, wheels straight
    steer = np.where(t.crashed, 0.0, steer)
    accel = np.where(t.speed > MAX_SPEED, np.minimum(accel, MAX_SPEED - t.speed), accel)
    accel = np.where(t.speed < -MAX_SPEED, np.maximum(accel, -MAX_SPEED - t.speed), accel)
    beta = np.arctan(0.5 * np.tan(steer))
    t.timer = np.where(moving, t.timer + dt, t.timer)
    t.x = np.where(moving, t.x + t.speed * np.cos(t.heading + beta) * dt, t.x)
    t.y = np.where(moving, t.y + t.speed * np.sin(t.heading + beta) * dt, t.y)
    pushed = t.impact & moving
    t.x = np.where(pushed, t.x + t.impact_x, t.x)
    t.y = np.where(pushed, t.y + t.impact_y, t.y)
    t.crashed = t.crashed | pushed
    t.impact = np.zeros_like(t.impact)
    t.heading = np.where(moving, t.heading + t.speed * np.sin(beta) / (LENGTH / 2) * dt, t.heading)
    t.speed = np.where(moving, t.speed + accel * dt, t.speed)
    t.accel, t.steer = np.where(moving, accel, t.accel), np.where(moving, steer, t.steer)
    t.lane = np.where(moving, t.road.closest_lane(t.x, t.y, t.heading), t.lane)


def yaw_rate(t: Traffic) -> np.ndarray:
    """The ego's yaw rate, ISO sign (``drive._yaw_rate``), from its last applied steering."""
    beta = np.arctan(0.5 * np.tan(t.steer[:, 0]))
    return -t.speed[:, 0] * np.sin(beta) / (LENGTH / 2)


def lane_offset(t: Traffic) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lateral offset, left positive; heading error; lane width; on its lane) of the ego."""
    lane = t.lane[:, 0]
    s, r = t.road.local(lane, t.x[:, 0], t.y[:, 0])
    err = t.road.heading_at(lane, s) - t.heading[:, 0]
    err = err - 2 * np.pi * np.round(err / (2 * np.pi))  # math.remainder
    on = t.road.on_lane(lane, s, r)
    return -r, err, t.road.width[lane], on


def objects(t: Traffic, fog_range: np.ndarray) -> dict[str, np.ndarray]:
    """Every other vehicle in the ego frame, (B, N) arrays, with ``seen``: within the
    window ``World.objects`` reports (and within ``fog_range``, inf when clear)."""
    h = -t.heading[:, :1]
    c, s = np.cos(h), np.sin(h)
    dx = t.x - t.x[:, :1]
    dn = t.y[:, :1] - t.y
    x = c * dx + s * dn
    y = -s * dx + c * dn
    vx_w, vy_w = t.speed * np.cos(t.heading), t.speed * np.sin(t.heading)
    vx = c * vx_w - s * vy_w
    vy = -s * vx_w - c * vy_w
    seen = t.vehicle.copy()
    seen[:, 0] = False
    seen &= (x > -40) & (x < 100) & (np.abs(y) < 30)
    seen &= np.hypot(x, y) < fog_range[:, None]
    return {"x": x, "y": y, "vx": vx, "vy": vy, "length": t.length, "width": t.width, "seen": seen}


def time_to_collision(obj: dict[str, np.ndarray], ego_speed: np.ndarray) -> np.ndarray:
    """``traffic.time_to_collision`` over the seen objects: inf when nothing closes in."""
    gap = obj["x"] - obj["length"] / 2 - 2.5
    corridor = np.abs(obj["y"]) <= (2.0 + obj["width"]) / 2 + 0.3
    closing = ego_speed[:, None] - obj["vx"]
    valid = obj["seen"] & (gap > 0) & corridor & (closing > 0.1)
    ttc = np.where(valid, gap / np.where(valid, closing, 1.0), np.inf)
    return ttc.min(axis=1)


def object_frame(obj: dict[str, np.ndarray]) -> np.ndarray:
    """(B, MAX_OBJECTS, 7): the nearest seen objects first (stable), zero-padded, as
    ``features.object_frame``."""
    dist = np.where(obj["seen"], np.hypot(obj["x"], obj["y"]), np.inf)
    order = np.argsort(dist, axis=1, kind="stable")[:, :MAX_OBJECTS]
    B = dist.shape[0]
    k = order.shape[1]
    rows = np.arange(B)[:, None]
    present = np.isfinite(dist[rows, order])
    frame = np.zeros((B, MAX_OBJECTS, len(OBJECT_FEATURES)))
    cols = [
        np.ones_like(dist),
        obj["x"],
        obj["y"],
        obj["vx"],
        obj["vy"],
        obj["length"],
        obj["width"],
    ]
    for f, col in enumerate(cols):
        frame[:, :k, f] = np.where(present, col[rows, order], 0.0)
    return frame


class History:
    """The last second of frames of every scenario; before a second has passed, the first
    frame repeats (``features.window``)."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def append(self, frame: np.ndarray) -> np.ndarray:
        self.frames.append(frame)
        del self.frames[:-HISTORY]
        idx = np.clip(np.arange(len(self.frames) - HISTORY, len(self.frames)), 0, None)
        return np.stack([self.frames[i] for i in idx], axis=1)
