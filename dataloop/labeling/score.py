"""Labels scored against the fleet simulator's ground truth, frame by frame."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

MATCH_M = 2.5
"""A label matches a true object within this distance (greedy, nearest first)."""
FIELD = (-40.0, 100.0, 30.0)
"""The region the simulator's ground truth covers (x from, x to, |y| up to), ego frame: only
labels inside it can be judged."""


def score(labels: pa.Table, truth: pa.Table, id_column: str) -> dict[str, float]:
    """Position RMSE, ID switches (per 100 true tracks), false-positive and missed-object
    rates of ``labels`` (onboard objects or offboard labels) against ``truth``."""
    x0, x1, ymax = FIELD
    lx_all, ly_all = labels.column("x").to_numpy(), labels.column("y").to_numpy()
    labels = labels.filter(pa.array((lx_all > x0) & (lx_all < x1) & (np.abs(ly_all) < ymax)))
    lt = labels.column("t").cast(pa.int64()).to_numpy()
    tt = truth.column("t").cast(pa.int64()).to_numpy()
    lx, ly = labels.column("x").to_numpy(), labels.column("y").to_numpy()
    tx, ty = truth.column("x").to_numpy(), truth.column("y").to_numpy()
    lid = labels.column(id_column).to_numpy()
    tid = truth.column("id").to_numpy()
    frames = np.intersect1d(np.unique(tt), np.unique(lt))  # frames both sides cover
    l_in = np.isin(lt, frames)
    t_in = np.isin(tt, frames)
    l_order, t_order = np.argsort(lt, kind="stable"), np.argsort(tt, kind="stable")
    l_bounds = (
        np.searchsorted(lt[l_order], frames, "left"),
        np.searchsorted(lt[l_order], frames, "right"),
    )
    t_bounds = (
        np.searchsorted(tt[t_order], frames, "left"),
        np.searchsorted(tt[t_order], frames, "right"),
    )
    errors, matched_labels, matched_truth = [], 0, 0
    last_label: dict[int, int] = {}
    switches = 0
    for f in range(len(frames)):
        li = l_order[l_bounds[0][f] : l_bounds[1][f]]
        ti = t_order[t_bounds[0][f] : t_bounds[1][f]]
        if not len(li) or not len(ti):
            continue
        d = np.hypot(lx[li][:, None] - tx[ti][None, :], ly[li][:, None] - ty[ti][None, :])
        used_l, used_t = set(), set()
        for flat in np.argsort(d, axis=None):
            i, j = divmod(int(flat), len(ti))
            if d[i, j] > MATCH_M:
                break
            if i in used_l or j in used_t:
                continue
            used_l.add(i)
            used_t.add(j)
            errors.append(d[i, j])
            true_id, label_id = int(tid[ti[j]]), int(lid[li[i]])
            if true_id in last_label and last_label[true_id] != label_id:
                switches += 1
            last_label[true_id] = label_id
        matched_labels += len(used_l)
        matched_truth += len(used_t)
    n_labels, n_truth = int(l_in.sum()), int(t_in.sum())
    true_tracks = max(len(np.unique(tid[t_in])), 1)
    return {
        "position_rmse_m": float(np.sqrt(np.mean(np.square(errors)))) if errors else float("nan"),
        "id_switches_per_100_tracks": 100.0 * switches / true_tracks,
        "false_positive_rate": 1 - matched_labels / n_labels if n_labels else 0.0,
        "missed_rate": 1 - matched_truth / n_truth if n_truth else 0.0,
    }
