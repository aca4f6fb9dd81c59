"""Scene descriptions: one English sentence per clip, from its scenario, the drive's conditions
and road, the labelled road users around the car and the logged events.

The text encoder matches queries against these sentences, so they use the words people
search with ("night", "flooded road", "a pedestrian crosses"), one phrase per fact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from dataloop.ingest.tables import read_table
from dataloop.lake import ledger
from dataloop.lake.store import ObjectStore

DESCRIBER_VERSION = "1"
NEARBY_M = 60.0
"""Road users within this distance of the car during the clip are counted."""

LIGHT = {"day": "daytime", "dusk": "dusk", "night": "night"}
WEATHER = {"rain": "rain", "fog": "fog", "snow": "snow", "flooded": "flooded road, standing water"}
ROADS = {
    "highway": "on a highway",
    "merge": "at a highway merge",
    "roundabout": "in a roundabout",
    "intersection": "at an intersection",
}
SCENARIOS = {
    "cut_in": "a vehicle cuts in",
    "hard_brake": "the lead vehicle brakes hard",
    "near_miss": "a near miss",
    "disengagement": "the safety driver took over",
    "pedestrian_crossing": "a pedestrian crosses",
    "stalled_vehicle": "a stalled vehicle blocks the lane",
    "lane_change": "the car changes lanes",
    "weather": "",  # the conditions phrase says it already
}
EVENTS = {
    "disengagement": SCENARIOS["disengagement"],
    "hard_brake": "the car brakes hard",
}
PLURAL = {"pedestrian": "pedestrians", "bus": "buses"}
CLASS_ORDER = ("car", "truck", "bus", "motorcycle", "cyclist", "pedestrian")
"""Vehicles first, then vulnerable road users; other classes after, by name."""


def conditions_of(value: str | None) -> list[str]:
    """A drive's or clip's conditions as a list (the lake stores one name, or several joined)."""
    return [c for c in re.split(r"[,+;/\s]+", (value or "").lower()) if c]


def scene_phrase(conditions: str | None, road: str | None) -> str:
    """``night on a highway, rain``; ``flooded road, standing water at an intersection``."""
    names = conditions_of(conditions)
    light = [LIGHT[c] for c in names if c in LIGHT]
    weather = [WEATHER[c] for c in names if c in WEATHER]
    other = [c for c in names if c not in LIGHT and c not in WEATHER and c != "unknown"]
    head = light[:1] or weather[:1] or other[:1] or ["driving"]
    rest = [w for w in light[1:] + weather + other if w not in head]
    where = ROADS.get(road or "", f"on a {road} road" if road and road != "unknown" else "")
    return ", ".join([" ".join(p for p in (head[0], where) if p), *rest])


@dataclass
class DriveScene:
    """What a drive holds that descriptions use: road users over time and events."""

    road: str
    conditions: str
    source: str
    """``offboard`` labels when the drive was labelled, else the car's ``onboard`` objects."""
    t: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    track: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cls: np.ndarray = field(default_factory=lambda: np.zeros(0, object))
    distance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    event_t: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    event_type: np.ndarray = field(default_factory=lambda: np.zeros(0, object))


def _ns(column: pa.ChunkedArray) -> np.ndarray:
    return column.cast(pa.int64()).to_numpy(zero_copy_only=False)


def labels_key(store: ObjectStore, vehicle: str, drive: str) -> str | None:
    """The drive's current offboard label table, if it was labelled."""
    state = ledger.drive(store, vehicle, drive)
    return state.labels_key if state else None


def load_drive_scene(
    store: ObjectStore, vehicle: str, drive: str, state: ledger.DriveState | None = None
) -> DriveScene:
    """What the describer reads of a drive (``state``, its ledger state, saves a read)."""
    state = state or ledger.drive(store, vehicle, drive) or ledger.DriveState(vehicle, drive)
    meta = state.log_metadata
    tables = state.table_infos
    key, track_col, source = state.labels_key, "track_id", "offboard"
    if key is None and "objects" in tables:
        key, track_col, source = tables["objects"]["key"], "object_id", "onboard"
    scene = DriveScene(meta.get("road", "unknown"), meta.get("conditions", "unknown"), source)
    if key is not None:
        objects = read_table(store, key)
        scene.t = _ns(objects.column("t"))
        scene.track = objects.column(track_col).to_numpy(zero_copy_only=False)
        scene.cls = np.asarray(objects.column("object_class").to_pylist(), dtype=object)
        x = objects.column("x").to_numpy(zero_copy_only=False)
        y = objects.column("y").to_numpy(zero_copy_only=False)
        scene.distance = np.hypot(x, y)
    if "events" in tables:
        events = read_table(store, tables["events"]["key"])
        scene.event_t = _ns(events.column("t"))
        scene.event_type = np.asarray(events.column("type").to_pylist(), dtype=object)
    return scene


def count_phrase(scene: DriveScene, start_ns: int, end_ns: int) -> str:
    """``6 cars, 1 truck, 1 pedestrian nearby``: distinct tracks per class during the clip."""
    inside = (scene.t >= start_ns) & (scene.t <= end_ns) & (scene.distance <= NEARBY_M)
    counts: dict[str, set] = {}
    for cls, track in zip(scene.cls[inside], scene.track[inside], strict=True):
        if cls and cls != "unknown":
            counts.setdefault(str(cls), set()).add(int(track))
    if not counts:
        return "no other road users nearby"
    order = sorted(counts, key=lambda c: ((CLASS_ORDER + (c,)).index(c), c))
    parts = [
        f"{len(counts[c])} {c if len(counts[c]) == 1 else PLURAL.get(c, c + 's')}" for c in order
    ]
    return ", ".join(parts) + " nearby"


def describe(clip: dict[str, Any], scene: DriveScene | None = None) -> str:
    """One sentence for a clip (a CLIP_SCHEMA row with ``start_t``/``end_t`` in ns or datetimes),
    e.g. ``night on a highway, rain; a vehicle cuts in; 6 cars, 1 truck nearby; the safety
    driver took over``."""
    start, end = _to_ns(clip["start_t"]), _to_ns(clip["end_t"])
    conditions = clip.get("conditions") or (scene.conditions if scene else None)
    tags = list(clip.get("tags") or [])
    extra = [t for t in tags if t in LIGHT or t in WEATHER]
    if extra:
        conditions = ",".join(dict.fromkeys(conditions_of(conditions) + extra))
    road = clip.get("road") or (scene.road if scene else None)
    phrases = [scene_phrase(conditions, road)]
    for name in [clip.get("scenario"), *tags]:
        phrase = SCENARIOS.get(name or "")
        if phrase and phrase not in phrases:
            phrases.append(phrase)
    if scene is not None:
        phrases.append(count_phrase(scene, start, end))
        inside = (scene.event_t >= start) & (scene.event_t <= end)
        for kind in dict.fromkeys(scene.event_type[inside]):
            phrase = EVENTS.get(kind, str(kind).replace("_", " "))
            if phrase not in phrases:
                phrases.append(phrase)
    return "; ".join(p for p in phrases if p)


def _to_ns(value: Any) -> int:
    if isinstance(value, int | np.integer):
        return int(value)
    return int(pa.scalar(value, type=pa.timestamp("ns", tz="UTC")).cast(pa.int64()).as_py())
