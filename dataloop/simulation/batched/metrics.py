"""Collisions between oriented boxes, in batch: highway-env's check (``RoadObject.
handle_collisions``) for every pair of every scenario. A bounding-circle test discards most
pairs; the separating-axis test runs on the few left, with each box's swept extent over the
coming step, so a collision between two steps is caught (``will_intersect``) as well as an
overlap now.

The score's other quantities (drivable area, time to collision, progress, comfort) are
accumulated by the runner from ``ego.lane_offset`` and ``ego.time_to_collision``.
"""

from __future__ import annotations

import numpy as np

from dataloop.simulation.batched.agents import Traffic


def _extent(cx, cy, heading, length, width, nx, ny):
    """(min, max) of a box's projection on the axis (nx, ny)."""
    c = cx * nx + cy * ny
    half = length / 2 * np.abs(np.cos(heading) * nx + np.sin(heading) * ny) + width / 2 * (
        np.abs(-np.sin(heading) * nx + np.cos(heading) * ny)
    )
    return c - half, c + half


def boxes_collide(a: dict, b: dict, dt: float):
    """Separating-axis test of boxes ``a`` and ``b`` (dicts of equal-shape arrays: x, y,
    heading, length, width, vx, vy), as highway-env's ``are_polygons_intersecting``:
    (intersecting now, will intersect within ``dt`` at constant velocities, and the
    translation (x, y) that would separate them). Axes: each box's four edge normals, in
    highway-env's order (the translation takes the first axis of least overlap)."""
    intersecting = np.ones(np.shape(a["x"]), dtype=bool)
    will = intersecting.copy()
    dvx = (a["vx"] - b["vx"]) * dt
    dvy = (a["vy"] - b["vy"]) * dt
    least = np.full(np.shape(a["x"]), np.inf)
    tx, ty = np.zeros_like(least), np.zeros_like(least)
    cx, cy = a["x"] - b["x"], a["y"] - b["y"]
    for h in (a["heading"], b["heading"]):
        c, s = np.cos(h), np.sin(h)
        for nx, ny in ((-c, -s), (-s, c), (c, s), (s, -c)):
            min_a, max_a = _extent(a["x"], a["y"], a["heading"], a["length"], a["width"], nx, ny)
            min_b, max_b = _extent(b["x"], b["y"], b["heading"], b["length"], b["width"], nx, ny)
            intersecting &= _interval_distance(min_a, max_a, min_b, max_b) <= 0
            proj = nx * dvx + ny * dvy
            min_a = np.where(proj < 0, min_a + proj, min_a)
            max_a = np.where(proj < 0, max_a, max_a + proj)
            distance = _interval_distance(min_a, max_a, min_b, max_b)
            will &= distance <= 0
            better = np.abs(distance) < least
            least = np.where(better, np.abs(distance), least)
            sign = np.where(cx * nx + cy * ny > 0, 1.0, -1.0)
            tx = np.where(better, sign * nx, tx)
            ty = np.where(better, sign * ny, ty)
    return intersecting, will, (least * tx, least * ty)


def _interval_distance(min_a, max_a, min_b, max_b):
    return np.where(min_a < min_b, min_b - max_a, min_a - max_b)


def collide(t: Traffic, dt: float) -> None:
    """Every pair's check after a step (in place): overlapping vehicles crash now, and a
    collision predicted within the next step crashes them then (``impact``); an obstacle
    never moves, so only the vehicle hitting it is marked."""
    B, N = t.x.shape
    radius = np.hypot(t.length, t.width) / 2
    # highway-env checks each vehicle against later ones, and against the road's objects;
    # first the bounding circles (grown by the first one's travel in a step).
    # (along x first: cheap, and discards nearly every pair on these roads)
    dx = t.x[:, None, :] - t.x[:, :, None]
    reach_max = 2 * radius.max() + t.speed.max(initial=0.0) * dt
    cand = (np.abs(dx) <= reach_max) & _UPPER(N)
    cand &= t.vehicle[:, :, None] & t.present[:, None, :]
    bb, ii, jj = np.nonzero(cand)
    ddx = t.x[bb, jj] - t.x[bb, ii]
    ddy = t.y[bb, jj] - t.y[bb, ii]
    reach = radius[bb, ii] + radius[bb, jj] + t.speed[bb, ii] * dt
    near = (reach >= 0) & (ddx * ddx + ddy * ddy <= reach * reach)
    if not near.any():
        return
    bb, ii, jj = bb[near], ii[near], jj[near]

    def box(k):
        return {
            "x": t.x[bb, k],
            "y": t.y[bb, k],
            "heading": t.heading[bb, k],
            "length": t.length[bb, k],
            "width": t.width[bb, k],
            "vx": t.speed[bb, k] * np.cos(t.heading[bb, k]),
            "vy": t.speed[bb, k] * np.sin(t.heading[bb, k]),
        }

    now, will, (tx, ty) = boxes_collide(box(ii), box(jj), dt)
    # Each vehicle is pushed by half the separating translation (all of it off an
    # obstacle) at the next step, where highway-env applies its ``impact``; with several
    # collisions the last pair in highway-env's loop order sets it: the pairs where a
    # vehicle is second come before those where it is first.
    other_obstacle = t.obstacle[bb, jj]
    for k, share, hit in (
        (jj, -0.5, ~other_obstacle),
        (ii, np.where(other_obstacle, 1.0, 0.5), np.ones_like(will)),
    ):
        t.crashed[bb[now & hit], k[now & hit]] = True
        w = will & hit
        t.impact[bb[w], k[w]] = True
        t.impact_x[bb[w], k[w]] = (share * tx)[w]
        t.impact_y[bb[w], k[w]] = (share * ty)[w]


_UPPERS: dict[int, np.ndarray] = {}


def _UPPER(n: int) -> np.ndarray:  # noqa: N802
    """Pairs (i, j) with i < j."""
    if n not in _UPPERS:
        _UPPERS[n] = np.triu(np.ones((n, n), dtype=bool), 1)[None]
    return _UPPERS[n]
