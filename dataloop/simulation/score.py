"""The closed-loop score, modelled on nuPlan CLS / NAVSIM PDMS (see docs/simulation.md):

    score = NC * DAC * (5 * EP + 5 * TTC + 2 * C) / 12

- NC  = 0 if the ego had an at-fault collision, else 1;
- DAC = 0 if the ego left the drivable area at any step, else 1;
- EP  = ego progress against the expert's on the same scenario, min(1, d / d_expert)
        (1 when the expert itself progresses less than 5 m);
- TTC = 1 if the time to collision never fell below ``TTC_MIN_S``, else 0;
- C   = fraction of steps within the comfort limits ``COMFORT``.
"""

from __future__ import annotations

from dataloop.simulation.episode import Episode

TTC_MIN_S = 1.0
MIN_EXPERT_PROGRESS_M = 5.0
COMFORT = {"lon_accel": (-5.0, 4.0), "lat_accel": 4.0, "jerk": 10.0}
"""m/s^2, m/s^2, m/s^3 over a 0.1 s step."""
WEIGHTS = {"progress": 5.0, "ttc": 5.0, "comfort": 2.0}


def within_comfort(accel: float, jerk: float, lat_accel: float) -> bool:
    lo, hi = COMFORT["lon_accel"]
    return (
        lo <= accel <= hi
        and abs(lat_accel) <= COMFORT["lat_accel"]
        and abs(jerk) <= COMFORT["jerk"]
    )


def subscores(ep: Episode, expert_distance_m: float) -> dict[str, float]:
    if expert_distance_m < MIN_EXPERT_PROGRESS_M:
        progress = 1.0
    else:
        progress = min(1.0, max(0.0, ep.distance_m / expert_distance_m))
    return {
        "no_at_fault_collision": 0.0 if ep.at_fault else 1.0,
        "drivable_area": 0.0 if ep.offroad_steps else 1.0,
        "progress": progress,
        "ttc": 1.0 if ep.min_ttc_s >= TTC_MIN_S else 0.0,
        "comfort": ep.comfort,
    }


def score(sub: dict[str, float]) -> float:
    weighted = sum(WEIGHTS[k] * sub[k] for k in WEIGHTS) / sum(WEIGHTS.values())
    return sub["no_at_fault_collision"] * sub["drivable_area"] * weighted
