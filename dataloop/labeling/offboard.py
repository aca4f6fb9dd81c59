"""Offboard labels from the car's own object lists, using what the car could not: the future.

1. Association: onboard tracks that end are linked to tracks that start shortly after, where
   the first one's constant-velocity prediction lands (repairs the tracker's id switches).
2. Smoothing: a Kalman filter and Rauch-Tung-Striebel smoother per track over a
   constant-velocity model in the ego frame, on the full frame grid, so gaps are filled.
3. Ghosts: tracks seen in fewer than ``min_frames`` frames are dropped, unless the log ends
   while they are seen (a vehicle that cuts in just before a crash is no ghost).
4. Confidence per track, from length, coverage and onboard confidence.

Positions are in the ego frame, which moves at the ego speed and turns at its yaw rate (both
from CAN): the smoother's velocity is the motion relative to that frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dataloop import rules
from dataloop.lake.hashing import sha256_bytes
from dataloop.rules import schemas as S

LABEL_SCHEMA = pa.schema(
    [
        ("vehicle_id", pa.string()),
        ("drive_id", pa.string()),
        ("t", pa.timestamp("ns", tz="UTC")),
        ("track_id", pa.int64()),
        ("object_class", pa.string()),
        ("x", pa.float64()),
        ("y", pa.float64()),
        ("vx", pa.float64()),
        ("vy", pa.float64()),
        ("length", pa.float64()),
        ("width", pa.float64()),
        ("height", pa.float64()),
        ("heading", pa.float64()),
        ("confidence", pa.float64()),
        ("observed", pa.bool_()),
        ("reviewed", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class Params:
    raw: dict[str, Any]
    version: str

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.raw[section]


REVISION = b"2"
"""The labeller's own revision: bumped when its code changes what it labels."""


def load_params(path: Path, data: bytes | None = None) -> Params:
    """The parameters (of ``path``, or ``data``, its bytes), validated (``RulesError``);
    their version is the labeller's (revision and parameters hashed)."""
    data = rules.read_bytes(path, data)
    return Params(rules.load(path, S.Offboard, data), sha256_bytes(REVISION + b"\0" + data)[:12])


def _arrays(objects: pa.Table) -> dict[str, np.ndarray]:
    cols = {
        c: objects.column(c).to_numpy(zero_copy_only=False)
        for c in (
            "object_id",
            "x",
            "y",
            "vx",
            "vy",
            "length",
            "width",
            "height",
            "heading",
            "confidence",
        )
    }
    cols["t"] = objects.column("t").cast(pa.int64()).to_numpy()
    cols["cls"] = np.asarray(objects.column("object_class").to_pylist(), dtype=object)
    return cols


def _associate(tracks: dict[int, np.ndarray], a: dict, rvx, rvy, params: Params) -> dict[int, int]:
    """Map each onboard id to the id of the chain it is linked into."""
    gap_ns = params["association"]["max_gap_s"] * 1e9
    gate = params["association"]["gate_m"]
    ends = {k: idx[-1] for k, idx in tracks.items()}
    starts = {k: idx[0] for k, idx in tracks.items()}
    pairs = []
    start_ids = np.array(list(starts))
    start_t = np.array([a["t"][starts[k]] for k in start_ids])
    for k, e in ends.items():
        dt = start_t - a["t"][e]
        ok = (dt > 0) & (dt <= gap_ns)
        for j in np.flatnonzero(ok):
            b = start_ids[j]
            s = starts[b]
            if a["cls"][s] != a["cls"][e]:
                continue
            secs = dt[j] / 1e9
            px, py = a["x"][e] + rvx[e] * secs, a["y"][e] + rvy[e] * secs
            d = float(np.hypot(a["x"][s] - px, a["y"][s] - py))
            if d <= gate:
                pairs.append((d, k, int(b)))
    nxt, prev = {}, {}
    for _, k, b in sorted(pairs):
        if k not in nxt and b not in prev and k != b:
            nxt[k], prev[b] = b, k
    root = {}
    for k in tracks:
        r = k
        while r in prev:
            r = prev[r]
        root[k] = r
    return root


