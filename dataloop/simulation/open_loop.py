"""Open-loop evaluation on held-out clips (val/test split of the latest dataset).

A policy outputs controls, not trajectories, so ADE/FDE are defined on the trajectory its
controls produce: from every start frame of a clip (every ``STRIDE_S``), take the logged
initial state (speed, heading 0 at the origin), feed the policy the logged observation of each
frame of the horizon (teacher forcing), integrate its (acceleration, steering) with the
kinematic bicycle model highway-env uses, and compare with the logged trajectory (integrated
from CAN speed and yaw rate, as ``ego_pose`` is) over ``HORIZON_S``:
ADE = mean displacement over the horizon, FDE = displacement at its end. Action RMSE compares
the controls with the logged expert controls frame by frame.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dataloop.fleet.simulator.traffic import DT
from dataloop.policy.features import window
from dataloop.policy.observation import Control, DrivingPolicy, Observation

HORIZON_S = 3.0
STRIDE_S = 1.0
EGO_LENGTH_M = 5.0  # highway-env's vehicle length


def bicycle_yaw_rate(speed: float, steering: float) -> float:
    beta = math.atan(0.5 * math.tan(steering))
    return speed * math.sin(beta) / (EGO_LENGTH_M / 2)


def _integrate(speeds: np.ndarray, yaw_rates: np.ndarray) -> np.ndarray:
    x = y = h = 0.0
    out = np.zeros((len(speeds), 2))
    for i, (v, w) in enumerate(zip(speeds, yaw_rates, strict=True)):
        x += v * math.cos(h) * DT
        y += v * math.sin(h) * DT
        h += w * DT
        out[i] = (x, y)
    return out


def rollout_errors(frames: dict[str, np.ndarray], policy: DrivingPolicy) -> dict[str, list]:
    """Displacement errors and control errors of ``policy`` on one clip's frames
    (``ego``, ``objects``, ``targets`` as ``training.samples.drive_frames`` gives them)."""
    ego, objects, targets = frames["ego"], frames["objects"], frames["targets"]
    n, steps, stride = len(ego), int(HORIZON_S / DT), int(STRIDE_S / DT)
    ade, fde, action = [], [], []
    for start in range(0, n - steps - 1, stride):
        speed = float(ego[start, 0])
        pred_v, pred_w, log_v, log_w = [], [], [], []
        for k in range(start, start + steps):
            idx = window(k)
            obs = Observation(ego[idx], objects[idx], Control(*map(float, targets[k])))
            c = policy.act(obs)
            action.append((c.acceleration - targets[k, 0], c.steering - targets[k, 1]))
            pred_w.append(bicycle_yaw_rate(speed, c.steering))
            speed = max(0.0, speed + c.acceleration * DT)
            pred_v.append(speed)
            log_v.append(float(ego[k + 1, 0]))
            log_w.append(float(ego[k + 1, 2]))  # frame k+1 holds step k's yaw rate
        d = np.linalg.norm(
            _integrate(np.array(pred_v), np.array(pred_w))
            - _integrate(np.array(log_v), np.array(log_w)),
            axis=1,
        )
        ade.append(float(d.mean()))
        fde.append(float(d[-1]))
    return {"ade": ade, "fde": fde, "action": action}


def summarise(errors: dict[str, list]) -> dict[str, Any]:
    if not errors["ade"]:
        return {"windows": 0}
    action = np.array(errors["action"])
    return {
        "windows": len(errors["ade"]),
        "ade_m": float(np.mean(errors["ade"])),
        "fde_m": float(np.mean(errors["fde"])),
        "rmse_acceleration": float(np.sqrt(np.mean(action[:, 0] ** 2))),
        "rmse_steering": float(np.sqrt(np.mean(action[:, 1] ** 2))),
    }


def evaluate(store, policies: list[DrivingPolicy], max_clips: int = 50) -> dict[str, dict]:
    """ADE/FDE and action RMSE per policy over the held-out clips of the latest dataset."""
    from dataloop.curation import datasets as D
    from dataloop.curation.scenarios import connect
    from dataloop.training.samples import _ns, current_drive, drive_frames

    errors: dict[str, dict[str, list]] = {
        p.model_version: {"ade": [], "fde": [], "action": []} for p in policies
    }
    held = D.held_out_clips(store).slice(0, max_clips)
    starts, ends = _ns(held["start_t"]), _ns(held["end_t"])
    for clip, lo, hi in zip(held.to_pylist(), starts, ends, strict=True):
        drive = current_drive(store, clip["vehicle_id"], clip["drive_id"], clip["drive_version"])
        if drive is None:
            continue
        tracks = (
            connect(store, [drive])
            .execute("SELECT t, x, y, vx, vy, length, width FROM tracks ORDER BY t, track_id")
            .to_arrow_table()
        )
        frames = drive_frames(store, drive, tracks)
        if not len(frames["t"]):
            continue
        keep = (frames["t"] >= lo) & (frames["t"] <= hi)
        clip_frames = {k: frames[k][keep] for k in ("ego", "objects", "targets")}
        for p in policies:
            for k, v in rollout_errors(clip_frames, p).items():
                errors[p.model_version][k].extend(v)
    return {k: summarise(v) for k, v in errors.items()}
