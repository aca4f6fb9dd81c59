"""Training samples from the drive logs of a dataset version: at every 10 Hz perception frame
inside a clip, the observation the car had (rebuilt from the decoded tables with the
simulator's own feature code) and the control the expert applied (the logged CAN command).

Frame k of a drive is the k-th lane estimate. At that time the car knew: the lane estimate,
the object list (offboard labels where the drive has them, #11), CAN speed, and the previous
step's acceleration and yaw rate. The label is the control applied over the step that starts
at frame k: acceleration from the pedals as the vehicle maps them (accelerator * 3 m/s^2,
brake * 8 m/s^2) and the road-wheel steering angle.

Only expert frames are labels: drives by the baseline driver, and the safety driver's
takeover (``takeover_seconds`` after each disengagement) on drives by a model; a model never
learns from its own actions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataloop.curation import datasets as D
from dataloop.curation.scenarios import connect, curatable
from dataloop.ingest.tables import read_table
from dataloop.lake import ledger
from dataloop.lake.store import ObjectStore
from dataloop.policy.features import ego_row, object_frame, window

NEEDS = ("lanes", "vehicle_state")
"""A sample is a lane-perception frame with the CAN motion that answered it."""
ACCEL_PER_PEDAL = 3.0
BRAKE_PER_PEDAL = 8.0
_MATCH_NS = 5_000_000  # a CAN row within 5 ms of a frame is that frame's
_OBJECT_NS = 50_000_000  # objects within half a frame
LANE_KEEPING_MIN_MPS = 5.0
"""Below this speed the steering label is 0: creeping after a stop, the expert's pursuit
steering swings to its 60° limit (the same yaw takes a larger wheel angle the slower the car),
and a handful of such frames outweighs all the lane keeping in a squared loss."""
LANE_CHANGE_SETTLE_NS = 3_000_000_000  # after the turn signal goes off


@dataclass
class Samples:
    ego: np.ndarray  # (N, HISTORY, 5) float32
    objects: np.ndarray  # (N, HISTORY, MAX_OBJECTS, 7) float32
    targets: np.ndarray  # (N, 2): acceleration m/s^2, steering rad
    weights: np.ndarray  # (N,) manifest weight of the clip
    split: np.ndarray  # (N,) train / val / test
    scenario: np.ndarray  # (N,)
    report: dict[str, Any]

    def __len__(self) -> int:
        return len(self.targets)

    def select(self, mask: np.ndarray) -> Samples:
        return Samples(
            self.ego[mask],
            self.objects[mask],
            self.targets[mask],
            self.weights[mask],
            self.split[mask],
            self.scenario[mask],
            self.report,
        )


def _ns(column: pa.ChunkedArray) -> np.ndarray:
    return column.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()


def current_drive(store: ObjectStore, vehicle: str, drive: str, version: str) -> dict | None:
    """The drive as training reads it (``curation.scenarios.curatable``), if the ledger still
    has it at ``version``; else ``None``."""
    state = ledger.drive(store, vehicle, drive)
    if not ledger.at_version(state, version):
        return None
    return curatable(state, NEEDS)


def drive_frames(store: ObjectStore, drive: dict, tracks: pa.Table) -> dict[str, np.ndarray]:
    """Every frame of one drive: times, ego features, object frames, expert targets."""
    lanes = read_table(store, drive["tables"]["lanes"])
    vs = read_table(store, drive["tables"]["vehicle_state"])
    t = _ns(lanes["t"])
    can_t = _ns(vs["t"])
    accel = (
        vs["accelerator"].to_numpy() * ACCEL_PER_PEDAL - vs["brake"].to_numpy() * BRAKE_PER_PEDAL
    )
    speed, steer, yaw = (
        vs[c].to_numpy() for c in ("speed_mps", "steering_angle_rad", "yaw_rate_radps")
    )
    row = np.clip(np.searchsorted(can_t, t), 0, max(len(can_t) - 1, 0))
    found = np.abs(can_t[row] - t) <= _MATCH_NS if len(can_t) else np.zeros(len(t), bool)
    obj_t = _ns(tracks["t"])
    cols = {c: tracks[c].to_numpy() for c in ("x", "y", "vx", "vy", "length", "width")}
    lat, head = lanes["lateral_offset_m"].to_numpy(), lanes["heading_error_rad"].to_numpy()
    ego = np.zeros((len(t), 5))
    objects = np.zeros((len(t), *object_frame([]).shape))
    for k in range(len(t)):
        r, prev = row[k], row[k - 1] if k else None
        prev_ok = prev is not None and found[k - 1]
        ego[k] = ego_row(
            speed[r],
            accel[prev] if prev_ok else 0.0,
            yaw[prev] if prev_ok else 0.0,
            lat[k],
            head[k],
        )
        lo, hi = np.searchsorted(obj_t, [t[k] - _OBJECT_NS, t[k] + _OBJECT_NS])
        objects[k] = object_frame({c: cols[c][i] for c in cols} for i in range(lo, hi))
    steer = np.where(speed < LANE_KEEPING_MIN_MPS, 0.0, steer)
    targets = np.stack([accel[row], steer[row]], 1)
    ok = found & ~_lane_change(t, can_t, vs) & np.isfinite(ego).all(axis=1)
    ok &= np.isfinite(targets).all(axis=1)
    return {"t": t, "ego": ego, "objects": objects, "targets": targets, "ok": ok}


def _lane_change(t: np.ndarray, can_t: np.ndarray, vs: pa.Table) -> np.ndarray:
    """Frames of a lane change: while the turn signal is on and until the car has settled in
    the new lane. A lane change follows an intent (the route, the driver's choice) that the
    observation does not hold; learned as lane keeping, its steering (towards the side the
    car is already off-centre) teaches the model to drift."""
    on = np.isin(vs["turn_signal"].to_numpy(zero_copy_only=False), ["left", "right"])
    signal_t = can_t[on]
    if not len(signal_t):
        return np.zeros(len(t), bool)
    last = np.searchsorted(signal_t, t, side="right") - 1
    since = np.where(last >= 0, t - signal_t[np.maximum(last, 0)], np.iinfo(np.int64).max)
    return since <= LANE_CHANGE_SETTLE_NS


def expert_mask(t: np.ndarray, drive: dict, events: pa.Table, config: dict) -> np.ndarray:
    """Frames where the expert drove: all of a baseline drive; the takeovers of others."""
    if drive["model_version"] == config["expert_model_version"]:
        return np.ones(len(t), bool)
    mask = np.zeros(len(t), bool)
    starts = _ns(events.filter(pc.equal(events["type"], "disengagement"))["t"])
    for s in starts:
        mask |= (t >= s) & (t <= s + int(config["takeover_seconds"] * 1e9))
    return mask


def build_samples(store: ObjectStore, dataset_version: str, config: dict) -> Samples:
    """The samples of every clip of ``dataset_version`` (a hash prefix or ``name:seq``)."""
    record = D.find_version(store, dataset_version)
    if record is None:
        raise LookupError(f"dataset {dataset_version!r} not found")
    manifest = D.read_manifest(store, record)
    clips = manifest.to_pylist()
    for c, start, end in zip(clips, _ns(manifest["start_t"]), _ns(manifest["end_t"]), strict=True):
        c["start_ns"], c["end_ns"] = int(start), int(end)
    drives: dict[tuple, dict] = {}
    for c in clips:
        key = (c["vehicle_id"], c["drive_id"])
        if key not in drives:
            drives[key] = current_drive(store, *key, c["drive_version"])
    current = [d for d in drives.values() if d is not None]
    usable = [d for d in current if not d["set_aside"]]
    con = connect(store, usable)
    out: dict[str, list] = {k: [] for k in ("ego", "objects", "targets", "w", "split", "sc")}
    report = {
        "clips": len(clips),
        "drives": len(usable),
        "set_aside": dict(Counter(d["set_aside"] for d in current if d["set_aside"])),
        "clips_used": 0,
    }
    for d in usable:
        key = (d["vehicle_id"], d["drive_id"])
        tracks = con.sql(
            "SELECT t, x, y, vx, vy, length, width FROM tracks "
            "WHERE vehicle_id = ? AND drive_id = ? ORDER BY t, track_id",
            params=list(key),
        ).to_arrow_table()
        frames = drive_frames(store, d, tracks)
        events = read_table(store, d["tables"]["events"])
        ok = frames["ok"] & expert_mask(frames["t"], d, events, config)
        for c in (c for c in clips if (c["vehicle_id"], c["drive_id"]) == key):
            start, end = c["start_ns"], c["end_ns"]
            ks = np.flatnonzero(ok & (frames["t"] >= start) & (frames["t"] <= end))
            if not len(ks):
                continue
            report["clips_used"] += 1
            idx = np.stack([window(k) for k in ks])
            out["ego"].append(frames["ego"][idx])
            out["objects"].append(frames["objects"][idx])
            out["targets"].append(frames["targets"][ks])
            out["w"].append(np.full(len(ks), c["weight"]))
            out["split"].append(np.full(len(ks), c["split"]))
            out["sc"].append(np.full(len(ks), c["scenario"]))
    if not out["targets"]:
        raise ValueError(f"dataset {dataset_version!r} has no expert frames with lane perception")
    cat = {k: np.concatenate(v) for k, v in out.items()}
    report["samples"] = int(len(cat["targets"]))
    return Samples(
        cat["ego"].astype(np.float32),
        cat["objects"].astype(np.float32),
        cat["targets"].astype(np.float32),
        cat["w"].astype(np.float32),
        cat["split"],
        cat["sc"],
        report,
    )
