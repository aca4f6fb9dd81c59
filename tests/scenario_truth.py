"""What the fleet simulator injected or observed, as scenario events, and how well mined
clips recover them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

NS = 1_000_000_000
TOLERANCE_S = {"stalled_vehicle": 30.0}
"""How far outside a clip an event may lie and still count as found. A stalled vehicle is
injected when it starts braking, up to 150 m ahead; the clip is where the ego reaches it."""


LOG_BEFORE_S = 1.0
LOG_AFTER_S = 1.0
"""A witnessed corner case needs this much log before it (a deceleration or a lane change is
seen against the second before) and after it to be findable."""


def truth_events(reports) -> list[dict]:
    """(vehicle, drive, scenario, t_ns, findable) for everything the simulator saw happen: the
    corner cases it witnessed (injected or not), near misses, disengagements, lane changes,
    the drive's condition; and the corner cases it injected, which a clip may find but recall
    does not count (an injection can fail: the ego changes lanes first)."""
    events = []
    for report in reports:
        for d in report.drives:
            truth = json.loads(Path(d["path"]).with_suffix(".truth.json").read_text())
            base = {"vehicle_id": report.vehicle, "drive_id": d["drive"]}

            def add(scenario: str, t: float, base=base, d=d, findable: bool = True) -> None:
                t_ns = d["start_ns"] + int(t * NS)
                events.append({**base, "scenario": scenario, "t_ns": t_ns, "findable": findable})

            for c in truth["corner_cases"]:  # staged here: a clip of it is right, even
                if c["applied"]:  # when traffic undid it (the ego changed lanes first)
                    add(c["type"], c["t"], findable=False)
            for c in truth["witnessed"]:
                # else the log starts or ends (a crash) too close: it may be found, need not be
                within = LOG_BEFORE_S <= c["t"] <= d["seconds"] - LOG_AFTER_S
                add(c["type"], c["t"], findable=within)
            for name, kind in (
                ("near_misses", "near_miss"),
                ("disengagements", "disengagement"),
                ("lane_changes", "lane_change"),
            ):
                for e in truth.get(name, []):
                    add(kind, e["t"])
            if truth["conditions"] != "day":
                add("weather", d["seconds"] / 2)
    return events


def score(clips: pa.Table, events: list[dict], scenario: str) -> dict:
    """Recall over the simulator's events and precision over the clips, for one scenario."""
    tol = int(TOLERANCE_S.get(scenario, 3.0) * NS)
    mine = [c for c in clips.to_pylist() if c["scenario"] == scenario]
    spans = [
        (c["vehicle_id"], c["drive_id"], _ns(c["start_t"]) - tol, _ns(c["end_t"]) + tol)
        for c in mine
    ]
    truth = [e for e in events if e["scenario"] == scenario]
    findable = [e for e in truth if e["findable"]]

    def hit(e, span) -> bool:
        v, d, lo, hi = span
        return (e["vehicle_id"], e["drive_id"]) == (v, d) and lo <= e["t_ns"] <= hi

    found = sum(any(hit(e, s) for s in spans) for e in findable)
    right = sum(any(hit(e, s) for e in truth) for s in spans)
    return {
        "scenario": scenario,
        "events": len(findable),
        "clips": len(mine),
        "recall": found / len(findable) if findable else float("nan"),
        "precision": right / len(mine) if mine else float("nan"),
        "missed": [e for e in findable if not any(hit(e, s) for s in spans)],
        "false": [s for s in spans if not any(hit(e, s) for e in truth)],
    }


def _ns(ts) -> int:
    return int(pa.scalar(ts, pa.timestamp("ns", tz="UTC")).value)