def _smooth_axis(t: list, zs: list, zv: list, rs: list, rv: list, q2: float) -> tuple:
    """One axis of one track: the 2-state (position, velocity) filter and RTS smoother with
    covariance ``[[a, b], [b, c]]`` in closed form, over plain floats (a track's steps are
    sequential; numpy's per-call cost would dominate 2x2 algebra). ``zs[i]`` is NaN where
    the track was unseen. Returns the smoothed positions and velocities."""
    n = len(t)
    fs, fv, fa, fb, fc = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    ps, pv, pa, pb, pc = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    s, v, a, b, c = zs[0], zv[0], rs[0], 0.0, rv[0]
    for i in range(n):
        if i:
            dt = t[i] - t[i - 1]
            s += dt * v
            a += 2 * dt * b + dt * dt * c + q2 * dt**4 / 4
            b += dt * c + q2 * dt**3 / 2
            c += q2 * dt * dt
        ps[i], pv[i], pa[i], pb[i], pc[i] = s, v, a, b, c
        if zs[i] == zs[i]:  # seen (not NaN)
            sa, sc = a + rs[i], c + rv[i]
            det = sa * sc - b * b
            k11, k12 = (a * sc - b * b) / det, b * rs[i] / det
            k21, k22 = b * rv[i] / det, (c * sa - b * b) / det
            es, ev = zs[i] - s, zv[i] - v
            s, v = s + k11 * es + k12 * ev, v + k21 * es + k22 * ev
            a, b, c = a - (k11 * a + k12 * b), b - (k11 * b + k12 * c), c - (k21 * b + k22 * c)
        fs[i], fv[i], fa[i], fb[i], fc[i] = s, v, a, b, c
    xs, xv = fs[:], fv[:]
    for i in range(n - 2, -1, -1):
        dt = t[i + 1] - t[i]
        # C = Pf F^T Pp[i+1]^-1, with Pf F^T = [[a + dt b, b], [b + dt c, c]]
        m11, m12, m21, m22 = fa[i] + dt * fb[i], fb[i], fb[i] + dt * fc[i], fc[i]
        na, nb, nc = pa[i + 1], pb[i + 1], pc[i + 1]
        det = na * nc - nb * nb
        ds, dv = xs[i + 1] - ps[i + 1], xv[i + 1] - pv[i + 1]
        xs[i] = fs[i] + ((m11 * nc - m12 * nb) * ds + (m12 * na - m11 * nb) * dv) / det
        xv[i] = fv[i] + ((m21 * nc - m22 * nb) * ds + (m22 * na - m21 * nb) * dv) / det
    return xs, xv


def smooth_track(t_s: np.ndarray, z: np.ndarray, r: np.ndarray, q: float) -> np.ndarray:
    """Kalman filter + RTS smoother, constant velocity, state (x, y, vx, vy), of one track.
    ``z`` holds measurements (NaN rows = no measurement; the first row is one), ``r`` per-step
    measurement variances. The model never couples x with y (transition, process and
    measurement noise are per axis), so each axis is a 2-state filter (``_smooth_axis``):
    equal to the 4-state filter (tests/test_labeling.py) to ~1e-12, several times faster."""
    t, zt, rt = t_s.tolist(), z.T.tolist(), r.T.tolist()
    out = np.empty((len(t), 4))
    for axis in (0, 1):  # x with vx, y with vy
        xs, xv = _smooth_axis(t, zt[axis], zt[axis + 2], rt[axis], rt[axis + 2], q * q)
        out[:, axis], out[:, axis + 2] = xs, xv
    return out


