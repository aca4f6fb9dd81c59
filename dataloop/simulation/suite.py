"""The scenario suite of the gate, built from ``assets/gates/release.yaml``: stock scenarios,
scenarios rebuilt from held-out mined clips (val/test split of the latest dataset) and their
variations; stored in the lake content-addressed, results next to it."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from dataloop.curation import datasets as D
from dataloop.curation.scenarios import connect
from dataloop.lake import layout as L
from dataloop.lake.hashing import canonical_json, sha256_json
from dataloop.lake.store import ObjectExists, ObjectStore
from dataloop.simulation.scenario import CONDITIONS, Agent, Scenario, stock, variations

LANE_WIDTH_M = 4.0


def put_once(store: ObjectStore, key: str, value: Any) -> None:
    """Write an immutable JSON object; an existing one (same content key) is kept."""
    with contextlib.suppress(ObjectExists):
        store.put(key, canonical_json(value))


def clip_scenario(clip: dict, ego_speed: float, tracks: list[dict], seconds: float) -> Scenario:
    """A scenario from a clip's first instant: the ego's logged speed and its neighbours'
    positions and velocities in the ego frame, placed on the nearest lane of the road."""
    agents = tuple(
        Agent(float(o["x"]), int(round(o["y"] / LANE_WIDTH_M)), max(float(o["vx"]), 0.0))
        for o in tracks
        if -40 < o["x"] < 80 and abs(o["y"]) < 2.5 * LANE_WIDTH_M and abs(o["x"]) > 6.0
    )
    road = clip.get("road") if clip.get("road") in ("highway", "merge") else "highway"
    condition = clip.get("conditions") if clip.get("conditions") in CONDITIONS else "clear"
    return Scenario(
        id=f"log-{clip['clip_id']}",
        category=clip["scenario"],
        road=road,
        seed=int(sha256_json(clip["clip_id"])[:8], 16),
        seconds=seconds,
        source="log",
        condition=condition,
        ego_speed=float(ego_speed),
        agents=agents,
        origin={k: str(clip[k]) for k in ("vehicle_id", "drive_id", "start_t")},
    )


def from_logs(store: ObjectStore, max_clips: int, seconds: float) -> list[Scenario]:
    """Scenarios rebuilt from the held-out clips of the latest training dataset."""
    from dataloop.training.samples import current_drive

    clips = D.held_out_clips(store).to_pylist()[: max(max_clips, 0)]
    out = []
    for clip in clips:
        drive = current_drive(store, clip["vehicle_id"], clip["drive_id"], clip["drive_version"])
        if drive is None:
            continue
        con = connect(store, [drive])
        key = [clip["start_t"]]
        speed = con.execute(
            "SELECT speed_mps FROM vehicle_state WHERE t >= ? ORDER BY t LIMIT 1", key
        ).fetchone()
        first = con.execute("SELECT min(t) FROM tracks WHERE t >= ?", key).fetchone()
        if speed is None or first is None or first[0] is None:
            continue
        rows = con.execute(
            "SELECT x, y, vx FROM tracks WHERE t = ? ORDER BY track_id", [first[0]]
        ).fetchall()
        tracks = [{"x": x, "y": y, "vx": vx} for x, y, vx in rows]
        out.append(clip_scenario({**drive, **clip}, speed[0], tracks, seconds))
    return out


def build_suite(store: ObjectStore, config: dict[str, Any]) -> list[Scenario]:
    """The suite the gate config describes, for the lake as it is now."""
    s = config["stock"]
    suite = stock(s["roads"], s["seeds"], float(s["seconds"]))
    logs = config.get("from_logs") or {}
    rebuilt = from_logs(store, int(logs.get("max_clips", 0)), float(logs.get("seconds", 15)))
    for base in rebuilt:
        suite += [base, *variations(base, int(logs.get("variations", 0)), int(logs.get("seed", 0)))]
    return suite


def store_suite(store: ObjectStore, scenarios: list[Scenario]) -> str:
    from dataloop.simulation.scenario import suite_version

    version = suite_version(scenarios)
    put_once(store, L.suite_key(version), [s.to_dict() for s in scenarios])
    return version


def load_suite(store: ObjectStore, version: str) -> list[Scenario]:
    return [Scenario.from_dict(d) for d in json.loads(store.get(L.suite_key(version)))]