def label_drive(
    objects: pa.Table, vehicle_state: pa.Table, params: Params, vehicle: str, drive: str
) -> pa.Table:
    """Offboard labels for one drive."""
    if objects.num_rows == 0:
        return LABEL_SCHEMA.empty_table()
    a = _arrays(objects)
    st = vehicle_state.column("t").cast(pa.int64()).to_numpy()
    sp = vehicle_state.column("speed_mps").to_numpy(zero_copy_only=False).astype(float)
    yr = vehicle_state.column("yaw_rate_radps").to_numpy(zero_copy_only=False).astype(float)
    good = np.isfinite(sp) & (sp < 100) & np.isfinite(yr)  # CAN faults are not signals
    order_s = np.argsort(st[good], kind="stable")
    st, sp, yr = st[good][order_s], sp[good][order_s], yr[good][order_s]

    def ego_at(times: np.ndarray) -> np.ndarray:
        return np.interp(times, st, sp) if len(st) else np.zeros(len(times))

    ego = ego_at(a["t"])
    omega = np.interp(a["t"], st, yr) if len(st) else np.zeros(len(a["t"]))
    # Motion relative to the ego frame, which moves at the ego speed and turns at its yaw rate.
    rvx = a["vx"] - ego + omega * a["y"]
    rvy = a["vy"] - omega * a["x"]
    frames = np.unique(a["t"])
    # Pieces: an onboard id's observations, split where it was unseen for longer than the
    # association gap (an object that leaves the sensor range and comes back is a new track).
    order = np.lexsort((a["t"], a["object_id"]))
    gap_ns = params["association"]["max_gap_s"] * 1e9
    breaks = (
        np.flatnonzero((np.diff(a["object_id"][order]) != 0) | (np.diff(a["t"][order]) > gap_ns))
        + 1
    )
    tracks = dict(enumerate(np.split(order, breaks), start=1))
    root = _associate(tracks, a, rvx, rvy, params)
    chains: dict[int, list[np.ndarray]] = {}
    for k, idx in tracks.items():
        chains.setdefault(root[k], []).append(idx)
    sm = params["smoother"]
    out: dict[str, list] = {f.name: [] for f in LABEL_SCHEMA}
    for track_id, parts in sorted(chains.items()):
        idx = np.concatenate(parts)
        idx = idx[np.argsort(a["t"][idx], kind="stable")]
        min_frames = params["ghosts"]["min_frames"]
        cut_by_log_end = a["t"][idx[-1]] >= frames[-min(min_frames, len(frames))]
        if len(idx) < min_frames and not cut_by_log_end:
            continue
        grid = frames[(frames >= a["t"][idx[0]]) & (frames <= a["t"][idx[-1]])]
        pos = np.searchsorted(grid, a["t"][idx])
        z = np.full((len(grid), 4), np.nan)
        z[pos] = np.column_stack([a["x"][idx], a["y"][idx], rvx[idx], rvy[idx]])
        dist = np.hypot(a["x"][idx], a["y"][idx])
        sigma = sm["position_sigma"] + sm["position_sigma_per_m"] * dist
        r = np.full((len(grid), 4), 1.0)
        r[pos] = np.column_stack(
            [
                sigma**2,
                (sigma / 2) ** 2,
                np.full(len(idx), sm["velocity_sigma"] ** 2),
                np.full(len(idx), (sm["velocity_sigma"] / 2) ** 2),
            ]
        )
        xs = smooth_track((grid - grid[0]) / 1e9, z, r, sm["accel_noise"])
        # Where the model cannot follow (a hard turn of the ego), keep the measurement.
        off = np.hypot(xs[pos, 0] - z[pos, 0], xs[pos, 1] - z[pos, 1]) > 3 * sigma
        xs[pos[off], :2] = z[pos[off], :2]
        ego_grid = ego_at(grid)
        coverage = len(idx) / len(grid)
        confidence = float(
            np.clip(np.mean(a["confidence"][idx]) * coverage * min(1.0, len(idx) / 20), 0, 1)
        )
        n = len(grid)
        observed = np.zeros(n, bool)
        observed[pos] = True
        out["vehicle_id"] += [vehicle] * n
        out["drive_id"] += [drive] * n
        out["t"] += grid.tolist()
        out["track_id"] += [track_id] * n
        out["object_class"] += [a["cls"][idx[0]]] * n
        out["x"] += xs[:, 0].tolist()
        out["y"] += xs[:, 1].tolist()
        omega_grid = np.interp(grid, st, yr) if len(st) else np.zeros(len(grid))
        out["vx"] += (xs[:, 2] + ego_grid - omega_grid * xs[:, 1]).tolist()
        out["vy"] += (xs[:, 3] + omega_grid * xs[:, 0]).tolist()
        for col in ("length", "width", "height"):
            out[col] += [float(np.median(a[col][idx]))] * n
        out["heading"] += [float(np.median(a["heading"][idx]))] * n
        out["confidence"] += [confidence] * n
        out["observed"] += observed.tolist()
        out["reviewed"] += [False] * n
    return pa.Table.from_pydict(out, schema=LABEL_SCHEMA)
